-- claim: the owner leases up to maxItems due items of one account, taking from the given
-- partitions in order (first pass up to each partition's cap, second pass fills what is left),
-- fenced by the shard's owner token. Each leased item gets generation += 1 and deliveries += 1;
-- an item past maxDeliveries is dead-lettered instead of leased. A dead-lettered item of a run
-- (start or step kind) leaves a notice in its place: a new ready item "<id>~dead" of kind 6
-- (DEAD_LETTER) with the same body, which an executor takes to fail the run, so a run never
-- stays Running on an item nobody will hand out again.
--
-- Flow control, with limits passed in ARGV (never read from Redis):
-- - a partition of a paused function is pushed back (forced) and remembered for resume;
-- - concurrency: a leased item joins each of its partition's concurrency sets (scored by lease
--   expiry, so a lost lease frees its slot when it expires); a partition whose limit is full is
--   forced until the limit's earliest expiry and listed as blocked on it (complete and retry wake
--   it when they free a slot);
-- - throttle (start items on their first delivery): GCRA over the throttle key; a partition over
--   it is forced until the exact moment the next start may go.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:owner              STRING owner token
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:dlq                ZSET   dead-lettered itemId -> ms
-- KEYS[6]        q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
-- KEYS[7]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- KEYS[8]        q:{<ns>s<N>}:fp                 SET    paused functions "<acct>\n<env>\n<fn>"
-- then per partition i: 2 keys, 2 per concurrency set, 1 throttle key:
--   partition    q:{<ns>s<N>}:p:<acct>:<pid>     ZSET   itemId -> score
--   paused parts q:{<ns>s<N>}:pp:<acct>:<env>:<fn> SET  pids pushed back while paused
--   set g:       q:{<ns>s<N>}:c:<acct>:<set> (ZSET itemId -> expiry), q:{<ns>s<N>}:bk:<acct>:<set> (ZSET pid -> ms)
--   throttle     q:{<ns>s<N>}:t:<acct>:<env>:<fn>:<key> STRING GCRA TAT ms (q:{<ns>s<N>}:- if none)
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        owner token
-- ARGV[3]        lease duration, ms
-- ARGV[4]        max deliveries (count)
-- ARGV[5]        max items to lease (count)
-- ARGV[6]        accountId
-- ARGV[7]        how long a paused partition is pushed back, ms (resume wakes it sooner)
-- then per partition i: pid, cap (items in the first pass), function ("<acct>\n<env>\n<fn>"),
--   set count s, s limits (0 = none), throttle limit (0 = none), throttle period ms, burst
--
-- Returns: { nowMs, shardDueMs (-1 = empty), { itemId, item record, ... (leased) }, { dead-lettered itemId... } }
-- Errors: NOT_OWNER (the token is not the shard's current owner; nothing changed).

-- @include "common"

local itemsKey, leasedKey, ownerKey, shardKey, dlqKey, acctKey, forcedKey, pausedKey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = nowMs(ARGV[1])
if redis.call('GET', ownerKey) ~= ARGV[2] then return redis.error_reply('NOT_OWNER') end
local leaseMs, maxDel, remaining, acct = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local pausedMs = tonumber(ARGV[7])
local nowScore = now * SCALE + SCALE - 1
local expiry = now + leaseMs

-- Partitions, read from the variable-length KEYS/ARGV layout.
local parts = {}
do
  local k, a = 8, 7
  while a < #ARGV do
    local p = { key = KEYS[k + 1], pausedKey = KEYS[k + 2], pid = ARGV[a + 1], cap = tonumber(ARGV[a + 2]),
      fn = ARGV[a + 3], sets = {} }
    local s = tonumber(ARGV[a + 4])
    for g = 1, s do
      p.sets[g] = { key = KEYS[k + 2 + (g - 1) * 2 + 1], blocked = KEYS[k + 2 + (g - 1) * 2 + 2],
        limit = tonumber(ARGV[a + 4 + g]) }
    end
    k, a = k + 2 + s * 2, a + 4 + s
    p.tkey = KEYS[k + 1]
    p.tlimit, p.tperiod, p.tburst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    k, a = k + 1, a + 3
    parts[#parts + 1] = p
  end
end

local leased, dead, notices = {}, {}, {}
local hsetArgs, leaseArgs, dlqArgs = {}, {}, {}
-- Per concurrency set: slots in use (expired members trimmed on first look) and members to add.
local used, joins = {}, {}
-- Per throttle key: the GCRA theoretical arrival time as this call moves it.
local tats = {}

local function inUse(setKey)
  local u = used[setKey]
  if u == nil then
    redis.call('ZREMRANGEBYSCORE', setKey, '-inf', now)
    u = redis.call('ZCARD', setKey)
    used[setKey] = u
    joins[setKey] = {}
  end
  return u
end

-- Free slots under every limit of the partition (math.huge without limits), and the fullest set.
local function freeSlots(p)
  local free, tightest = math.huge, nil
  for _, s in ipairs(p.sets) do
    if s.limit > 0 then
      local f = s.limit - inUse(s.key)
      if f < free then free, tightest = f, s end
    end
  end
  return free, tightest
end

-- GCRA: `limit` starts per `period`, `limit + burst` at once. 0 = admitted (the TAT moves on),
-- else the ms until the next start may go.
local function throttleWait(p)
  local emission = p.tperiod / p.tlimit
  local tolerance = emission * (p.tlimit + p.tburst - 1)
  local tat = tats[p.tkey]
  if tat == nil then tat = tonumber(redis.call('GET', p.tkey)) or 0 end
  local base = math.max(tat, now)
  if base - now > tolerance then
    tats[p.tkey] = tat
    return math.ceil(base - now - tolerance)
  end
  tats[p.tkey] = base + emission
  return 0
end

-- Leases up to n due items from the head of a partition; returns how many it leased and whether
-- it may have more due items.
local function take(p, n)
  if n <= 0 or p.done then return 0 end
  local ids = redis.call('ZRANGEBYSCORE', p.key, '-inf', nowScore, 'LIMIT', 0, n)
  if #ids < n then p.done = true end
  if #ids == 0 then return 0 end
  local raws = redis.call('HMGET', itemsKey, unpack(ids))
  local got, consumed = 0, 0
  for i, id in ipairs(ids) do
    -- A member without a ready record is a leftover: removing it is the repair.
    local item = raws[i] and parseItem(raws[i])
    if item and item.st == 'r' then
      if p.tlimit > 0 and item.att == 0 and item.del == 0 and item.rel == 0 then
        local wait = throttleWait(p)
        if wait > 0 then
          p.forceAt, p.done = now + wait, true
          break
        end
      end
      item.gen = item.gen + 1
      item.del = item.del + 1
      if item.del > maxDel then
        item.st = 'd'
        dead[#dead + 1] = id
        notices[#notices + 1] = { p = p, id = id, item = item }
        dlqArgs[#dlqArgs + 1] = now
        dlqArgs[#dlqArgs + 1] = id
      else
        item.st = 'l'
        item.exp = expiry
        got = got + 1
        leaseArgs[#leaseArgs + 1] = expiry
        leaseArgs[#leaseArgs + 1] = id
        for _, s in ipairs(p.sets) do
          if s.limit > 0 then used[s.key] = used[s.key] + 1 end
          local j = joins[s.key]
          if not j then
            j = {}
            joins[s.key] = j
          end
          j[#j + 1] = expiry
          j[#j + 1] = id
        end
      end
      local rec = formatItem(item)
      if item.st == 'l' then
        leased[#leased + 1] = id
        leased[#leased + 1] = rec
      end
      hsetArgs[#hsetArgs + 1] = id
      hsetArgs[#hsetArgs + 1] = rec
    end
    consumed = i
  end
  -- The ids are the partition's first ranks (read from -inf): one call removes those consumed.
  if consumed > 0 then redis.call('ZREMRANGEBYRANK', p.key, 0, consumed - 1) end
  return got
end

-- Takes up to `want` from p within its concurrency limits; a limit that runs out while due items
-- remain blocks the partition on it.
local function serve(p, want)
  local free, tightest = freeSlots(p)
  local n = math.min(want, free)
  local got = take(p, n)
  if not p.done and tightest and free - got <= 0 then
    p.blockedOn, p.done = tightest, true
  end
  return got
end

for _, p in ipairs(parts) do
  if redis.call('SISMEMBER', pausedKey, p.fn) == 1 then
    p.forceAt, p.done = now + pausedMs, true
    redis.call('SADD', p.pausedKey, p.pid)
  end
end
for _, p in ipairs(parts) do
  local want = math.min(p.cap, remaining)
  remaining = remaining - serve(p, want)
end
for _, p in ipairs(parts) do
  if remaining <= 0 then break end
  remaining = remaining - serve(p, remaining)
end

if #hsetArgs > 0 then redis.call('HSET', itemsKey, unpack(hsetArgs)) end
if #leaseArgs > 0 then redis.call('ZADD', leasedKey, unpack(leaseArgs)) end
if #dlqArgs > 0 then redis.call('ZADD', dlqKey, unpack(dlqArgs)) end
for setKey, j in pairs(joins) do
  if #j > 0 then redis.call('ZADD', setKey, unpack(j)) end
end
for tkey, tat in pairs(tats) do
  if tat > now then
    redis.call('SET', tkey, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
  end
end
-- Added after the passes (take removes a partition's first ranks by count), at the dead item's
-- score: the notice goes where the item stood.
for _, d in ipairs(notices) do
  local body = cjson.decode(d.item.body)
  local noticeId = d.id .. '~dead'
  if (body.kind == KIND_START or body.kind == KIND_STEP) and redis.call('HEXISTS', itemsKey, noticeId) == 0 then
    body.kind = KIND_DEAD_LETTER
    local it = { st = 'r', gen = 0, del = 0, exp = 0, att = d.item.att, due = now, sc = d.item.sc, rel = 0,
      body = cjson.encode(body) }
    redis.call('HSET', itemsKey, noticeId, formatItem(it))
    redis.call('ZADD', d.p.key, string.format('%d', d.item.sc), noticeId)
  end
end
for _, p in ipairs(parts) do
  if p.blockedOn then
    -- Looked at again when a slot frees (wake-up) or, failing that, when the earliest lease of
    -- the limit expires.
    redis.call('ZADD', p.blockedOn.blocked, now, p.pid)
    local first = redis.call('ZRANGE', p.blockedOn.key, 0, 0, 'WITHSCORES')
    p.forceAt = tonumber(first[2]) or expiry
  end
  resetPartitionPointer(p.key, acctKey, forcedKey, acct, p.pid, p.forceAt, now)
end
resetAccountPointer(acctKey, shardKey, acct)
return { now, shardDue(shardKey), leased, dead }
