-- wrk script for the guard benchmark: every request carries one of many
-- distinct tokens (TOKENS_FILE, one a line), in turn; failed requests
-- (non-2xx/3xx, socket errors) are printed so a run that fails is visible.
-- The requests are built once in init(), so that the load generator's own
-- cost does not grow with the token's length (JWTs are ~12x longer).
local reqs = {}
local counter = 0

function init(args)
  local f = assert(io.open(os.getenv("TOKENS_FILE"), "r"))
  for line in f:lines() do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("GET", "/orders", { ["Authorization"] = "Bearer " .. line })
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
