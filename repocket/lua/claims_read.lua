#!lua flags=no-writes
-- claims_read: the checker's read of one claim hash (Redis Cluster, lua/claim.lua) or of
-- some fields of a shard's unique hash, with the server's time (claims younger than the
-- grace period may belong to a save still writing: the checker leaves them alone).
-- Read-only: runs on replicas and over maxmemory.
--
-- KEYS[1]  a hash: a claim hash {repocket:<ns>:<Class>:uniq:<fields>:<bucket>}, or a
--          shard's unique hash {repocket:<ns>:<Class>:<shard>}:uniq:<fields>
-- ARGV[1]  (and on) the fields to read (HMGET); no ARGV: every field and value (HGETALL)
--
-- Reply: {server time in ms, flat field/value list (HGETALL) | values, false when absent}
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"} when KEYS[1] is
--         not a hash

-- @include lib/checks

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local reply
if #ARGV == 0 then
  reply = redis.pcall('HGETALL', KEYS[1])
else
  reply = redis.pcall('HMGET', KEYS[1], unpack(ARGV))
end
if is_error(reply) then return pcall_failure(KEYS[1], 'hash', reply) end
return {now, reply}
