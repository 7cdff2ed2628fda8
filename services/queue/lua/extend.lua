-- extend: moves the expiry of live leases forward, batched. A lease is extended only when the
-- generation matches and it has not expired yet: an expired lease may already be counted as free.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        lease duration, ms (new expiry = now + this)
-- ARGV[3]        lease count n
-- then per lease i (2 args, from ARGV[4]): itemId, generation
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
for i = 1, n do
  local id, gen = ARGV[2 + (i - 1) * 2 + 2], tonumber(ARGV[2 + (i - 1) * 2 + 3])
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
    results[i] = expiry
  end
end
return { now, results }
