-- Save one build: unique check, pointer check, hash, two streams, id set and indexes.
-- KEYS: hash, stdout, stderr, ids, status index, number zset, unique hash, project hash
-- ARGV: id, ref, number, stdout, stderr, field1, value1, field2, value2, ...
local id, ref = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[8]) == 0 then
  return redis.error_reply('ERR pointer target missing')
end
if redis.call('HSETNX', KEYS[7], ref, id) == 0 then
  return redis.error_reply('ERR unique ref taken')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5]) end
redis.call('SADD', KEYS[4], id)
redis.call('SADD', KEYS[5], id)
redis.call('ZADD', KEYS[6], ARGV[3], id)
return 1
