-- Empty-inbox polls: each request polls a random device with its own token, and with the ETag
-- of its last (empty) answer when the data has one, so the server can answer 304; without one
-- the server runs the hand-out query, finds nothing and answers 200 with an empty page.
-- DATA: a Lua file returning { {device_id, token[, etag]}, ... } (written by inbox_load.py).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_DATA"))
local n = #data

function init(args)
   math.randomseed(os.time() + (thread_id or 0) * 7919)
end

function request()
   local d = data[math.random(n)]
   local headers = { ["Authorization"] = "Bearer " .. d[2] }
   if d[3] then
      headers["If-None-Match"] = d[3]
   end
   return wrk.format("GET", "/v2/command-inbox/?device_id=" .. d[1], headers)
end

function response(status, headers, body)
   count_status(status)
   if status == 200 and not (string.find(body, '"count": 0', 1, true) or string.find(body, '"count":0', 1, true)) then
      handed_out = handed_out + 1 -- not empty: a command was waiting, reported by inbox_load.py
   end
end
