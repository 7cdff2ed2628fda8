-- Appends one event to its function's open batch (per key), if the batch is still the one the
-- caller read: the batch id is only known once the pointer is read, so the caller reads it, then
-- calls this with that batch's keys, and reads again on "retry". A batch that reaches maxSize is
-- closed (the pointer is dropped, so the next event opens a new batch). The decision per
-- (function, event) is stored, so a redelivered event is not appended twice.
--
-- KEYS[1]  r:{<env>}:bp:<fn>:<keyHash>     STRING id of the open batch
-- KEYS[2]  r:{<env>}:b:<fn>:<id>           LIST   the batch's events (JSON)
-- KEYS[3]  r:{<env>}:bm:<fn>:<id>          HASH   created (epoch ms), started (1 once fired)
-- KEYS[4]  r:{<env>}:idem:<fn>:<eventId>   STRING "batch:<id>" once the event was appended
-- ARGV[1]  batch id (as read from the pointer, or a new one)
-- ARGV[2]  1 when ARGV[1] is a new batch (the pointer was empty), else 0
-- ARGV[3]  the event (JSON)   ARGV[4] max size (count)   ARGV[5] TTL of the batch's keys, s
-- Returns: { "ok", size, created ms } | { "dup", "batch:<id>" } | { "retry" }

local ptr, list, meta, decisionKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, isNew, maxSize, ttl = ARGV[1], ARGV[2] == '1', tonumber(ARGV[4]), tonumber(ARGV[5])
local prior = redis.call('GET', decisionKey)
if prior then return { 'dup', prior } end
local cur = redis.call('GET', ptr)
if isNew then
  if cur then return { 'retry' } end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', ptr, id, 'EX', ttl)
  redis.call('HSET', meta, 'created', now)
  redis.call('EXPIRE', meta, ttl)
elseif cur ~= id then
  return { 'retry' }
end
redis.call('RPUSH', list, ARGV[3])
redis.call('EXPIRE', list, ttl)
local size = redis.call('LLEN', list)
if size >= maxSize then redis.call('DEL', ptr) end
redis.call('SET', decisionKey, 'batch:' .. id, 'EX', ttl)
return { 'ok', size, tonumber(redis.call('HGET', meta, 'created')) }
