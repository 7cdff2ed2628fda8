-- pause: marks a function paused in its account's shard. Claim then pushes the function's
-- partitions back instead of leasing from them; their items keep their places.
--
-- KEYS[1]        q:{<ns>s<N>}:fp                 SET    paused functions "<acct>\n<env>\n<fn>"
--
-- ARGV[1]        the function's member "<acct>\n<env>\n<fn>"
--
-- Returns: 1 paused now, 0 was paused already.

return redis.call('SADD', KEYS[1], ARGV[1])
