-- owner-release: gives a shard's owner lease up, only if this token holds it.
--
-- KEYS[1]        q:{<ns>s<N>}:owner              STRING owner token, PX
--
-- ARGV[1]        owner token
--
-- Returns: 1 RELEASED
-- Errors: -1 NOT_HELD (the lease is free or held by another token; nothing changed).

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
return 1
