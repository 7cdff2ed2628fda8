-- Shared helpers, pasted into a script where it says `-- @include "common"` (not a script itself).
-- Scores are `dueMs * 1024 + n`, n counting up within one Redis millisecond, so equal due times
-- stay FIFO (n may pass 1023 in a very busy millisecond; the next millisecond counts on after it).
-- Scores have 16 digits: they are printed with %d, never through cjson (14 digits).

local SCALE = 1024

-- Item kinds (proto ItemKind) the scripts tell apart.
local KIND_START, KIND_STEP, KIND_DEAD_LETTER = 1, 2, 6

-- Now in epoch ms: Redis TIME, unless a positive override is given (tests only).
local function nowMs(override)
  local o = tonumber(override)
  if o and o > 0 then return o end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Sequence state for new scores: one GET per call, one SET at the end (seqSave).
local seqKey, seqMs, seqN = nil, 0, 0

local function seqLoad(key, now)
  seqKey = key
  local raw = redis.call('GET', key)
  local ms, n = 0, 0
  if raw then
    local a, b = string.match(raw, '^(%d+):(%d+)$')
    ms, n = tonumber(a) or 0, tonumber(b) or 0
  end
  if now > ms then
    -- A call that added more than SCALE items in one millisecond left scores past this
    -- millisecond's start: continue after them, or new items would overtake them.
    seqMs, seqN = now, math.max(0, (ms - now) * SCALE + n)
  else
    -- Same millisecond, or Redis time stepped back: keep counting so order still holds.
    seqMs, seqN = ms, n
  end
end

local function seqSave()
  if seqKey then redis.call('SET', seqKey, string.format('%d:%d', seqMs, seqN)) end
end

local function newScore(dueMs)
  seqN = seqN + 1
  return dueMs * SCALE + seqN
end

-- Earliest due ms of the shard (from its account pointer set), or -1 when it holds nothing.
local function shardDue(shardKey)
  local head = redis.call('ZRANGE', shardKey, 0, 0, 'WITHSCORES')
  if head[2] then return math.floor(tonumber(head[2]) / SCALE) end
  return -1
end

-- A blocked partition (throttled, at a concurrency limit, or paused) is "forced": its pointer sits
-- at the moment it may be looked at again, `forceAt`, kept in the shard's forced hash under
-- "<acct>\n<pid>". Pointers are never later than max(head, forceAt); a wake-up may set one earlier
-- (claim then finds nothing due and sets it right).
local function forcedField(acct, pid)
  return acct .. '\n' .. pid
end

-- The pointer score a partition whose head is `score` may have: pushed to forceAt while forced.
local function forcedScore(forcedKey, acct, pid, score, now)
  local f = tonumber(redis.call('HGET', forcedKey, forcedField(acct, pid)))
  if f and f > now then return math.max(score, f * SCALE) end
  return score
end

-- Min rule: a parent pointer never sits later than a child's earliest item (or its forceAt).
local function lowerPointers(acctKey, shardKey, forcedKey, pid, acct, score, now)
  score = forcedScore(forcedKey, acct, pid, score, now)
  redis.call('ZADD', acctKey, 'LT', score, pid)
  redis.call('ZADD', shardKey, 'LT', score, acct)
end

-- Sets a partition's pointer to its earliest item, pushed to `forceAt` (ms) when that is later
-- than now (recorded) or dropping any older forceAt; drops the pointer when the partition is empty.
local function resetPartitionPointer(partKey, acctKey, forcedKey, acct, pid, forceAt, now)
  local head = redis.call('ZRANGE', partKey, 0, 0, 'WITHSCORES')
  local field = forcedField(acct, pid)
  if not head[2] then
    redis.call('ZREM', acctKey, pid)
    redis.call('HDEL', forcedKey, field)
    return
  end
  local score = tonumber(head[2])
  if forceAt and forceAt > now then
    redis.call('HSET', forcedKey, field, string.format('%d', forceAt))
    score = math.max(score, forceAt * SCALE)
  else
    redis.call('HDEL', forcedKey, field)
  end
  redis.call('ZADD', acctKey, string.format('%d', score), pid)
end

-- Keeps a partition's forceAt (if any) and re-derives its pointer from its head (remove).
local function refreshPartitionPointer(partKey, acctKey, forcedKey, acct, pid, now)
  local f = tonumber(redis.call('HGET', forcedKey, forcedField(acct, pid)))
  resetPartitionPointer(partKey, acctKey, forcedKey, acct, pid, f, now)
end

-- A concurrency slot was freed: partitions blocked on that limit may be looked at now (bounded;
-- the rest keep their forceAt, the earliest lease expiry of the limit, and are woken later).
local function wakeBlocked(blockedKey, acctKey, shardKey, forcedKey, acct, now)
  local pids = redis.call('ZRANGE', blockedKey, 0, 99)
  if #pids == 0 then return end
  local nowScore = now * SCALE
  for _, pid in ipairs(pids) do
    redis.call('HDEL', forcedKey, forcedField(acct, pid))
    redis.call('ZADD', acctKey, 'XX', 'LT', nowScore, pid)
  end
  redis.call('ZREM', blockedKey, unpack(pids))
  redis.call('ZADD', shardKey, 'XX', 'LT', nowScore, acct)
end

-- Sets an account's pointer to its earliest partition, or drops it when it has none.
local function resetAccountPointer(acctKey, shardKey, acct)
  local head = redis.call('ZRANGE', acctKey, 0, 0, 'WITHSCORES')
  if head[2] then
    redis.call('ZADD', shardKey, head[2], acct)
  else
    redis.call('ZREM', shardKey, acct)
  end
end

-- An item record is "<st>:<gen>:<del>:<exp>:<att>:<due>:<sc>:<rel>|<body>": a small header the
-- scripts update (st = r ready, l leased, d dead-lettered; gen generation; del deliveries that
-- counted; exp lease expiry ms; att attempt; due due ms; sc score; rel releases since the attempt
-- began) and the producer's JSON body, which the hot path never parses. A record written before
-- `rel` existed (7 header fields) reads as rel 0. Returns nil for a malformed record.
local function parseItem(raw)
  local st, gen, del, exp, att, due, sc, rest =
    string.match(raw, '^(%a):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)()')
  if not st then return nil end
  local rel, at = string.match(raw, '^:(%d+)|()', rest)
  if not rel then
    rel, at = '0', string.match(raw, '^|()', rest)
    if not at then return nil end
  end
  return {
    st = st, gen = tonumber(gen), del = tonumber(del), exp = tonumber(exp), att = tonumber(att),
    due = tonumber(due), sc = tonumber(sc), rel = tonumber(rel), body = string.sub(raw, at),
  }
end

local function formatItem(it)
  return string.format('%s:%d:%d:%d:%d:%d:%d:%d|', it.st, it.gen, it.del, it.exp, it.att, it.due, it.sc,
    it.rel or 0) .. it.body
end

-- The account and partition named in an item's body (rare paths only: retry, reclaim, expired).
local function bodyPlace(it)
  local b = cjson.decode(it.body)
  return b.acct, b.pid
end

-- Adds a new item unless its id is known (queued, leased, dead-lettered or recently completed).
-- An item due now is scored from its run's start (`runStart`, when earlier), so a started run's
-- next step goes ahead of newer runs' first calls, and `shift` ms earlier (priority; later when
-- negative). Returns 1 added, 0 exists.
local function addItem(itemsKey, seenKey, partKey, acctKey, shardKey, forcedKey, now, id, pid, acct, runAt, delay, attempt, runStart, shift, body)
  if redis.call('HEXISTS', itemsKey, id) == 1 or redis.call('EXISTS', seenKey) == 1 then return 0 end
  local due = tonumber(runAt)
  local d = tonumber(delay) or 0
  if not due or due <= 0 then due = now + d end
  local score
  if due <= now then
    local base = due
    local rs = tonumber(runStart) or 0
    if rs > 0 and rs < base then base = rs end
    score = newScore(base - (tonumber(shift) or 0))
  else
    score = newScore(due)
  end
  local it = { st = 'r', gen = 0, del = 0, exp = 0, att = tonumber(attempt), due = due, sc = score, body = body }
  redis.call('HSET', itemsKey, id, formatItem(it))
  redis.call('ZADD', partKey, score, id)
  lowerPointers(acctKey, shardKey, forcedKey, pid, acct, score, now)
  return 1
end

-- Creates item `id` already leased until `expiry` (generation 1, one delivery), never ready: a
-- hand-off to the holder that asked (complete.lua, enqueue.lua). Scored as addItem scores an item
-- due now, should the lease expire and the item go back. Returns its record, or nil when the id
-- is known.
local function leaseNewItem(itemsKey, leasedKey, seenKey, now, expiry, id, attempt, runStart, shift, body)
  if redis.call('HEXISTS', itemsKey, id) == 1 or redis.call('EXISTS', seenKey) == 1 then return nil end
  local base = now
  local rs = tonumber(runStart) or 0
  if rs > 0 and rs < base then base = rs end
  local it = { st = 'l', gen = 1, del = 1, exp = expiry, att = tonumber(attempt), due = now,
    sc = newScore(base - (tonumber(shift) or 0)), body = body }
  local rec = formatItem(it)
  redis.call('HSET', itemsKey, id, rec)
  redis.call('ZADD', leasedKey, expiry, id)
  return rec
end
