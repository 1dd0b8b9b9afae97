-- Status updates: PUT /commands/v0/status/{id}/ with the device's own token, each request a
-- different command (thread t takes commands t, t+T, ...), body BENCH_STATE.
-- DATA: a Lua file returning { {command_id, token}, ... }.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local data = dofile(os.getenv("BENCH_DATA"))
local n = #data
local step = tonumber(os.getenv("BENCH_THREADS"))
local body = '{"state": "' .. os.getenv("BENCH_STATE") .. '"}'
local i = 0

function init(args)
   i = thread_id
end

function request()
   if i > n then
      exhausted = true
      i = thread_id -- wrap: repeats are no-ops (200) and are counted apart by inbox_load.py
   end
   local d = data[i]
   i = i + step
   return wrk.format("PUT", "/commands/v0/status/" .. d[1] .. "/",
      { ["Authorization"] = "Bearer " .. d[2], ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
   count_status(status)
end
