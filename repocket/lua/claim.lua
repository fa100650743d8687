#!lua
-- claim: one unique value's claim on Redis Cluster, where it lives in the slot of the
-- value (a claim hash of its own hash tag), not of the record: a save claims its new
-- values here before it writes the record and releases its old ones after (README
-- "Redis Cluster"). The record's shard keeps its own unique hash as on one server.
--
-- KEYS[1]  the claim hash      {repocket:<ns>:<Class>:uniq:<fields>:<bucket>}
-- ARGV[1]  'claim', 'release' or 'drop' (check(repair=True): an orphan claim, by field)
-- ARGV[2]  the record id (drop: the stored claim, '<id>@<ms>', removed only if unchanged)
-- ARGV[3]  claim: the holder the caller proved does not hold the value (its record is
--          gone or holds another value), whose claim may be taken over once it is older
--          than ARGV[4] ms (a younger one may belong to a save still writing); '' for none
-- ARGV[4]  the grace period, ms
-- ARGV[5]  msgpack list of the constraint's field families (lib/values)
-- ARGV[6..] the constraint's values, canonical, in its field order (drop: the claim's field)
-- A claim is stored as '<id>@<ms since the epoch, server time>'.
--
-- Reply: claim: {'took'} (claimed now), {'had'} (this record's already) or
--        {'held', owner, age in ms} (another record's claim: nothing written);
--        release: 1 (released) or 0 (the claim was not this record's: untouched);
--        drop: 1 (dropped) or 0 (changed since it was read, or younger than the grace)
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"} when KEYS[1] is
--         not a hash (nothing written)

-- @include lib/checks
-- @include lib/values
-- @include lib/index

local mode, id, stale, grace = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local field = ARGV[6]
if mode ~= 'drop' then
  local families, values = cmsgpack.unpack(ARGV[5]), {}
  for i = 6, #ARGV do values[#values + 1] = ARGV[i] end
  field = unique_field(families, values)
end

local stored = redis.pcall('HGET', KEYS[1], field)
if is_error(stored) then return pcall_failure(KEYS[1], 'hash', stored) end
local owner, since = nil, 0
if stored then
  owner, since = string.match(stored, '^(.-)@(%d+)$')
  since = tonumber(since) or 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if mode == 'drop' then
  if stored ~= id or now - since < grace then return 0 end
  redis.call('HDEL', KEYS[1], field)
  return 1
end
if mode == 'release' then
  if owner ~= id then return 0 end
  redis.call('HDEL', KEYS[1], field)
  return 1
end
if owner == id then return {'had'} end
if owner and not (owner == stale and now - since >= grace) then
  return {'held', owner, now - since}
end
redis.call('HSET', KEYS[1], field, id .. '@' .. now)
return {'took'}
