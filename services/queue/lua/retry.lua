-- retry: puts leased items back to ready, fenced by generation, at max(now, runAt) with the
-- attempt number the next delivery carries (unchanged = a release). generation += 1 fences the
-- old holder. A counted retry (attempt grew) resets deliveries and releases: the executor handled
-- the item, so it is not a poison item. A release takes back the delivery its claim counted (the
-- holder answered, so the item did not kill it; only deliveries that end in a lost lease count
-- toward dead-lettering) and counts one more release, which the next lease reports so the holder
-- can back off further. Frees the item's concurrency slots and wakes partitions blocked on them.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- then per item i (2 keys, then 2 per concurrency set of its partition):
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--   set g:       q:{<ns>s<N>}:c:<acct>:<set>, q:{<ns>s<N>}:bk:<acct>:<set>
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        item count n
-- then per item i (6 args):
--   itemId, generation,
--   pid          the item's partition id (must match the stored one)
--   runAt        epoch ms; 0 = now; -1 = back at its original score (release without losing its place)
--   attempt      attempt number of the next delivery
--   sets         number of concurrency sets (keys above)
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n } }, result =
--    1 OK
--   -1 STALE     not leased with this generation (lease lost); nothing done
--   -2 WRONG_PARTITION  the keys given are not the item's partition; nothing done

-- @include "common"

local itemsKey, leasedKey, shardKey, forcedKey = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local now = nowMs(ARGV[1])
local n = tonumber(ARGV[2])

local before = shardDue(shardKey)
seqLoad(KEYS[3], now)
local results = {}
local k, a = 5, 2
for i = 1, n do
  local partKey, acctKey = KEYS[k + 1], KEYS[k + 2]
  local id, gen, pid = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]
  local runAt, attempt, sets = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local setBase = k + 2
  k, a = k + 2 + sets * 2, a + 6
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
    if attempt > item.att then
      item.del, item.rel = 0, 0
    else
      item.del, item.rel = math.max(0, item.del - 1), item.rel + 1
    end
    item.att = attempt
    item.gen = item.gen + 1
    item.st = 'r'
    item.exp = 0
    redis.call('HSET', itemsKey, id, formatItem(item))
    redis.call('ZREM', leasedKey, id)
    redis.call('ZADD', partKey, score, id)
    for g = 1, sets do
      if redis.call('ZREM', KEYS[setBase + (g - 1) * 2 + 1], id) == 1 then
        wakeBlocked(KEYS[setBase + (g - 1) * 2 + 2], acctKey, shardKey, forcedKey, acct, now)
      end
    end
    lowerPointers(acctKey, shardKey, forcedKey, pid, acct, score, now)
    results[i] = 1
  end
end
seqSave()
return { now, before, shardDue(shardKey), results }
