-- Creates a run's metadata hash unless the run already exists (idempotent per run id).
-- KEYS[1]  s:{<runId>}:m   run metadata (HASH)
-- ARGV[1]  account id
-- ARGV[2]  environment id
-- ARGV[3]  app id
-- ARGV[4]  function id
-- ARGV[5]  function version
-- ARGV[6]  URL to call
-- ARGV[7]  max attempts per call (count, >= 1)
-- ARGV[8]  trigger events (canonical JSON array)
-- ARGV[9]  created at (epoch ms)
-- ARGV[10] cancelOn entries (JSON array of {event, expression, timeoutMs}; "[]" for none)
-- ARGV[11] timeouts.start (ms, 0 = none)
-- ARGV[12] timeouts.finish (ms, 0 = none)
-- ARGV[13] flow control every item of the run carries (JSON of the queue's FlowControl; "" = none)
-- ARGV[14] singleton lock the run holds ("k:<key hash>"; "" = none)
-- ARGV[15] W3C traceparent the run's spans hang under ("" = not traced; then no field is kept)
-- ARGV[16] length of the first event's text inside ARGV[8] (calls slice it out rather than parse)
-- Returns: {created (1|0), status, calls, version, createdAt} of the run as it is after the call;
-- an existing run is left untouched. No errors.
local meta = KEYS[1]

local account, env, app, fn, fnVersion = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local url, maxAttempts, events, createdAt = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local cancelOn, startTimeout, finishTimeout, flow, singleton = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]

if redis.call("EXISTS", meta) == 1 then
  local cur = redis.call("HMGET", meta, "status", "calls", "version", "createdAt")
  return {0, cur[1], tonumber(cur[2]), tonumber(cur[3]), tonumber(cur[4])}
end

-- No TTL while the run lives: state expires only after the run ends (finish-run.lua).
redis.call("HSET", meta,
  "account", account, "env", env, "app", app, "fn", fn, "fnVersion", fnVersion,
  "url", url, "maxAttempts", maxAttempts, "events", events, "createdAt", createdAt,
  "status", "running", "calls", 0, "version", 1, "reqVersion", -1,
  "cancelOn", cancelOn, "startTimeout", startTimeout, "finishTimeout", finishTimeout, "flow", flow,
  "singleton", singleton)
if ARGV[15] ~= "" then redis.call("HSET", meta, "tp", ARGV[15]) end
if ARGV[16] ~= "" then redis.call("HSET", meta, "e0", ARGV[16]) end
return {1, "running", 0, 1, tonumber(createdAt)}
