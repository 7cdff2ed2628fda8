-- Replaces one app's function set in one environment, atomically: functions of the app missing
-- from the new set are removed, new or changed ones are written, other apps' functions are kept.
-- Nothing is written when a function id already belongs to another app of the environment.
--
-- KEYS[1]  r:{<envId>}:fns     hash: function id -> entry JSON {accountId, appId, fn}
-- KEYS[2]  r:{<envId>}:owners  hash: function id -> app id
-- KEYS[3]  r:{<envId>}:apps    hash: app id -> app JSON {accountId, url, sdk, framework}
-- KEYS[4]  r:{<envId>}:ver     string: a counter, incremented by every sync that changes anything
--                              (readers cache the environment's functions by it)
-- ARGV[1]  app id
-- ARGV[2]  app JSON (compared byte for byte with the stored one)
-- ARGV[3..] pairs: function id, entry JSON (compared byte for byte; the caller builds it
--           deterministically, so equal configs give equal bytes)
--
-- Returns: {1} when anything changed, {0} when the registry already held exactly this.
-- Errors: "CONFLICT <function id> <owner app id>" when a function id belongs to another app
--          (nothing written).

local fnsKey = KEYS[1]
local ownersKey = KEYS[2]
local appsKey = KEYS[3]
local appId = ARGV[1]
local appJson = ARGV[2]

local incoming = {}
for i = 3, #ARGV, 2 do
  local fnId = ARGV[i]
  local owner = redis.call('HGET', ownersKey, fnId)
  if owner and owner ~= appId then
    return redis.error_reply('CONFLICT ' .. fnId .. ' ' .. owner)
  end
  incoming[fnId] = ARGV[i + 1]
end

local modified = 0

-- Remove the app's functions that the new sync no longer has.
local owners = redis.call('HGETALL', ownersKey)
for i = 1, #owners, 2 do
  local fnId = owners[i]
  if owners[i + 1] == appId and incoming[fnId] == nil then
    redis.call('HDEL', fnsKey, fnId)
    redis.call('HDEL', ownersKey, fnId)
    modified = 1
  end
end

for fnId, entry in pairs(incoming) do
  if redis.call('HGET', fnsKey, fnId) ~= entry then
    redis.call('HSET', fnsKey, fnId, entry)
    redis.call('HSET', ownersKey, fnId, appId)
    modified = 1
  end
end

if redis.call('HGET', appsKey, appId) ~= appJson then
  redis.call('HSET', appsKey, appId, appJson)
  modified = 1
end

if modified == 1 then redis.call('INCR', KEYS[4]) end
return {modified}
