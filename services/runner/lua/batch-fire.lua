-- Fires a batch (its timeout came, or it filled up): closes it to new events if it is still open
-- and returns its events. Idempotent: a repeated fire returns the same events.
--
-- KEYS[1]  r:{<env>}:bp:<fn>:<keyHash>     STRING id of the open batch
-- KEYS[2]  r:{<env>}:b:<fn>:<id>           LIST   the batch's events (JSON)
-- KEYS[3]  r:{<env>}:bm:<fn>:<id>          HASH   created, started
-- ARGV[1]  batch id
-- Returns: the batch's events (empty when the batch is gone).

local ptr, list, meta = KEYS[1], KEYS[2], KEYS[3]
if redis.call('GET', ptr) == ARGV[1] then redis.call('DEL', ptr) end
if redis.call('EXISTS', list) == 0 then return {} end
redis.call('HSET', meta, 'started', 1)
return redis.call('LRANGE', list, 0, -1)
