-- enqueue: adds a batch of items to one shard, idempotent by item id (an id that is queued,
-- leased, dead-lettered or inside its completion tombstone's TTL is reported as existing).
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[3]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[4]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms (blocked partitions)
-- then per item i (3 keys, from KEYS[5]):
--   seen         q:{<ns>s<N>}:seen:<itemId>      STRING completion tombstone
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        item count n
-- then per item i (9 args, from ARGV[3]):
--   itemId, pid, accountId,
--   runAt        absolute due time, epoch ms (0 = use delay)
--   delay        ms after now
--   attempt      attempt number (count)
--   runStart     when the item's run started, epoch ms (0 = none): an item due now is scored from it
--   shift        ms to score the item earlier by when it is due now (priority; may be negative)
--   body         the producer's fields as JSON (run, acct, env, fn, pid, kind, pl), stored as is
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { status_1..status_n } }
--   status 1 = enqueued, 0 = exists; due* = the shard's earliest due ms before/after (-1 = empty).
-- Errors: none (arguments are built by the typed wrapper).

-- @include "common"

local itemsKey, shardKey, forcedKey = KEYS[1], KEYS[3], KEYS[4]
local now = nowMs(ARGV[1])
local n = tonumber(ARGV[2])

local before = shardDue(shardKey)
seqLoad(KEYS[2], now)
local statuses = {}
for i = 1, n do
  local k, a = 4 + (i - 1) * 3, 2 + (i - 1) * 9
  statuses[i] = addItem(itemsKey, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], shardKey, forcedKey, now,
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9])
end
seqSave()
return { now, before, shardDue(shardKey), statuses }
