-- wrk script for the gateway benchmarks: every request carries one of many
-- distinct tokens (TOKENS_FILE, one a line), in turn:
--   by default  GET /orders with Authorization: Bearer <token> (oauth2_guard);
--   INTROSPECT=1  POST /oauth2/introspect token=<token>, authenticated with
--                 client_secret_basic (BASIC_AUTH: base64 of id:secret);
--                 INTROSPECT_PATH names another endpoint (Hydra's admin
--                 /admin/oauth2/introspect, which ignores the credentials).
-- The requests are built once in init(), so that the load generator's own
-- cost does not grow with the token's length (JWTs are ~12x longer).
-- Failed requests (non-2xx/3xx, socket errors) are printed so a run that
-- fails is visible.
local reqs = {}
local counter = 0

function init(args)
  local introspect = os.getenv("INTROSPECT") == "1"
  local basic = introspect and ("Basic " .. os.getenv("BASIC_AUTH"))
  local path = os.getenv("INTROSPECT_PATH") or "/oauth2/introspect"
  local f = assert(io.open(os.getenv("TOKENS_FILE"), "r"))
  for line in f:lines() do
    if #line > 0 then
      if introspect then
        reqs[#reqs + 1] = wrk.format("POST", path, {
          ["Authorization"] = basic,
          ["Content-Type"] = "application/x-www-form-urlencoded",
        }, "token=" .. line)
      else
        reqs[#reqs + 1] = wrk.format("GET", "/orders", { ["Authorization"] = "Bearer " .. line })
      end
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
