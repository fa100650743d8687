-- get_or_create of one build by its unique ref: the build holding the claim, or else the
-- build saved as save.lua does (pointer check, hash, streams, id set and indexes).
-- KEYS: unique hash, project hash, ids, status index, number zset,
--       the new build's hash, stdout, stderr
-- ARGV: new id, ref, number, stdout, stderr, build key prefix, field1, value1, ...
-- Reply: {'found', id, HGETALL flat list, stdout, stderr} (nothing written; the found
--        build's keys come from the prefix and the stored id, as repocket's do)
--        or {'created', id}.
-- Errors: ERR pointer target missing (nothing written).
local id, ref = ARGV[1], ARGV[2]
local owner = redis.call('HGET', KEYS[1], ref)
if owner then
  local key = ARGV[6] .. owner
  return {'found', owner, redis.call('HGETALL', key), redis.call('GET', key .. ':stdout'),
          redis.call('GET', key .. ':stderr')}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('ERR pointer target missing')
end
redis.call('HSET', KEYS[1], ref, id)
redis.call('HSET', KEYS[6], unpack(ARGV, 7))
if ARGV[4] ~= '' then redis.call('SET', KEYS[7], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[8], ARGV[5]) end
redis.call('SADD', KEYS[3], id)
redis.call('SADD', KEYS[4], id)
redis.call('ZADD', KEYS[5], ARGV[3], id)
return {'created', id}
