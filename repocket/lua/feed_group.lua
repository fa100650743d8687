#!lua
-- feed_group: a consumer group of a model's change feed, created if it does not exist
-- (the stream too, empty: MKSTREAM), so that every worker may ask for it first.
--
-- KEYS[1]  the change feed                  repocket:<ns>:<Class>:changes
-- ARGV[1]  the group's name
-- ARGV[2]  where a new group starts: '0' every entry kept, '$' only entries to come
--
-- Reply: 1 when it created the group, 0 when it existed.
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks

local err = check_type(KEYS[1], 'stream')
if err then return err end
-- the only write: an error reply that is not BUSYGROUP (the group exists) passes through
local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if type(created) == 'table' and created.err then
  if string.sub(created.err, 1, 9) == 'BUSYGROUP' then return 0 end
  return redis.error_reply(created.err)
end
return 1
