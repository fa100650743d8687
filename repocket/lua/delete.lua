#!lua
-- delete: remove one record, its ByteStreams and its id-set entry, atomically.
--
-- KEYS[1]        the record's hash              repocket:<ns>:<Class>:<id>
-- KEYS[2]        the model's id set             repocket:<ns>:<Class>:ids
-- KEYS[3 .. ]    one string per ByteStream      <hash key>:field:<name>
-- ARGV[1]        the record's id
--
-- Reply: the number of keys deleted (hash + existing streams).
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks

local err = check_type(KEYS[1], 'hash') or check_type(KEYS[2], 'set')
if err then return err end
for i = 3, #KEYS do
  err = check_type(KEYS[i], 'string')
  if err then return err end
end

local deleted = redis.call('DEL', KEYS[1])
for i = 3, #KEYS do deleted = deleted + redis.call('DEL', KEYS[i]) end
redis.call('SREM', KEYS[2], ARGV[1])
return deleted
