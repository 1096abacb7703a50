-- wrk script: RFC 7662 introspection of many distinct tokens (TOKENS_FILE),
-- authenticated with client_secret_basic (BASIC_AUTH: base64 of id:secret).
local tokens = {}
local counter = 0
local auth

function init(args)
  local f = assert(io.open(os.getenv("TOKENS_FILE"), "r"))
  for line in f:lines() do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  f:close()
  auth = "Basic " .. os.getenv("BASIC_AUTH")
end

function request()
  counter = counter + 1
  local t = tokens[(counter % #tokens) + 1]
  return wrk.format("POST", "/oauth2/introspect", {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, "token=" .. t)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("failed %d\n", e.status + e.connect + e.read + e.write + e.timeout))
end
