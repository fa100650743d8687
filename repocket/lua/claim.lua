#!lua
-- claim: one unique value's claim on Redis Cluster, where it lives in the slot of the
-- value (a claim hash of its own hash tag), not of the record: a save claims its new
-- values here before it writes the record and releases its old ones after (README
-- "Redis Cluster", core/claims.py). The record's shard keeps its own unique hash as on
-- one server.
--
-- A claim is stored as its token, '<id>@<ms>@<nonce>': the record id, the claim time
-- (server time, ms since the epoch: only a liveness hint, never a safety condition) and
-- a nonce the caller makes, so that each grant of a value has a token of its own. The
-- record write that relies on a claim carries its token and is refused when the token
-- was revoked in its shard (lua/revoke.lua): a claim is only ever replaced (ARGV[3])
-- or dropped after its token was revoked there, so the writer who lost it never writes.
-- Claims stored before tokens ('<id>@<ms>') read as tokens without a nonce.
--
-- KEYS[1]  the claim hash      {repocket:<ns>:<Class>:uniq:<fields>:<bucket>}
-- ARGV[1]  'claim', 'release', 'drop' (check(repair=True), by field) or 'peek' (read)
-- ARGV[2]  the record id (drop: the stored token, removed only if unchanged)
-- ARGV[3]  claim: a token revoked in its record's shard (lua/revoke.lua: another record's
--          whose holder does not hold the value, or this record's own whose write was
--          refused), replaced if still stored; '' for none; release: the token to release
--          (required: a claim is only released as the exact grant its caller knows was
--          retired or never written, never by its owner id alone: a save of the same
--          record may have claimed the value again, with a fresh token)
-- ARGV[4]  claim: the nonce of the new token (unique per claim attempt)
-- ARGV[5]  msgpack list of the constraint's field families (lib/values)
-- ARGV[6..] the constraint's values, canonical, in its field order (drop: the claim's field)
--
-- Reply: claim: {'took', token} (claimed now), {'had', token} (this record's already) or
--        {'held', owner, age in ms, token} (another record's claim: nothing written);
--        release: 1 (released) or 0 (the claim is not that token: untouched);
--        drop: 1 (dropped) or 0 (changed since it was read);
--        peek: {field, token or false} (nothing written)
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"} when KEYS[1] is
--         not a hash (nothing written)

-- @include lib/checks
-- @include lib/values
-- @include lib/index

local mode, id, stale = ARGV[1], ARGV[2], ARGV[3]
local field = ARGV[6]
if mode ~= 'drop' then
  local families, values = cmsgpack.unpack(ARGV[5]), {}
  for i = 6, #ARGV do values[#values + 1] = ARGV[i] end
  field = unique_field(families, values)
end

local stored = redis.pcall('HGET', KEYS[1], field)
if is_error(stored) then return pcall_failure(KEYS[1], 'hash', stored) end
if mode == 'peek' then return {field, stored} end
local owner, since = nil, 0
if stored then
  owner, since = string.match(stored, '^([^@]*)@(%d+)')
  since = tonumber(since) or 0
end

if mode == 'drop' then
  if stored ~= id then return 0 end
  redis.call('HDEL', KEYS[1], field)
  return 1
end
if mode == 'release' then
  if owner ~= id or stale == '' or stored ~= stale then return 0 end
  redis.call('HDEL', KEYS[1], field)
  return 1
end
-- a revoked token (ARGV[3]) is replaced, even this record's own: its writes are refused
if owner == id and stored ~= stale then return {'had', stored} end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if owner and stored ~= stale then
  return {'held', owner, now - since, stored}
end
local token = id .. '@' .. now .. '@' .. ARGV[4]
redis.call('HSET', KEYS[1], field, token)
return {'took', token}
