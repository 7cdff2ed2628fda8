-- expired: read-only; lists leases that have run out (by Redis time), with each item's account
-- and partition so the owner can build the keys reclaim.lua needs.
--
-- KEYS[1]        q:{<ns>s<N>}:it                 HASH   itemId -> item record (common.lua)
-- KEYS[2]        q:{<ns>s<N>}:L                  ZSET   leased itemId -> lease expiry ms
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        max items (count)
--
-- Returns: { nowMs, nextExpiryMs, { itemId, accountId, pid, ... } }
--   nextExpiryMs = the earliest expiry after now (-1 = none); accountId and pid are "" for an
--   id with no item record (a leftover; reclaim removes it).
-- Errors: none.

-- @include "common"

local itemsKey, leasedKey = KEYS[1], KEYS[2]
local now = nowMs(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', leasedKey, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', itemsKey, id)
  local item = raw and parseItem(raw)
  local acct, pid = '', ''
  if item then acct, pid = bodyPlace(item) end
  out[#out + 1] = id
  out[#out + 1] = acct
  out[#out + 1] = pid
end
local nextHead = redis.call('ZRANGEBYSCORE', leasedKey, '(' .. string.format('%d', now), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local nextExpiry = -1
if nextHead[2] then nextExpiry = tonumber(nextHead[2]) end
return { now, nextExpiry, out }
