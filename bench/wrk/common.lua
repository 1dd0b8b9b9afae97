-- Shared by the inbox_load.py wrk scripts: per-thread counters of HTTP statuses, read and
-- summed in done(). Each script sets `data` (a table loaded from DATA) before using it.
local threads = {}
local counter = 1

function setup(thread)
   thread:set("thread_id", counter)
   thread:set("thread_count", 0) -- filled in below, once every thread exists
   table.insert(threads, thread)
   counter = counter + 1
end

statuses = {}
handed_out = 0
exhausted = false

function count_status(status)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   local handed = 0
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses")
      for code, n in pairs(s) do
         total[code] = (total[code] or 0) + n
      end
      handed = handed + (thread:get("handed_out") or 0)
      if thread:get("exhausted") then
         io.write("BENCH exhausted: a thread ran out of work before the end\n")
      end
   end
   for code, n in pairs(total) do
      io.write(string.format("BENCH status %d %d\n", code, n))
   end
   io.write(string.format("BENCH handed_out %d\n", handed))
end
