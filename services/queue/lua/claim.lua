-- claim: the owner leases up to maxItems due items of one account, taking from the given
-- partitions in order (first pass up to each partition's cap, second pass fills what is left),
-- fenced by the shard's owner token. Each leased item gets generation += 1 and deliveries += 1;
-- an item past maxDeliveries is dead-lettered instead of leased.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- KEYS[3]        q:{<ns>s<N>}:owner              STRING owner token
-- KEYS[4]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:dlq                ZSET   dead-lettered itemId -> ms
-- KEYS[6]        q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
-- KEYS[6+i]      q:{<ns>s<N>}:p:<acct>:<pid_i>   ZSET   itemId -> score (i = 1..P)
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        owner token
-- ARGV[3]        lease duration, ms
-- ARGV[4]        max deliveries (count)
-- ARGV[5]        max items to lease (count)
-- ARGV[6]        accountId
-- then per partition i (2 args, from ARGV[7]): pid_i, cap_i (items in the first pass)
--
-- Returns: { nowMs, shardDueMs (-1 = empty), { itemId, item record, ... (leased) }, { dead-lettered itemId... } }
-- Errors: -1 NOT_OWNER (the token is not the shard's current owner; nothing changed).

-- @include "common"

local itemsKey, leasedKey, ownerKey, shardKey, dlqKey, acctKey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = nowMs(ARGV[1])
if redis.call('GET', ownerKey) ~= ARGV[2] then return -1 end
local leaseMs, maxDel, remaining, acct = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local nParts = #KEYS - 6
local nowScore = now * SCALE + SCALE - 1
local expiry = now + leaseMs

local leased, dead = {}, {}
local hsetArgs, leaseArgs, dlqArgs = {}, {}, {}

-- Leases up to n due items from the head of one partition; returns how many it leased and how
-- many it took off the partition (leased, dead-lettered or leftovers).
local function take(partKey, n)
  if n <= 0 then return 0, 0 end
  local ids = redis.call('ZRANGEBYSCORE', partKey, '-inf', nowScore, 'LIMIT', 0, n)
  if #ids == 0 then return 0, 0 end
  -- The ids are the partition's first #ids ranks (read from -inf), so one call removes them.
  redis.call('ZREMRANGEBYRANK', partKey, 0, #ids - 1)
  local raws = redis.call('HMGET', itemsKey, unpack(ids))
  local got = 0
  for i, id in ipairs(ids) do
    -- A member without a ready record is a leftover: removing it is the repair.
    local item = raws[i] and parseItem(raws[i])
    if item and item.st == 'r' then
      item.gen = item.gen + 1
      item.del = item.del + 1
      if item.del > maxDel then
        item.st = 'd'
        dead[#dead + 1] = id
        dlqArgs[#dlqArgs + 1] = now
        dlqArgs[#dlqArgs + 1] = id
      else
        item.st = 'l'
        item.exp = expiry
        got = got + 1
        leaseArgs[#leaseArgs + 1] = expiry
        leaseArgs[#leaseArgs + 1] = id
      end
      local rec = formatItem(item)
      if item.st == 'l' then
        leased[#leased + 1] = id
        leased[#leased + 1] = rec
      end
      hsetArgs[#hsetArgs + 1] = id
      hsetArgs[#hsetArgs + 1] = rec
    end
  end
  return got, #ids
end

local full = {}
for i = 1, nParts do
  local cap = math.min(tonumber(ARGV[7 + (i - 1) * 2 + 1]), remaining)
  local got, removed = take(KEYS[6 + i], cap)
  remaining = remaining - got
  -- Only a partition that gave all it was asked for may have more due items.
  full[i] = cap > 0 and removed >= cap
end
for i = 1, nParts do
  if remaining <= 0 then break end
  if full[i] then remaining = remaining - take(KEYS[6 + i], remaining) end
end

if #hsetArgs > 0 then redis.call('HSET', itemsKey, unpack(hsetArgs)) end
if #leaseArgs > 0 then redis.call('ZADD', leasedKey, unpack(leaseArgs)) end
if #dlqArgs > 0 then redis.call('ZADD', dlqKey, unpack(dlqArgs)) end
for i = 1, nParts do
  resetPartitionPointer(KEYS[6 + i], acctKey, ARGV[7 + (i - 1) * 2])
end
resetAccountPointer(acctKey, shardKey, acct)
return { now, shardDue(shardKey), leased, dead }
