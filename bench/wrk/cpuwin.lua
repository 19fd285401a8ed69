-- SPDX-License-Identifier: MIT
-- CPU accounting over wrk's own timed window, for bench/run.sh.
--
-- bench/run.sh used to read /proc around the whole wrk process. But wrk runs each thread's
-- init() first: poll.lua reads a file of up to 1.2 million device codes and builds its requests
-- there, which takes seconds while the server idles. Spread over that, the server's share of
-- CPU 0 came out at a third to a half of what it was while wrk sent requests.
--
-- So the scripts take their snapshots themselves: mark() at the end of init(), right before
-- the thread connects, and report() in done(), right after the run. Each snapshot is
-- "monotonic-seconds cpu0-busy cpu1-busy server-ticks" (the busy times and the server's
-- utime + stime in clock ticks, as bench/run.sh's cpu_snap), printed as two lines
-- "CPUWIN <snapshot>" that bench/run.sh's wrk_once prefers to its own.
--
-- The server is the process BENCH_SERVER_PID names (set by bench/run.sh); without it nothing is
-- printed and bench/run.sh falls back to its outer snapshots. Several nodes: BENCH_SERVER_PID
-- holds their pids separated by spaces, and server-ticks is their sum. With BENCH_PG_PID (the
-- PostgreSQL postmaster, bench/run.sh --db postgres) the snapshot has a fifth field: the CPU
-- time of PostgreSQL, the postmaster's own and its children's, living (each backend, the
-- checkpointer, the WAL writer...) and ended (the postmaster's cutime + cstime).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } cpuwin_timespec;
int clock_gettime(int clk, cpuwin_timespec *ts);
]]

local M = {}
local ts = ffi.new("cpuwin_timespec")

-- CLOCK_MONOTONIC in seconds
function M.now()
   ffi.C.clock_gettime(1, ts)
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local function busy_of(line)
   -- user nice system idle iowait irq softirq steal: busy is all but idle and iowait
   local v = {}
   for x in line:gmatch("%d+") do
      v[#v + 1] = tonumber(x)
   end
   return v[2] + v[3] + v[4] + v[7] + v[8] + v[9]
end

-- The fields of /proc/PID/stat after the command name (which is in parentheses and may hold
-- spaces), or nil when the process is gone.
local function stat_fields(pid)
   local f = io.open("/proc/" .. pid .. "/stat")
   if f == nil then
      return nil
   end
   local stat = f:read("*a")
   f:close()
   local rest = stat:match("%) (.*)$")
   if rest == nil then
      return nil
   end
   local fields = {}
   for x in rest:gmatch("%S+") do
      fields[#fields + 1] = x
   end
   return fields
end

-- utime + stime (fields 14 and 15 of the whole line, 12 and 13 after the name), and with
-- `children` also cutime + cstime (16 and 17).
local function ticks(pid, children)
   local v = stat_fields(pid)
   if v == nil then
      return nil
   end
   local t = tonumber(v[12]) + tonumber(v[13])
   if children then
      t = t + tonumber(v[14]) + tonumber(v[15])
   end
   return t
end

-- PostgreSQL's CPU time: the postmaster with its ended children, and every living child.
local function pg_ticks(pm)
   local t = ticks(pm, true)
   if t == nil then
      return 0
   end
   local f = io.open("/proc/" .. pm .. "/task/" .. pm .. "/children")
   if f ~= nil then
      local kids = f:read("*a")
      f:close()
      for kid in kids:gmatch("%d+") do
         t = t + (ticks(kid, true) or 0)
      end
   end
   return t
end

function M.snapshot()
   local pids = os.getenv("BENCH_SERVER_PID")
   if pids == nil or pids == "" then
      return nil
   end
   local b0, b1
   for line in io.lines("/proc/stat") do
      if line:match("^cpu0 ") then
         b0 = busy_of(line)
      elseif line:match("^cpu1 ") then
         b1 = busy_of(line)
      end
   end
   if b0 == nil or b1 == nil then
      return nil
   end
   local srv = 0
   for pid in pids:gmatch("%d+") do
      local t = ticks(pid, false)
      if t == nil then
         return nil
      end
      srv = srv + t
   end
   local s = string.format("%.6f %d %d %d", M.now(), b0, b1, srv)
   local pm = os.getenv("BENCH_PG_PID")
   if pm ~= nil and pm ~= "" then
      s = s .. string.format(" %d", pg_ticks(pm))
   end
   return s
end

-- In init(): keep the start snapshot in the thread's state, for done() to fetch.
function M.mark()
   cpuwin_start = M.snapshot() or ""
end

-- In done(), with the threads table from setup(): print the window of the first thread.
function M.report(threads)
   local start = threads[1] and threads[1]:get("cpuwin_start") or ""
   local stop = M.snapshot()
   if start ~= "" and stop ~= nil then
      io.write("CPUWIN " .. start .. "\nCPUWIN " .. stop .. "\n")
   end
end

return M
