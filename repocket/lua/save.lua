#!lua
-- save: write one record, its ByteStreams and its bookkeeping, atomically.
-- Every check runs before the first write, so a failing call changes nothing.
--
-- KEYS[1]           the record's hash           repocket:<ns>:<Class>:<id>
-- KEYS[2]           the model's id set          repocket:<ns>:<Class>:ids
-- KEYS[3 .. 2+S]    one string per ByteStream   <hash key>:field:<name>
-- KEYS[3+S .. ]     hashes of Pointer targets that must exist
-- ARGV[1]  the record's id (member of the id set)
-- ARGV[2]  N, fields to HSET     ARGV[3]  D, fields to HDEL     ARGV[4]  S, ByteStreams
-- ARGV[5]  '1' for a partial save (changed fields only) of a record loaded from Redis
-- then N field/value pairs, D field names, and S op/data pairs where op is
--   ''  leave the stream alone,  'A'  APPEND data,  'S'  SET data,  'D'  DEL the stream
--
-- Reply: 'saved', or 'gone' (nothing written) when a partial save finds the
--        record deleted meanwhile: the caller then saves the whole record.
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}
--         REPOCKET {"code": "pointer_missing", "key"}

-- @include _checks

local n_set, n_del, n_streams = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local partial = ARGV[5] == '1'
local first_del = 6 + 2 * n_set
local first_stream = first_del + n_del

local err = check_type(KEYS[1], 'hash') or check_type(KEYS[2], 'set')
if err then return err end
for i = 3, 2 + n_streams do
  err = check_type(KEYS[i], 'string')
  if err then return err end
end
for i = 3 + n_streams, #KEYS do
  if redis.call('TYPE', KEYS[i])['ok'] ~= 'hash' then
    return fail('pointer_missing', {key = KEYS[i]})
  end
end
if partial and redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end

if n_set > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 6, first_del - 1)) end
if n_del > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, first_del, first_stream - 1)) end
redis.call('SADD', KEYS[2], ARGV[1])
for i = 1, n_streams do
  local op, data, key = ARGV[first_stream + 2 * i - 2], ARGV[first_stream + 2 * i - 1], KEYS[2 + i]
  if op == 'A' then redis.call('APPEND', key, data)
  elseif op == 'S' then redis.call('SET', key, data)
  elseif op == 'D' then redis.call('DEL', key)
  end
end
return 'saved'
