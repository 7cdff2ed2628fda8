-- Fires a debounce whose item came due: when it is due (no later event pushed it back), it is
-- marked fired and its last event kept for 24 h under its id, so a repeated fire gets the same
-- event (and so the same run).
--
-- KEYS[1]  r:{<env>}:db:<fn>:<keyHash>     HASH   the debounce's record
-- KEYS[2]  r:{<env>}:dbf:<fn>:<id>         STRING the event the debounce fired with
-- ARGV[1]  debounce id     ARGV[2] TTL of the fired event, s
-- Returns: { "fired", event JSON } | { "wait", due ms } | { "gone" }

local rec, firedKey = KEYS[1], KEYS[2]
local fired = redis.call('GET', firedKey)
if fired then return { 'fired', fired } end
local cur = redis.call('HMGET', rec, 'id', 'status', 'event', 'due')
if cur[1] ~= ARGV[1] then return { 'gone' } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = tonumber(cur[4]) or 0
if now < due then return { 'wait', due } end
redis.call('HSET', rec, 'status', 'fired')
redis.call('SET', firedKey, cur[3], 'EX', tonumber(ARGV[2]))
return { 'fired', cur[3] }
