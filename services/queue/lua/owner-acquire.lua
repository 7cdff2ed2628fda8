-- owner-acquire: takes a shard's owner lease if it is free, or renews it if this token holds it.
-- The lease lives on Redis's TTL clock, so no instance clock decides who owns a shard.
--
-- KEYS[1]        q:{<ns>s<N>}:owner              STRING owner token, PX
--
-- ARGV[1]        owner token
-- ARGV[2]        lease duration, ms
--
-- Returns: 1 ACQUIRED, 2 RENEWED
-- Errors: -1 HELD (another token holds the lease; nothing changed).

local ownerKey, token, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local current = redis.call('GET', ownerKey)
if current == token then
  redis.call('PEXPIRE', ownerKey, ttl)
  return 2
end
if current then return -1 end
redis.call('SET', ownerKey, token, 'PX', ttl)
return 1
