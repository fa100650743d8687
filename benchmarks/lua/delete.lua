-- Delete one build, its streams and its index entries; returns the number of keys deleted.
-- KEYS: hash, stdout, stderr, ids, number zset, unique hash   ARGV: id, status index prefix
local f = redis.call('HMGET', KEYS[1], 'status', 'ref')
if not f[1] then return 0 end
local n = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('SREM', ARGV[2] .. f[1], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], f[2])
return n
