#!lua flags=no-writes
-- scan: one page of SCAN over a model's keys, for the checker's keyspace pass
-- (which then sends the keys it found to audit_keys, in KEYS). Read-only: runs
-- on replicas and over maxmemory. Also says the server's eviction policy, which
-- check() reports when it is not noeviction.
--
-- KEYS[1]  none: SCAN names keys, it reads none (on a cluster: one shard's id set, only
--          to route the call to the shard's node; not read)
-- ARGV[1]  SCAN cursor ('0' to start)   ARGV[2]  MATCH pattern   ARGV[3]  COUNT
--
-- Reply: {next cursor ('0' at the end), {key, ...}, maxmemory-policy ('unknown' when
--         the user may not run INFO)}
-- Errors: none of its own

local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', tonumber(ARGV[3]))
local info = redis.pcall('INFO', 'memory')
local policy = type(info) == 'string' and string.match(info, 'maxmemory_policy:([%w%-]+)')
return {page[1], page[2], policy or 'unknown'}
