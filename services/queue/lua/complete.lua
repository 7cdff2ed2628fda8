-- complete: acknowledges leased items and, in the same atomic step, enqueues each one's next
-- items (the run's next call; same shard because the shard follows the account). Fenced by
-- generation: a holder whose lease was reclaimed or retried is refused and its next items are
-- not enqueued. The completion leaves a tombstone (value = generation) so a repeated
-- completion is recognised and a re-enqueue of the same id is refused for the TTL.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- then per completion c: 1 key, then 3 keys per next item (as in enqueue.lua):
--   seen         q:{<ns>s<N>}:seen:<itemId>      STRING tombstone of the completed item
--   next j:      q:{<ns>s<N>}:seen:<nextId>, q:{<ns>s<N>}:p:<acct>:<pid>, q:{<ns>s<N>}:a:<acct>
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        tombstone TTL, ms
-- ARGV[3]        completion count n
-- then per completion c: itemId, generation, next count m, then 7 args per next item
--   (itemId, pid, accountId, runAt epoch ms or 0, delay ms, attempt, body; as in enqueue.lua)
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n } }, result =
--    1 OK        completed now (and its next items enqueued, unless their ids exist)
--    2 ALREADY   completed before with this same generation (nothing done)
--   -1 STALE     not leased with this generation (lease lost); nothing done

-- @include "common"

local itemsKey, leasedKey, shardKey = KEYS[1], KEYS[2], KEYS[4]
local now = nowMs(ARGV[1])
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local before = shardDue(shardKey)
seqLoad(KEYS[3], now)
local results = {}
local k, a = 4, 3
for c = 1, n do
  local id, gen, m = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local seenKey = KEYS[k + 1]
  a, k = a + 3, k + 1
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  if item and item.st == 'l' and item.gen == gen then
    redis.call('HDEL', itemsKey, id)
    redis.call('ZREM', leasedKey, id)
    redis.call('SET', seenKey, gen, 'PX', ttl)
    for j = 1, m do
      local kj, aj = k + (j - 1) * 3, a + (j - 1) * 7
      addItem(itemsKey, KEYS[kj + 1], KEYS[kj + 2], KEYS[kj + 3], shardKey, now,
        ARGV[aj + 1], ARGV[aj + 2], ARGV[aj + 3], ARGV[aj + 4], ARGV[aj + 5], ARGV[aj + 6], ARGV[aj + 7])
    end
    results[c] = 1
  elseif not raw and tonumber(redis.call('GET', seenKey)) == gen then
    results[c] = 2
  else
    results[c] = -1
  end
  a, k = a + m * 7, k + m * 3
end
seqSave()
return { now, before, shardDue(shardKey), results }
