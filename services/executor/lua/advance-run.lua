-- Saves step results (first writer wins) and numbers the run's next call, atomically.
-- KEYS[1]  s:{<runId>}:m   run metadata (HASH)
-- KEYS[2]  s:{<runId>}:s   step results: hashed step id -> memo JSON (HASH)
-- KEYS[3]  s:{<runId>}:k   hashed ids of saved steps in completion order (LIST)
-- ARGV[1]  request version the SDK answered ("" = leave as it is)
-- ARGV[2], ARGV[3], ...  pairs of (hashed step id, memo JSON `{"data":..}` or `{"error":..}`)
-- Returns: {call number (>= 1), stack length, saved flag per pair (1 = saved now, 0 = an earlier
-- writer's result was kept)}.
-- Errors: "NORUN" (no such run), "ENDED" (the run has already ended; nothing is written).
local meta, steps, stack = KEYS[1], KEYS[2], KEYS[3]
local reqVersion = ARGV[1]

local status = redis.call("HGET", meta, "status")
if not status then return redis.error_reply("NORUN") end
if status ~= "running" then return redis.error_reply("ENDED") end

local result = {0, 0}
for i = 2, #ARGV - 1, 2 do
  local id, memo = ARGV[i], ARGV[i + 1]
  -- A step saved once is never overwritten: a replayed or duplicated call cannot change history.
  if redis.call("HSETNX", steps, id, memo) == 1 then
    redis.call("RPUSH", stack, id)
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end

if reqVersion ~= "" then redis.call("HSET", meta, "reqVersion", reqVersion) end
result[1] = redis.call("HINCRBY", meta, "calls", 1)
result[2] = redis.call("LLEN", stack)
return result
