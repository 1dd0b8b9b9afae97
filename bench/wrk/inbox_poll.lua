-- Empty-inbox polls without an ETag: each request polls a random device with its own token
-- and no If-None-Match, so the server runs the hand-out query, finds nothing and answers
-- 200 with an empty page (and the ETag a device would send back next time).
-- DATA: a Lua file returning { {device_id, token}, ... }.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_DATA"))
local n = #data

function init(args)
   math.randomseed(os.time() + (thread_id or 0) * 7919)
end

function request()
   local d = data[math.random(n)]
   return wrk.format("GET", "/v2/command-inbox/?device_id=" .. d[1],
      { ["Authorization"] = "Bearer " .. d[2] })
end

function response(status, headers, body)
   count_status(status)
   if status == 200 and not (string.find(body, '"count": 0', 1, true) or string.find(body, '"count":0', 1, true)) then
      handed_out = handed_out + 1 -- not empty: a command was waiting, reported by inbox_load.py
   end
end
