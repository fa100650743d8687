#!lua
-- append: add bytes to the end of one ByteStream of an existing record.
--
-- KEYS[1]  the record's hash (must exist)     repocket:<ns>:<Class>:<id>
-- KEYS[2]  the ByteStream                     <hash key>:field:<name>
-- ARGV[1]  the bytes to append
--
-- Reply: the stream's length after the append.
-- Errors: REPOCKET {"code": "record_missing", "key", "stream"}
--         REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks

if redis.call('EXISTS', KEYS[1]) == 0 then
  return fail('record_missing', {key = KEYS[1], stream = KEYS[2]})
end
local err = check_type(KEYS[1], 'hash') or check_type(KEYS[2], 'string')
if err then return err end
return redis.call('APPEND', KEYS[2], ARGV[1])
