-- remove: deletes queued items that are not leased (a cancelled run's sleeps and timeouts), and
-- leaves a tombstone so a late enqueue of the same id is refused for the TTL. A leased item is
-- left alone: its holder finds the run ended and acks it.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[3]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- then per item i (3 keys, from KEYS[4]):
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--   seen         q:{<ns>s<N>}:seen:<itemId>      STRING tombstone
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        tombstone TTL, ms
-- ARGV[3]        item count n
-- then per item i (3 args, from ARGV[4]):
--   itemId, accountId,
--   pid          the item's partition id (must match the stored one)
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n } }, result =
--    1 REMOVED
--    0 ABSENT     no such item (never queued, completed, or removed before)
--   -1 LEASED     the item is leased (or dead-lettered); nothing done
--   -2 WRONG_PARTITION  the keys given are not the item's partition; nothing done

-- @include "common"

local itemsKey, shardKey, forcedKey = KEYS[1], KEYS[2], KEYS[3]
local now = nowMs(ARGV[1])
local ttl, n = tonumber(ARGV[2]), tonumber(ARGV[3])

local before = shardDue(shardKey)
local results = {}
for i = 1, n do
  local k, a = 3 + (i - 1) * 3, 3 + (i - 1) * 3
  local partKey, acctKey, seenKey = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id, acct, pid = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  if not item then
    results[i] = 0
  elseif item.st ~= 'r' then
    results[i] = -1
  else
    local itemAcct, itemPid = bodyPlace(item)
    if itemPid ~= pid or itemAcct ~= acct then
      results[i] = -2
    else
      redis.call('HDEL', itemsKey, id)
      redis.call('ZREM', partKey, id)
      redis.call('SET', seenKey, 'removed', 'PX', ttl)
      -- Pointers stay their child's head (or forceAt), and never name an empty child.
      refreshPartitionPointer(partKey, acctKey, forcedKey, acct, pid, now)
      resetAccountPointer(acctKey, shardKey, acct)
      results[i] = 1
    end
  end
end
return { now, before, shardDue(shardKey), results }
