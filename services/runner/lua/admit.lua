-- Admits the (event, function) pairs of one environment: gives each its run id, or the reason it
-- starts no run (the function's idempotency key was seen, or its rate limit is full). Each
-- decision is stored per (function, event) for 24 h, so a Kafka redelivery, a second replica or
-- the same event id sent again gets the same answer.
--
-- KEYS[1]        r:{<env>}:ver                   STRING the registry's version (registry.ts)
-- then per pair i (3 keys, all under the environment's tag r:{<env>}):
--   decision     r:{<env>}:idem:<fn>:<eventId>   STRING run id, or "skip:<reason>:<detail>"
--   idempotency  r:{<env>}:uidem:<fn>:<keyHash>  STRING run id that took the key (r:{<env>}:- if none)
--   rate         r:{<env>}:rl:<fn>:<keyHash>     ZSET   eventId -> ms admitted (r:{<env>}:- if none)
-- ARGV[1]        decision TTL, s (the idempotency window)
-- ARGV[2]        the registry version the pairs were matched at ("" = not checked)
-- then per pair i (5 args): proposed run id, event id, has idempotency key (0|1),
--   rate limit (count, 0 = none), rate period (ms)
-- Returns: one decision per pair: a run id, "skip:idempotent:<run id>" or "skip:rate:<limit>:<period ms>";
--   or { "stale" } when the registry's version is not ARGV[2] (nothing is written: the caller
--   matches the events again against the functions synced since).

local ttl = tonumber(ARGV[1])
if ARGV[2] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[2] then return { 'stale' } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local n = (#KEYS - 1) / 3
for i = 1, n do
  local decisionKey, idemKey, rateKey = KEYS[(i - 1) * 3 + 2], KEYS[(i - 1) * 3 + 3], KEYS[(i - 1) * 3 + 4]
  local a = 2 + (i - 1) * 5
  local proposed, eventId = ARGV[a + 1], ARGV[a + 2]
  local hasIdem, limit, period = ARGV[a + 3] == '1', tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local decision = redis.call('GET', decisionKey)
  if not decision then
    decision = proposed
    -- A duplicate does not spend the rate limit: the idempotency key is checked first.
    if hasIdem then
      local holder = redis.call('GET', idemKey)
      if holder then decision = 'skip:idempotent:' .. holder end
    end
    if decision == proposed and limit > 0 then
      redis.call('ZREMRANGEBYSCORE', rateKey, '-inf', now - period)
      if redis.call('ZCARD', rateKey) >= limit then
        decision = 'skip:rate:' .. limit .. ':' .. period
      else
        redis.call('ZADD', rateKey, now, eventId)
        redis.call('PEXPIRE', rateKey, period)
      end
    end
    if decision == proposed and hasIdem then redis.call('SET', idemKey, proposed, 'EX', ttl) end
    redis.call('SET', decisionKey, decision, 'EX', ttl)
  end
  out[i] = decision
end
return out
