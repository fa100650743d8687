-- Full rows matching one indexed equality.
-- KEYS: the index set   ARGV: build key prefix, project key prefix
return rows(ARGV[1], ARGV[2], redis.call('SMEMBERS', KEYS[1]))
