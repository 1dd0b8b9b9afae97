-- Empty-inbox polls: each request polls a random device with its own token and the ETag
-- its last (empty) answer carried, so the server can answer 304.
-- DATA: a Lua file returning { {device_id, token, etag}, ... } (written by inbox_load.py).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_DATA"))
local n = #data

function init(args)
   math.randomseed(os.time() + (thread_id or 0) * 7919)
end

function request()
   local d = data[math.random(n)]
   return wrk.format("GET", "/v2/command-inbox/?device_id=" .. d[1],
      { ["Authorization"] = "Bearer " .. d[2], ["If-None-Match"] = d[3] })
end

function response(status, headers, body)
   count_status(status)
end
