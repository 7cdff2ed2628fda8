-- resume: unmarks a paused function and brings back the partitions claim pushed back while it
-- was paused, so their items are handed out at once, in their old order.
--
-- KEYS[1]        q:{<ns>s<N>}:fp                 SET    paused functions "<acct>\n<env>\n<fn>"
-- KEYS[2]        q:{<ns>s<N>}:pp:<acct>:<env>:<fn> SET  pids pushed back while paused
-- KEYS[3]        q:{<ns>s<N>}:pm                 HASH   "<acct>\n<pid>" -> forceAt ms
-- KEYS[4]        q:{<ns>s<N>}:a:<acct>           ZSET   pid -> earliest score
-- KEYS[5]        q:{<ns>s<N>}:A                  ZSET   account -> earliest score
--
-- ARGV[1]        now override, epoch ms (0 = Redis TIME; tests only)
-- ARGV[2]        the function's member "<acct>\n<env>\n<fn>"
-- ARGV[3]        accountId
--
-- Returns: { nowMs, changed (1 resumed now, 0 was not paused), partitions woken }
-- At most 1,000 partitions are woken per call; any others are looked at again within the
-- paused push-back (claim.lua), as a woken partition would be.

-- @include "common"

local pausedKey, partsKey, forcedKey, acctKey, shardKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = nowMs(ARGV[1])
local acct = ARGV[3]
local changed = redis.call('SREM', pausedKey, ARGV[2])
local pids = redis.call('SPOP', partsKey, 1000)
local nowScore = now * SCALE
for _, pid in ipairs(pids) do
  redis.call('HDEL', forcedKey, forcedField(acct, pid))
  redis.call('ZADD', acctKey, 'XX', 'LT', nowScore, pid)
end
if #pids > 0 then redis.call('ZADD', shardKey, 'XX', 'LT', nowScore, acct) end
return { now, changed, #pids }
