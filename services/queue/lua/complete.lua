-- complete: acknowledges leased items and, in the same atomic step, enqueues each one's next
-- items (the run's next call; same shard because the shard follows the account). Fenced by
-- generation: a holder whose lease was reclaimed or retried is refused and its next items are
-- not enqueued. The completion leaves a tombstone (value = generation) so a repeated
-- completion is recognised and a re-enqueue of the same id is refused for the TTL. It frees the
-- item's concurrency slots and wakes the partitions blocked on them.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- then per completion c: 2 keys, 2 per concurrency set of its partition, 3 per next item:
--   seen         q:{<ns>s<N>}:seen:<itemId>      STRING tombstone of the completed item
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--   set g:       q:{<ns>s<N>}:c:<acct>:<set>, q:{<ns>s<N>}:bk:<acct>:<set>
--   next j:      q:{<ns>s<N>}:seen:<nextId>, q:{<ns>s<N>}:p:<acct>:<pid>, q:{<ns>s<N>}:a:<acct>
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        tombstone TTL, ms
-- ARGV[3]        completion count n
-- then per completion c: itemId, generation, pid (its partition), accountId, set count s,
--   next count m, then 9 args per next item (as in enqueue.lua)
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n } }, result =
--    1 OK        completed now (and its next items enqueued, unless their ids exist)
--    2 ALREADY   completed before with this same generation (nothing done)
--   -1 STALE     not leased with this generation (lease lost); nothing done
--   -2 WRONG_PARTITION  the pid given is not the item's; nothing done

-- @include "common"

local itemsKey, leasedKey, shardKey, forcedKey = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local now = nowMs(ARGV[1])
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local before = shardDue(shardKey)
seqLoad(KEYS[3], now)
local results = {}
local k, a = 5, 3
for c = 1, n do
  local id, gen, pid, acct = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
  local sets, m = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local seenKey, acctKey = KEYS[k + 1], KEYS[k + 2]
  local setBase = k + 2
  a, k = a + 6, k + 2 + sets * 2
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  if item and item.st == 'l' and item.gen == gen then
    if not string.find(item.body, '"pid":"' .. pid .. '"', 1, true) then
      results[c] = -2
    else
      redis.call('HDEL', itemsKey, id)
      redis.call('ZREM', leasedKey, id)
      redis.call('SET', seenKey, gen, 'PX', ttl)
      for g = 1, sets do
        if redis.call('ZREM', KEYS[setBase + (g - 1) * 2 + 1], id) == 1 then
          wakeBlocked(KEYS[setBase + (g - 1) * 2 + 2], acctKey, shardKey, forcedKey, acct, now)
        end
      end
      for j = 1, m do
        local kj, aj = k + (j - 1) * 3, a + (j - 1) * 9
        addItem(itemsKey, KEYS[kj + 1], KEYS[kj + 2], KEYS[kj + 3], shardKey, forcedKey, now,
          ARGV[aj + 1], ARGV[aj + 2], ARGV[aj + 3], ARGV[aj + 4], ARGV[aj + 5], ARGV[aj + 6], ARGV[aj + 7], ARGV[aj + 8], ARGV[aj + 9])
      end
      results[c] = 1
    end
  elseif not raw and tonumber(redis.call('GET', seenKey)) == gen then
    results[c] = 2
  else
    results[c] = -1
  end
  a, k = a + m * 9, k + m * 3
end
seqSave()
return { now, before, shardDue(shardKey), results }
