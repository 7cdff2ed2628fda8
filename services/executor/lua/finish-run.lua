-- Ends a run once (its terminal status, result and end time) and starts the expiry of its keys.
-- KEYS[1]  s:{<runId>}:m   run metadata (HASH)
-- KEYS[2]  s:{<runId>}:s   step results (HASH)
-- KEYS[3]  s:{<runId>}:k   completion-order stack (LIST)
-- KEYS[4]  s:{<runId>}:p   pending ops (HASH)
-- KEYS[5]  s:{<runId>}:r   resolved ops (HASH)
-- ARGV[1]  terminal status: "completed" | "failed" | "cancelled"
-- ARGV[2]  output (JSON text; "" when failed)
-- ARGV[3]  error (JSON text; "" when completed)
-- ARGV[4]  ended at (epoch ms)
-- ARGV[5]  how long the state is kept after the end (ms)
-- Returns: {ended now (1|0), status, version, endedAt, output, error}; when the run had already
-- ended, the stored outcome is returned unchanged (first writer wins).
-- Errors: "NORUN" (no such run).
local meta = KEYS[1]
local status, output, err, endedAt, ttlMs = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local cur = redis.call("HMGET", meta, "status", "version", "endedAt", "output", "error")
if not cur[1] then return redis.error_reply("NORUN") end
if cur[1] ~= "running" then
  return {0, cur[1], tonumber(cur[2]), tonumber(cur[3]), cur[4] or "", cur[5] or ""}
end

redis.call("HSET", meta, "status", status, "endedAt", endedAt, "output", output, "error", err)
local version = redis.call("HINCRBY", meta, "version", 1)
-- Expiry starts only now, so a live run's state can never expire under it.
for i = 1, #KEYS do redis.call("PEXPIRE", KEYS[i], ttlMs) end
return {1, status, version, tonumber(endedAt), output, err}
