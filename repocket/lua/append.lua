#!lua
-- append: add bytes to the end of one ByteStream of an existing record.
--
-- KEYS[1]  the record's hash (must exist)     repocket:<ns>:<Class>:<id>
-- KEYS[2]  the ByteStream                     <hash key>:field:<name>
-- KEYS[3]  (Meta.changes) the change feed       repocket:<ns>:<Class>:changes
-- ARGV[1]  the bytes to append
-- ARGV[2]  (Meta.changes) the most entries the feed keeps, about
--
-- Reply: the stream's length after the append.
-- Errors: REPOCKET {"code": "record_missing", "key", "stream"}
--         REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks

if redis.call('EXISTS', KEYS[1]) == 0 then
  return fail('record_missing', {key = KEYS[1], stream = KEYS[2]})
end
local err = check_type(KEYS[1], 'hash') or check_type(KEYS[2], 'string')
  or (KEYS[3] and check_type(KEYS[3], 'stream')) or nil
if err then return err end
local length = redis.call('APPEND', KEYS[2], ARGV[1])
if KEYS[3] then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'op', 'update',
             'id', string.match(KEYS[1], '[^:]+$'), 'fields', string.match(KEYS[2], ':field:(.+)$'))
end
return length
