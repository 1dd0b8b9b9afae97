-- Hand-out polls: every device has queued commands; thread t polls devices t, t+T, t+2T, ...
-- in turn (T = BENCH_THREADS), so with INBOX_BATCH=1 each poll hands out one command.
-- DATA: a Lua file returning { {device_id, token}, ... }.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_DATA"))
local n = #data
local step = tonumber(os.getenv("BENCH_THREADS"))
local i = 0

function init(args)
   i = thread_id
end

function request()
   local d = data[((i - 1) % n) + 1]
   i = i + step
   return wrk.format("GET", "/v2/command-inbox/?device_id=" .. d[1],
      { ["Authorization"] = "Bearer " .. d[2] })
end

function response(status, headers, body)
   count_status(status)
   if status == 200 then
      if string.find(body, '"count": 0', 1, true) or string.find(body, '"count":0', 1, true) then
         exhausted = true
      else
         handed_out = handed_out + 1
      end
   end
end
