-- extend: moves the expiry of live leases forward, batched. A lease is extended only when the
-- generation matches and it has not expired yet: an expired lease may already be counted as free.
-- The lease's concurrency slots (members scored by expiry) move with it.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
-- then per lease i, one key per concurrency set of its partition:
--   set g        q:{<ns>s<N>}:c:<acct>:<set>     ZSET   leased itemId -> lease expiry ms
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        lease duration, ms (new expiry = now + this)
-- ARGV[3]        lease count n
-- then per lease i (3 args, from ARGV[4]): itemId, generation, set count s
--
-- Returns: { nowMs, { result_1..result_n } }, result = the new expiry ms (> 0) or
--   -1 STALE   (no such item, not leased, or another generation)
--   -2 EXPIRED (right generation, but the lease ran out; the holder must drop its work)

-- @include "common"

local itemsKey, leasedKey = KEYS[1], KEYS[2]
local now = nowMs(ARGV[1])
local expiry = now + tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local results = {}
local k, a = 2, 3
for i = 1, n do
  local id, gen, sets = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local setBase = k
  k, a = k + sets, a + 3
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  if not item or item.st ~= 'l' or item.gen ~= gen then
    results[i] = -1
  elseif item.exp <= now then
    results[i] = -2
  else
    item.exp = expiry
    redis.call('HSET', itemsKey, id, formatItem(item))
    redis.call('ZADD', leasedKey, 'XX', expiry, id)
    for g = 1, sets do redis.call('ZADD', KEYS[setBase + g], 'XX', expiry, id) end
    results[i] = expiry
  end
end
return { now, results }
