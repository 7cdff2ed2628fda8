-- Debounces one event of a function (per key): the debounce's record keeps the latest event
-- (by its `ts`; an older one arriving late does not replace it) and its due time, now + period,
-- never later than the debounce's deadline (its first event + timeout): a steady stream of events
-- is still bounded by the timeout. A debounce that fired is replaced by a new one. The decision
-- per (function, event) is stored, so a redelivered event changes nothing.
--
-- KEYS[1]  r:{<env>}:db:<fn>:<keyHash>     HASH   id, status (open|fired), event, ts, deadline, due
-- KEYS[2]  r:{<env>}:idem:<fn>:<eventId>   STRING "debounce:<id>" once the event was taken in
-- ARGV[1]  a new debounce id (used when a new debounce starts)
-- ARGV[2]  the event (JSON)          ARGV[3] its ts (epoch ms)
-- ARGV[4]  period, ms                ARGV[5] timeout, ms (0 = none)
-- ARGV[6]  decision TTL, s
-- Returns: { debounce id, due ms }: the item `debounce:<id>` must be queued for that moment;
-- { "", 0 } when the event was decided otherwise before (it started a run: the config changed).

local rec, decisionKey = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period, timeout = tonumber(ARGV[4]), tonumber(ARGV[5])

local cur = redis.call('HMGET', rec, 'id', 'status', 'ts', 'deadline', 'due')
local prior = redis.call('GET', decisionKey)
if prior then
  if string.sub(prior, 1, 9) ~= 'debounce:' then return { '', 0 } end
  local id = string.sub(prior, 10)
  if cur[1] == id then return { id, tonumber(cur[5]) } end
  return { id, now }
end

local id, deadline
if not cur[1] or cur[2] == 'fired' then
  id = ARGV[1]
  deadline = 0
  if timeout > 0 then deadline = now + timeout end
  redis.call('HSET', rec, 'id', id, 'status', 'open', 'event', ARGV[2], 'ts', ARGV[3], 'deadline', deadline)
else
  id = cur[1]
  deadline = tonumber(cur[4]) or 0
  if tonumber(ARGV[3]) >= (tonumber(cur[3]) or 0) then
    redis.call('HSET', rec, 'event', ARGV[2], 'ts', ARGV[3])
  end
end
local due = now + period
if deadline > 0 and due > deadline then due = deadline end
redis.call('HSET', rec, 'due', due)
redis.call('PEXPIRE', rec, (due - now) + 86400000)
redis.call('SET', decisionKey, 'debounce:' .. id, 'EX', tonumber(ARGV[6]))
return { id, due }
