-- wrk script: client_credentials token requests (RFC 6749 §4.4).
--
--   wrk -t1 -c32 -d10s -s tests/bench/tokens.lua http://127.0.0.1:PORT -- /oauth2/token
--   TOKEN_PATH=/token wrk -t1 -c32 -d10s -s tests/bench/tokens.lua http://127.0.0.1:PORT
--
-- Path: first wrk argument after `--`, else $TOKEN_PATH, else the URL's own path.
-- Client: $CLIENT_ID / $CLIENT_SECRET (default bench / bench-secret), sent in the
-- form body. Every response's status is counted; a 200 without "access_token"
-- in its body is counted as bad too, so a bench that silently errors shows.
-- done() prints the counts and one machine-readable line starting "BENCH ".

local client_id = os.getenv("CLIENT_ID") or "bench"
local client_secret = os.getenv("CLIENT_SECRET") or "bench-secret"
local env_path = os.getenv("TOKEN_PATH")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
wrk.body = "grant_type=client_credentials&client_id=" .. client_id ..
           "&client_secret=" .. client_secret

-- main state: keep every thread so done() can collect its counters
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- thread state: globals on purpose, done() reads them with thread:get()
statuses = {}   -- status code -> count
ok = 0          -- 200 with access_token in the body
bad_body = 0    -- 200 without access_token
first_bad = nil -- first non-200 (or bad 200) response, status and body

function init(args)
   if args and args[1] and args[1] ~= "" then
      wrk.path = args[1]
   elseif env_path and env_path ~= "" then
      wrk.path = env_path
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status == 200 then
      if body and string.find(body, "access_token", 1, true) then
         ok = ok + 1
         return
      end
      bad_body = bad_body + 1
   end
   if first_bad == nil then
      first_bad = tostring(status) .. " " .. string.gsub(string.sub(body or "", 1, 300), "%s+$", "")
   end
end

function done(summary, latency, requests)
   local totals = {}
   local total_ok, total_bad_body = 0, 0
   local first = nil
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      if s then
         for code, n in pairs(s) do
            totals[code] = (totals[code] or 0) + n
         end
      end
      total_ok = total_ok + (t:get("ok") or 0)
      total_bad_body = total_bad_body + (t:get("bad_body") or 0)
      first = first or t:get("first_bad")
   end

   local codes = {}
   for code, _ in pairs(totals) do table.insert(codes, code) end
   table.sort(codes)
   local non200 = 0
   local parts = {}
   for _, code in ipairs(codes) do
      table.insert(parts, code .. "=" .. totals[code])
      if code ~= 200 then non200 = non200 + totals[code] end
   end

   local secs = summary.duration / 1e6
   local e = summary.errors
   local sockerr = e.connect + e.read + e.write + e.timeout
   io.write(string.format("status codes: %s\n", #parts > 0 and table.concat(parts, " ") or "(none)"))
   io.write(string.format("non-200 responses: %d, 200 without access_token: %d, socket errors: %d\n",
                          non200, total_bad_body, sockerr))
   if first then
      io.write("first bad response: " .. first .. "\n")
   end
   io.write(string.format(
      "BENCH requests=%d ok=%d non200=%d badbody=%d sockerr=%d seconds=%.3f rps=%.1f okrps=%.1f p50_ms=%.3f p99_ms=%.3f\n",
      summary.requests, total_ok, non200, total_bad_body, sockerr, secs,
      summary.requests / secs, total_ok / secs,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
