-- reclaim: the owner returns expired leases to ready at their original score (keeping their
-- place), re-checking each expiry here so a lease extended since it was read is left alone.
-- generation += 1 fences the old holder; deliveries were already counted at claim.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:owner              STRING owner token
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- then per item i (2 keys, from KEYS[6]):
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score (q:{<ns>s<N>}:- if unknown)
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score (q:{<ns>s<N>}:- if unknown)
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        owner token
-- ARGV[3]        item count n
-- then per item i (2 args, from ARGV[4]): itemId, pid (as read by expired.lua)
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n } }, result =
--    1 RECLAIMED
--    0 SKIPPED   not leased or not expired any more (a leftover member of L is removed)
--   -2 WRONG_PARTITION  the keys given are not the item's partition; nothing done
-- Errors: NOT_OWNER (the token is not the shard's current owner; nothing changed).

-- @include "common"

-- The item's concurrency slots need no freeing: an expired lease no longer counts (claim trims it).
local itemsKey, leasedKey, ownerKey, shardKey, forcedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = nowMs(ARGV[1])
if redis.call('GET', ownerKey) ~= ARGV[2] then return redis.error_reply('NOT_OWNER') end
local n = tonumber(ARGV[3])

local before = shardDue(shardKey)
local results = {}
for i = 1, n do
  local partKey, acctKey = KEYS[5 + (i - 1) * 2 + 1], KEYS[5 + (i - 1) * 2 + 2]
  local id, pid = ARGV[3 + (i - 1) * 2 + 1], ARGV[3 + (i - 1) * 2 + 2]
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  local acct, itemPid
  if item then acct, itemPid = bodyPlace(item) end
  if not item or item.st ~= 'l' then
    redis.call('ZREM', leasedKey, id)
    results[i] = 0
  elseif item.exp > now then
    results[i] = 0
  elseif itemPid ~= pid then
    results[i] = -2
  else
    item.gen = item.gen + 1
    item.st = 'r'
    item.exp = 0
    local score = item.sc
    redis.call('HSET', itemsKey, id, formatItem(item))
    redis.call('ZREM', leasedKey, id)
    redis.call('ZADD', partKey, score, id)
    lowerPointers(acctKey, shardKey, forcedKey, pid, acct, score, now)
    results[i] = 1
  end
end
return { now, before, shardDue(shardKey), results }
