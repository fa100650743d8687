#!lua
-- revoke: on Redis Cluster, the step before a unique value's claim (lua/claim.lua) is
-- taken from the record holding it, or dropped: run in that record's shard, atomically
-- with the record's writes, it checks that the record does not hold the value and then
-- records the claim's token in the shard's fence hash. A write of the record carrying
-- that token (a save that claimed the value and stalled: core/claims.py) is refused by
-- the generated save script from then on, so the value can never end up in two records,
-- however long a save stalls. The token stays in the fence hash: every process saving
-- the record may have been handed it ('had'), and each of their writes must be refused.
--
-- The record holds the value when its shard's unique hash names it for the value and its
-- hash exists: the save and delete scripts keep that unique hash with the record, in the
-- same atomic call (a record past its deadline, whose hash Redis expired, holds nothing,
-- as on one server).
--
-- KEYS[1]  the record's hash           {repocket:<ns>:<Class>:<shard>}:<id>
-- KEYS[2]  its shard's unique hash     {repocket:<ns>:<Class>:<shard>}:uniq:<fields>
-- KEYS[3]  its shard's fence hash      {repocket:<ns>:<Class>:<shard>}:fences
-- ARGV[1]  the claim's token, as stored in the claim hash ('<id>@<ms>@<nonce>')
-- ARGV[2]  the record id
-- ARGV[3]  msgpack list of the constraint's field families (lib/values); '' when
--          ARGV[4] is the unique field itself (the checker's repair, by field)
-- ARGV[4..] the constraint's values, canonical, in its field order
--
-- Reply: 'holds' (the record holds the value: nothing written) or 'revoked' (the token
--        is in the fence hash: token -> server time in ms when revoked)
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"} when KEYS[2] or
--         KEYS[3] is not a hash (nothing written)

-- @include lib/checks
-- @include lib/values
-- @include lib/index

local token, id = ARGV[1], ARGV[2]
local field = ARGV[4]
if ARGV[3] ~= '' then
  local families, values = cmsgpack.unpack(ARGV[3]), {}
  for i = 4, #ARGV do values[#values + 1] = ARGV[i] end
  field = unique_field(families, values)
end

local holder = redis.pcall('HGET', KEYS[2], field)
if is_error(holder) then return pcall_failure(KEYS[2], 'hash', holder) end
local err = check_type(KEYS[3], 'hash')
if err then return err end
if holder == id and redis.call('EXISTS', KEYS[1]) == 1 then return 'holds' end
local time = redis.call('TIME')
redis.call('HSET', KEYS[3], token, tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
return 'revoked'
