-- Full rows with lo <= number < hi, highest first, the first `limit`.
-- KEYS: the number zset   ARGV: build key prefix, project key prefix, lo, hi, limit
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[4], ARGV[3], 'LIMIT', 0, ARGV[5])
return rows(ARGV[1], ARGV[2], ids)
