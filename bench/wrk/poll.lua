-- SPDX-License-Identifier: MIT
-- wrk script: RFC 8628 device-code token polls of pending login requests
-- (POST /oauth/token, grant_type=urn:ietf:params:oauth:grant-type:device_code, no Prefer: wait).
--
-- The server answers slow_down to a poll of the same device code within about 4 s of the
-- previous answer (interval 5 s minus 1 s slack), so a loop over a few codes would measure
-- slow_down, not real pending answers. This script therefore cycles through many distinct codes
-- that bench/loadgen created beforehand ("device_code scan_secret user_code" per line).
--
-- Arguments (after "--"): CODES_FILE SEGMENT NSEGMENTS [NTHREADS [count]]
--   The file is cut into NSEGMENTS equal parts; this run uses part SEGMENT (0-based), so that
--   consecutive runs can alternate between parts and a code is never polled twice within 5 s
--   across runs. Within a run each thread cycles through its share of the part.
--
-- The response callback counts 400 authorization_pending (the expected answer), slow_down,
-- other 400s, 200s and anything else; request() counts a "reuse" whenever it sends a code that
-- it sent less than 5 s before (the ring was too small for the rate). done() prints one
-- "BENCH key=value ..." line for bench/run.sh.
--
-- With "count", there is no response callback: wrk then neither copies each answer's headers
-- and body into Lua nor calls Lua per answer, which costs it 10-15 % of its rate, and wrk uses
-- all of its one core in this scenario. Answers are then only counted by status (wrk's non-2xx
-- count, "non2xx=" in the BENCH line); bench/run.sh classifies every answer in the warm-up run
-- and uses "count" for the timed runs.

local cpuwin = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "cpuwin.lua")
local function now_ms()
   return cpuwin.now() * 1000
end

local threads = {}
local nthreads_setup = 0

function setup(thread)
   thread:set("tid", nthreads_setup)
   nthreads_setup = nthreads_setup + 1
   table.insert(threads, thread)
end

local bodies, last = {}, {}
local pos, n = 1, 0

function init(args)
   local file, seg, nseg, nthr = args[1], tonumber(args[2] or 0), tonumber(args[3] or 1),
                                 tonumber(args[4] or 1)
   pending, slow, other400, ok200, other, reuse = 0, 0, 0, 0, 0, 0
   counting = 0
   if args[5] == "count" then
      counting = 1
      response = nil -- wrk looks for it after init()
   end
   local codes = {}
   for line in io.lines(file) do
      local dc = line:match("^(%S+)")
      if dc then
         codes[#codes + 1] = dc
      end
   end
   local per = math.floor(#codes / nseg)
   local first, lastidx = seg * per + 1, (seg + 1) * per
   local k = 0
   for i = first, lastidx do
      if k % nthr == tid then
         bodies[#bodies + 1] = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code" ..
                                  "&device_code=" .. codes[i] .. "&client_id=bench"
      end
      k = k + 1
   end
   n = #bodies
   codes_used = n
   if n == 0 then
      error("poll.lua: no codes in " .. file .. " segment " .. seg)
   end
   -- Whole requests are built once here, so that request() costs the load generator as little
   -- as possible: at 50,000 requests/s wrk's one core is the limit of the ceiling run too.
   local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
   for i = 1, n do
      bodies[i] = wrk.format("POST", "/oauth/token", headers, bodies[i])
   end
   cpuwin.mark() -- last: the timed window starts now
end

-- The clock is read once every CLOCK_EVERY requests (a few milliseconds apart at these rates),
-- which is precise enough to tell a code polled again within 5 s.
local CLOCK_EVERY = 64
local tick, t_now = 0, 0

function request()
   local i = pos
   pos = pos + 1
   if pos > n then
      pos = 1
   end
   if tick == 0 then
      t_now = now_ms()
      tick = CLOCK_EVERY
   end
   tick = tick - 1
   local t = t_now
   if last[i] and t - last[i] < 5000 then
      reuse = reuse + 1
   end
   last[i] = t
   return bodies[i]
end

function response(status, hdrs, body)
   if status == 400 then
      if body:find("authorization_pending", 1, true) then
         pending = pending + 1
      elseif body:find("slow_down", 1, true) then
         slow = slow + 1
      else
         other400 = other400 + 1
      end
   elseif status == 200 then
      ok200 = ok200 + 1
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local s = {pending = 0, slow = 0, other400 = 0, ok200 = 0, other = 0, reuse = 0, codes_used = 0,
              counting = 0}
   for _, t in ipairs(threads) do
      for k, _ in pairs(s) do
         s[k] = s[k] + t:get(k)
      end
   end
   io.write(string.format(
               "BENCH pending=%d slow_down=%d other400=%d ok200=%d other=%d reuse=%d codes=%d errors=%d p50_us=%d p99_us=%d counted=%d answers=%d non2xx=%d\n",
               s.pending, s.slow, s.other400, s.ok200, s.other, s.reuse, s.codes_used,
               summary.errors.connect + summary.errors.read + summary.errors.write +
                  summary.errors.timeout, latency:percentile(50), latency:percentile(99),
               s.counting > 0 and 1 or 0, summary.requests, summary.errors.status))
   cpuwin.report(threads)
end
