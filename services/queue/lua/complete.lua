-- complete: acknowledges leased items and, in the same atomic step, enqueues each one's next
-- items (the run's next call; same shard because the shard follows the account). Fenced by
-- generation: a holder whose lease was reclaimed or retried is refused and its next items are
-- not enqueued. The completion leaves a tombstone (value = generation) so a repeated
-- completion is recognised and a re-enqueue of the same id is refused for the TTL. It frees the
-- item's concurrency slots and wakes the partitions blocked on them.
--
-- Hand-off: a completion may name one of its next items (due now, of the completed item's
-- partition) to lease at once to the completing holder. The new item is created leased
-- (generation 1, one delivery) and takes over the completed item's concurrency slots, so the
-- limits hold and nothing blocked is woken for them; it never enters the ready sets. It is not
-- handed off (but enqueued as usual) when its function is paused or its id exists.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- KEYS[6]        q:{<ns>s<N>}:fp                 SET    paused functions "<acct>\n<env>\n<fn>"
-- then per completion c: 2 keys, 2 per concurrency set of its partition, 3 per next item:
--   seen         q:{<ns>s<N>}:seen:<itemId>      STRING tombstone of the completed item
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--   set g:       q:{<ns>s<N>}:c:<acct>:<set>, q:{<ns>s<N>}:bk:<acct>:<set>
--   next j:      q:{<ns>s<N>}:seen:<nextId>, q:{<ns>s<N>}:p:<acct>:<pid>, q:{<ns>s<N>}:a:<acct>
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        tombstone TTL, ms
-- ARGV[3]        completion count n
-- ARGV[4]        lease duration of handed-off items, ms
-- then per completion c: itemId, generation, pid (its partition), accountId, set count s,
--   next count m, hand-off index h (1..m; 0 = none), its function "<acct>\n<env>\n<fn>",
--   then 9 args per next item (as in enqueue.lua)
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { result_1..result_n }, { c, itemId, item record,
-- ... (handed off) } }, result =
--    1 OK        completed now (and its next items enqueued, unless their ids exist)
--    2 ALREADY   completed before with this same generation (nothing done)
--   -1 STALE     not leased with this generation (lease lost); nothing done
--   -2 WRONG_PARTITION  the pid given is not the item's; nothing done

-- @include "common"

local itemsKey, leasedKey, shardKey, forcedKey, pausedKey = KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6]
local now = nowMs(ARGV[1])
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local expiry = now + tonumber(ARGV[4])

local before = shardDue(shardKey)
seqLoad(KEYS[3], now)
local results = {}
local handed = {}
local k, a = 6, 4
for c = 1, n do
  local id, gen, pid, acct = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
  local sets, m = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local h, fnMember = tonumber(ARGV[a + 7]), ARGV[a + 8]
  local seenKey, acctKey = KEYS[k + 1], KEYS[k + 2]
  local setBase = k + 2
  a, k = a + 8, k + 2 + sets * 2
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  if item and item.st == 'l' and item.gen == gen then
    if not string.find(item.body, '"pid":"' .. pid .. '"', 1, true) then
      results[c] = -2
    else
      redis.call('HDEL', itemsKey, id)
      redis.call('ZREM', leasedKey, id)
      redis.call('SET', seenKey, gen, 'PX', ttl)
      -- The hand-off candidate must be due now (no run-at, no delay), of this account and
      -- partition, and not paused; and the completed item must still hold its slots (a lease that
      -- expired may have had its slot given to another item by claim: taking it again would put
      -- the set over its limit).
      if h > 0 and h <= m then
        local ah = a + (h - 1) * 9
        local dueNow = tonumber(ARGV[ah + 4]) <= 0 and tonumber(ARGV[ah + 5]) <= 0
        if ARGV[ah + 2] ~= pid or ARGV[ah + 3] ~= acct or not dueNow or item.exp <= now
          or redis.call('SISMEMBER', pausedKey, fnMember) == 1 then
          h = 0
        end
        for g = 1, sets do
          if h > 0 and not redis.call('ZSCORE', KEYS[setBase + (g - 1) * 2 + 1], id) then h = 0 end
        end
      else
        h = 0
      end
      local newId
      for j = 1, m do
        local kj, aj = k + (j - 1) * 3, a + (j - 1) * 9
        local rec = j == h and leaseNewItem(itemsKey, leasedKey, KEYS[kj + 1], now, expiry, ARGV[aj + 1], ARGV[aj + 6],
          ARGV[aj + 7], ARGV[aj + 8], ARGV[aj + 9])
        if rec then
          newId = ARGV[aj + 1]
          handed[#handed + 1] = c
          handed[#handed + 1] = newId
          handed[#handed + 1] = rec
        else
          addItem(itemsKey, KEYS[kj + 1], KEYS[kj + 2], KEYS[kj + 3], shardKey, forcedKey, now,
            ARGV[aj + 1], ARGV[aj + 2], ARGV[aj + 3], ARGV[aj + 4], ARGV[aj + 5], ARGV[aj + 6], ARGV[aj + 7], ARGV[aj + 8], ARGV[aj + 9])
        end
      end
      for g = 1, sets do
        local setKey = KEYS[setBase + (g - 1) * 2 + 1]
        if redis.call('ZREM', setKey, id) == 1 then
          if newId then
            -- The handed-off item takes the slot over: the set's size does not change.
            redis.call('ZADD', setKey, expiry, newId)
          else
            wakeBlocked(KEYS[setBase + (g - 1) * 2 + 2], acctKey, shardKey, forcedKey, acct, now)
          end
        end
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
return { now, before, shardDue(shardKey), results, handed }
