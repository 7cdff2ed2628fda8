-- redrive: puts dead-lettered items back in line, due now, with their deliveries and releases
-- reset (an operator's decision that the cause is fixed). A run's notice "<id>~dead" that is
-- still ready is dropped with it, so the run goes on as if the item had never died; a notice
-- already leased is left to its holder (the run fails, and the redriven item is then acked).
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:dlq                ZSET   dead-lettered itemId -> ms
-- KEYS[3]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- then per item i (2 keys, from KEYS[6]):
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        item count n
-- then per item i (3 args, from ARGV[3]): itemId, accountId, pid (must match the stored ones)
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n } }, result =
--    1 REDRIVEN
--    0 NOT_DEAD  no such item, or not dead-lettered; nothing done
--   -2 WRONG_PARTITION  the item is not of that account and partition; nothing done

-- @include "common"

local itemsKey, dlqKey, shardKey, forcedKey = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local now = nowMs(ARGV[1])
local n = tonumber(ARGV[2])

local before = shardDue(shardKey)
seqLoad(KEYS[3], now)
local results = {}
for i = 1, n do
  local partKey, acctKey = KEYS[5 + (i - 1) * 2 + 1], KEYS[5 + (i - 1) * 2 + 2]
  local a = 2 + (i - 1) * 3
  local id, acct, pid = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  if not item or item.st ~= 'd' then
    results[i] = 0
  else
    local itemAcct, itemPid = bodyPlace(item)
    if itemAcct ~= acct or itemPid ~= pid then
      results[i] = -2
    else
      local noticeId = id .. '~dead'
      local noticeRaw = redis.call('HGET', itemsKey, noticeId)
      local notice = noticeRaw and parseItem(noticeRaw)
      if notice and notice.st == 'r' then
        redis.call('HDEL', itemsKey, noticeId)
        redis.call('ZREM', partKey, noticeId)
      end
      item.st, item.gen, item.del, item.rel, item.exp = 'r', item.gen + 1, 0, 0, 0
      item.due, item.sc = now, newScore(now)
      redis.call('HSET', itemsKey, id, formatItem(item))
      redis.call('ZREM', dlqKey, id)
      redis.call('ZADD', partKey, string.format('%d', item.sc), id)
      refreshPartitionPointer(partKey, acctKey, forcedKey, acct, pid, now)
      resetAccountPointer(acctKey, shardKey, acct)
      results[i] = 1
    end
  end
end
seqSave()
return { now, before, shardDue(shardKey), results }
