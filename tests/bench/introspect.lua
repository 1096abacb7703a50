-- wrk script: RFC 7662 introspection of many distinct tokens (TOKENS_FILE),
-- authenticated with client_secret_basic (BASIC_AUTH: base64 of id:secret).
local reqs = {}
local counter = 0

function init(args)
  local auth = "Basic " .. os.getenv("BASIC_AUTH")
  local f = assert(io.open(os.getenv("TOKENS_FILE"), "r"))
  for line in f:lines() do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("POST", "/oauth2/introspect", {
        ["Authorization"] = auth,
        ["Content-Type"] = "application/x-www-form-urlencoded",
      }, "token=" .. line)
    end
  end
  f:close()
end

function request()
  counter = counter + 1
  return reqs[(counter % #reqs) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("failed %d\n", e.status + e.connect + e.read + e.write + e.timeout))
end
