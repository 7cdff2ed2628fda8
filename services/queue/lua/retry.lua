-- retry: puts leased items back to ready, fenced by generation, at max(now, runAt) with the
-- attempt number the next delivery carries (unchanged = a release). generation += 1 fences the
-- old holder. A counted retry (attempt grew) resets deliveries: the executor handled the item,
-- so it is not a poison item.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- then per item i (2 keys, from KEYS[5]):
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        item count n
-- then per item i (5 args, from ARGV[3]):
--   itemId, generation,
--   pid          the item's partition id (must match the stored one)
--   runAt        epoch ms; 0 = now; -1 = back at its original score (release without losing its place)
--   attempt      attempt number of the next delivery
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n } }, result =
--    1 OK
--   -1 STALE     not leased with this generation (lease lost); nothing done
--   -2 WRONG_PARTITION  the keys given are not the item's partition; nothing done

-- @include "common"

local itemsKey, leasedKey, shardKey = KEYS[1], KEYS[2], KEYS[4]
local now = nowMs(ARGV[1])
local n = tonumber(ARGV[2])

local before = shardDue(shardKey)
seqLoad(KEYS[3], now)
local results = {}
for i = 1, n do
  local partKey, acctKey = KEYS[4 + (i - 1) * 2 + 1], KEYS[4 + (i - 1) * 2 + 2]
  local a = 2 + (i - 1) * 5
  local id, gen, pid = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]
  local runAt, attempt = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  local acct, itemPid
  if item then acct, itemPid = bodyPlace(item) end
  if not item or item.st ~= 'l' or item.gen ~= gen then
    results[i] = -1
  elseif itemPid ~= pid then
    results[i] = -2
  else
    if runAt >= 0 then
      item.due = math.max(now, runAt)
      item.sc = newScore(item.due)
    end
    local score = item.sc
    if attempt > item.att then item.del = 0 end
    item.att = attempt
    item.gen = item.gen + 1
    item.st = 'r'
    item.exp = 0
    redis.call('HSET', itemsKey, id, formatItem(item))
    redis.call('ZREM', leasedKey, id)
    redis.call('ZADD', partKey, score, id)
    lowerPointers(acctKey, shardKey, pid, acct, score)
    results[i] = 1
  end
end
seqSave()
return { now, before, shardDue(shardKey), results }
