-- enqueue: adds a batch of items to one shard, idempotent by item id (an id that is queued,
-- leased, dead-lettered or inside its completion tombstone's TTL is reported as existing).
--
-- Start hand-off: the caller may name items to lease at once to the holder that asked (a new
-- run's start item, QueueService.Work's Starts). Such an item is created leased (generation 1,
-- one delivery), never ready, when it is due now (no run-at, no delay), its function is not
-- paused and nothing of the shard is due (so it overtakes nothing); otherwise it is enqueued as
-- usual. The caller names only items whose partition has no flow control (no concurrency set to
-- count against, not throttled) and only as many as the holder has free slots.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:seq                STRING "<ms>:<n>" score sequence
-- KEYS[3]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[4]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms (blocked partitions)
-- KEYS[5]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[6]        q:{<ns>s<N>}:fp                 SET    paused functions "<acct>\n<env>\n<fn>"
-- then per item i (3 keys, from KEYS[7]):
--   seen         q:{<ns>s<N>}:seen:<itemId>      STRING completion tombstone
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score
--   account      q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        item count n
-- ARGV[3]        lease duration of handed-off items, ms
-- ARGV[4]        hand-off count h, then h pairs: item index (1..n), its function "<acct>\n<env>\n<fn>"
-- then per item i (9 args):
--   itemId, pid, accountId,
--   runAt        absolute due time, epoch ms (0 = use delay)
--   delay        ms after now
--   attempt      attempt number (count)
--   runStart     when the item's run started, epoch ms (0 = none): an item due now is scored from it
--   shift        ms to score the item earlier by when it is due now (priority; may be negative)
--   body         the producer's fields as JSON (run, acct, env, fn, pid, kind, pl), stored as is
--
-- Returns: { nowMs, dueBeforeMs, dueAfterMs, { status_1..status_n }, { i, itemId, item record,
-- ... (handed off) } }
--   status 1 = enqueued, 0 = exists, 2 = handed off; due* = the shard's earliest due ms
--   before/after (-1 = empty).
-- Errors: none (arguments are built by the typed wrapper).

-- @include "common"

local itemsKey, shardKey, forcedKey, leasedKey, pausedKey = KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = nowMs(ARGV[1])
local n = tonumber(ARGV[2])
local expiry = now + tonumber(ARGV[3])
local h = tonumber(ARGV[4])
local asked = {}
for j = 1, h do asked[tonumber(ARGV[3 + j * 2])] = ARGV[4 + j * 2] end
local first = 4 + h * 2

local before = shardDue(shardKey)
seqLoad(KEYS[2], now)
local statuses, handed = {}, {}
for i = 1, n do
  local k, a = 6 + (i - 1) * 3, first + (i - 1) * 9
  local rec
  local member = asked[i]
  if member and tonumber(ARGV[a + 4]) <= 0 and tonumber(ARGV[a + 5]) <= 0 then
    local due = shardDue(shardKey)
    if (due < 0 or due > now) and redis.call('SISMEMBER', pausedKey, member) == 0 then
      rec = leaseNewItem(itemsKey, leasedKey, KEYS[k + 1], now, expiry, ARGV[a + 1], ARGV[a + 6], ARGV[a + 7],
        ARGV[a + 8], ARGV[a + 9])
    end
  end
  if rec then
    statuses[i] = 2
    handed[#handed + 1] = i
    handed[#handed + 1] = ARGV[a + 1]
    handed[#handed + 1] = rec
  else
    statuses[i] = addItem(itemsKey, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], shardKey, forcedKey, now,
      ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9])
  end
end
seqSave()
return { now, before, shardDue(shardKey), statuses, handed }
