-- Records what one call (or one resume) did to a run, atomically: saves step results (first
-- writer wins), resolves the pending op the call or resume was about, tracks newly planned ops,
-- and numbers the run's next call. Docs: services/executor/README.md ("Pending ops").
-- KEYS[1]  s:{<runId>}:m   run metadata (HASH)
-- KEYS[2]  s:{<runId>}:s   step results: hashed step id -> memo JSON (HASH)
-- KEYS[3]  s:{<runId>}:k   hashed ids of saved steps in completion order (LIST)
-- KEYS[4]  s:{<runId>}:p   pending ops: hashed id -> "<planner>|<mode>": the item whose call
--                           planned it, and "", "race", or "w:<event>" for a wait on that event
--                           (HASH)
-- KEYS[5]  s:{<runId>}:r   resolved ops: hashed id -> "<0|1>:<resolver>" (HASH)
-- ARGV[1]  request version the SDK answered ("" = leave as it is)
-- ARGV[2]  "1" to set disable_immediate_execution ("" = leave as it is)
-- ARGV[3]  hashed id of the op this call resolves ("" = none: a discovery call)
-- ARGV[4]  resolver: who resolves it (a queue item id, or "e:<eventId>"); ARGV[3] set only
-- ARGV[5]  memo to save under ARGV[3] first ("" = none; a resume's `{"data":null}` etc.)
-- ARGV[6]  planner: the item whose call made the plans below ("" when there are none)
-- ARGV[7]  limits "<steps>:<state bytes>:<step bytes>:<calls>" (each 0 = none): the most saved
--          steps, bytes of saved memos, bytes of one memo, and calls a run may have
-- ARGV[8]  save count n, then n pairs (hashed step id, memo JSON `{"data":..}` or `{"error":..}`)
-- then     plan count m, then m pairs (hashed op id, mode)
-- then     optionally, the environment the run must belong to (a checkpoint names it): a run of
--          another environment answers "NORUN", and the reply ends with the run's account and
--          traceparent
-- Returns: {call number (>= 1), stack length, resolution, n saved flags (1 = saved now, 0 = an
-- earlier writer's result was kept), m plan flags (1 = pending and planned by this planner: start
-- it (index its wait, send its invoke) and schedule it; 2 = pending, planned by another call:
-- schedule it only (its item collapses); 0 = already saved)}. A planner asking again (its item
-- redelivered) gets 1 again, so what a crash cut short is done; a later discovery call that
-- reports the same op (SDK request version 1 does) gets 2 and starts nothing twice.
-- resolution: -1 nothing to resolve; 0 resolved by this resolver, no discovery call follows;
-- 1 resolved by this resolver, a discovery call follows; -2 another resolver resolved it first
-- (the caller drops its work). A resolver asking again gets its first answer (idempotent).
-- Errors: "NORUN" (no such run), "ENDED" (the run has already ended; nothing is written),
-- "LIMIT <name> <value>" (this call would take the run past a limit of ARGV[7]: steps, state,
-- step or calls; nothing is written, and the caller fails the run).
local meta, steps, stack, pending, resolved = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local reqVersion, setDie, op, resolver, resumeMemo = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local planner = ARGV[6]

local maxSteps, maxState, maxStep, maxCalls = string.match(ARGV[7], "^(%d+):(%d+):(%d+):(%d+)$")
maxSteps, maxState, maxStep, maxCalls = tonumber(maxSteps), tonumber(maxState), tonumber(maxStep), tonumber(maxCalls)
local n = tonumber(ARGV[8])
local base = 9 + 2 * n
local m = tonumber(ARGV[base])
local expectEnv = ARGV[base + 1 + 2 * m]

local status = redis.call("HGET", meta, "status")
if not status then return redis.error_reply("NORUN") end
if expectEnv and redis.call("HGET", meta, "env") ~= expectEnv then return redis.error_reply("NORUN") end
if status ~= "running" then return redis.error_reply("ENDED") end

-- Limits, checked before anything is written.
if maxCalls > 0 and tonumber(redis.call("HGET", meta, "calls") or "0") >= maxCalls then
  return redis.error_reply("LIMIT calls " .. maxCalls)
end
local newSteps, newBytes = 0, 0
local function counts(id, memo)
  if maxStep > 0 and #memo > maxStep then return false end
  if redis.call("HEXISTS", steps, id) == 0 then
    newSteps, newBytes = newSteps + 1, newBytes + #memo
  end
  return true
end
if op ~= "" and resumeMemo ~= "" and not counts(op, resumeMemo) then
  return redis.error_reply("LIMIT step " .. maxStep)
end
for i = 0, n - 1 do
  if not counts(ARGV[9 + 2 * i], ARGV[10 + 2 * i]) then return redis.error_reply("LIMIT step " .. maxStep) end
end
if maxSteps > 0 and redis.call("LLEN", stack) + newSteps > maxSteps then
  return redis.error_reply("LIMIT steps " .. maxSteps)
end
if maxState > 0 and tonumber(redis.call("HGET", meta, "bytes") or "0") + newBytes > maxState then
  return redis.error_reply("LIMIT state " .. maxState)
end

local function save(id, memo)
  -- A step saved once is never overwritten: a replayed or duplicated call cannot change history.
  if redis.call("HSETNX", steps, id, memo) == 1 then
    redis.call("RPUSH", stack, id)
    redis.call("HINCRBY", meta, "bytes", #memo)
    return 1
  end
  return 0
end

local resolution = -1
if op ~= "" then
  local rec = redis.call("HGET", resolved, op)
  if rec then
    -- Resolved before: by this resolver (a redelivery: same answer) or by another (it lost).
    if string.sub(rec, 3) ~= resolver then
      return {redis.call("HGET", meta, "calls"), redis.call("LLEN", stack), -2}
    end
    resolution = tonumber(string.sub(rec, 1, 1))
  end
  if resumeMemo ~= "" then save(op, resumeMemo) end
end

local result = {0, 0, 0}
for i = 0, n - 1 do
  result[#result + 1] = save(ARGV[9 + 2 * i], ARGV[10 + 2 * i])
end

if reqVersion ~= "" then redis.call("HSET", meta, "reqVersion", reqVersion) end
if setDie == "1" then redis.call("HSET", meta, "die", 1) end

if op ~= "" and resolution == -1 then
  local entry = redis.call("HGET", pending, op)
  local mode = entry and string.match(entry, "^[^|]*|(.*)$")
  redis.call("HDEL", pending, op)
  -- SDK request version 2 coalesces parallel work: one discovery call once every pending op
  -- resolved. Version 1 and `race` ops discover after each resolution.
  local coalesce = redis.call("HGET", meta, "reqVersion") == "2" and mode ~= "race"
  if coalesce and redis.call("HLEN", pending) > 0 then
    resolution = 0
  else
    resolution = 1
    if coalesce then redis.call("HSET", meta, "die", 0) end
  end
  redis.call("HSET", resolved, op, resolution .. ":" .. resolver)
end

for i = 0, m - 1 do
  local id, mode = ARGV[base + 1 + 2 * i], ARGV[base + 2 + 2 * i]
  -- An op saved already (it resolved meanwhile) is not pending again.
  if redis.call("HEXISTS", steps, id) == 1 then
    result[#result + 1] = 0
  else
    redis.call("HSETNX", pending, id, planner .. "|" .. mode)
    local by = string.match(redis.call("HGET", pending, id), "^([^|]*)|")
    result[#result + 1] = (by == planner) and 1 or 2
  end
end

result[1] = redis.call("HINCRBY", meta, "calls", 1)
result[2] = redis.call("LLEN", stack)
result[3] = resolution
if expectEnv then
  result[#result + 1] = redis.call("HGET", meta, "account") or ""
  result[#result + 1] = redis.call("HGET", meta, "tp") or ""
end
return result
