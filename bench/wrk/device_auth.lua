-- SPDX-License-Identifier: MIT
-- wrk script: RFC 8628 device authorization requests, as a TV would send them
-- (POST /oauth/device_authorization with client_id=bench, device_name=TV, device_kind=tv).
-- Every request creates one login request on the server. The response callback counts 200
-- answers and everything else; done() prints one "BENCH key=value ..." line that bench/run.sh
-- reads (wrk's own "Requests/sec" counts every answer, errors included).

wrk.method = "POST"
wrk.body = "client_id=bench&device_name=TV&device_kind=tv"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local cpuwin = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "cpuwin.lua")
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok = 0
   other = 0
   cpuwin.mark()
end

function response(status, headers, body)
   if status == 200 then
      ok = ok + 1
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local o, x = 0, 0
   for _, t in ipairs(threads) do
      o = o + t:get("ok")
      x = x + t:get("other")
   end
   io.write(string.format("BENCH ok=%d other=%d errors=%d p50_us=%d p99_us=%d\n", o, x,
                          summary.errors.connect + summary.errors.read + summary.errors.write +
                             summary.errors.timeout, latency:percentile(50),
                          latency:percentile(99)))
   cpuwin.report(threads)
end
