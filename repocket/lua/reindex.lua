#!lua
-- reindex: for one batch of the model's id set, check (and in 'repair' mode
-- fix) that each id has its record and each record its index entries and
-- unique claims. Model.objects.reindex() and check() call it until the cursor
-- comes back 0. Safe while the application writes: each record is read and
-- fixed in one atomic step, and saves maintain entries themselves. check()
-- runs its no-writes variant (see _audit.lua).
--
-- KEYS[1]          the model's id set                    repocket:<ns>:<Class>:ids
-- KEYS[2 .. 1+M]   the model's index sorted sets, null sets and unique hashes (_index.lua)
-- KEYS[2+M]        the model's deadlines (lib/expiry)    repocket:<ns>:<Class>:ttl
-- KEYS[3+M]        its expiring records' values          repocket:<ns>:<Class>:ttl:entries
-- ARGV[1]  msgpack write schema (_index.lua)   ARGV[2]  M
-- ARGV[3]  SSCAN cursor of the id set          ARGV[4]  how many ids to scan
-- ARGV[5]  'check' (report only) or 'repair'
--
-- Reply: {next cursor ('0' at the end), records looked at, problems fixed,
--         {kind, key, detail, record id, value, holder}...} (false where none),
--         kinds: 'orphan-id' (an id without its record), 'foreign-member' (a
--         member that is not a record id, written by another tool: removed),
--         'not-a-hash', 'missing-entry', 'missing-unique', 'unique-conflict' (two
--         records hold one unique value: never fixed, the data must be changed),
--         'expiry-mismatch' (a record whose hash expires at another time than its
--         deadline says, or whose kept values are missing: the sweep after its
--         deadline would miss entries; repaired from the deadline, or, when it has
--         none, by recording the hash's expiry as its deadline).
--         An id past its deadline is no problem: the next write sweeps it.
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks
-- @include _values
-- @include _index
-- @include _audit
-- @include lib/expiry

local err = check_type(KEYS[1], 'set') or check_index_types()
if err then return err end
local M = tonumber(ARGV[2])
local deadlines, kept_values = KEYS[2 + M], KEYS[3 + M]
local EXPIRY
EXPIRY, err = expiry_state(deadlines, false)
if err then return err end
err = check_type(kept_values, 'hash')
if err then return err end
local repair = ARGV[5] == 'repair'
local scan = redis.call('SSCAN', KEYS[1], ARGV[3], 'COUNT', tonumber(ARGV[4]))
local prefix = records_prefix()
local reply = {scan[1], 0, 0}

local function problem(kind, key, detail, fixed, id, value, holder)
  reply[#reply + 1] = problem_row(kind, key, detail, id, value, holder)
  if fixed then reply[3] = reply[3] + 1 end
end

-- Whether one index holds the entry a record with `value` needs.
local function has_entry(index, id, value)
  local zset, nulls = KEYS[index[4]], index[5] > 0 and KEYS[index[5]]
  if value == nil then
    return not nulls or redis.call('SISMEMBER', nulls, id) == 1
  end
  if index[3] == 'lex' then
    return redis.call('ZSCORE', zset, lex_member(value, id)) ~= false
  end
  local score = redis.call('ZSCORE', zset, id)
  return score ~= false and tonumber(score) == (score_of(index[2], value) or 0)
end

-- The expiry bookkeeping of a live record: its hash expires at its deadline (none
-- without one), and the values its entries were written with are kept for the sweep.
local function audit_expiry(id, hash, values)
  local expires = redis.call('PEXPIRETIME', hash)
  local deadline = deadline_of(EXPIRY, id)
  if not deadline and expires < 0 then return end
  local kept = #tracked_fields == 0 or redis.call('HGET', kept_values, id) ~= false
  if deadline and expires == deadline and kept then return end
  problem('expiry-mismatch', hash, 'expires at ' .. expires .. ', deadline '
          .. (deadline and deadline_text(deadline) or 'none'), repair, id)
  if not repair then return end
  deadline = deadline or expires
  redis.call('ZADD', deadlines, deadline_text(deadline), id)
  redis.call('PEXPIREAT', hash, deadline_text(deadline))
  if #tracked_fields > 0 then redis.call('HSET', kept_values, id, cmsgpack.pack(values)) end
end

local function audit(id, hash)
  local values = stored_values(hash)
  if EXPIRY then audit_expiry(id, hash, values) end
  for _, index in ipairs(indexes) do
    local value = values[index[1]]
    if not has_entry(index, id, value) then
      problem('missing-entry', KEYS[index[4]], index[1] .. ' of ' .. id, repair, id)
      if repair then move_entry(index, id, nil, value, false) end
    end
  end
  for _, unique in ipairs(uniques) do
    local value = unique_value(unique, values)
    local holder = value ~= nil and redis.call('HGET', KEYS[unique[2]], value)
    if value == nil then  -- None is never constrained
    elseif holder == false then
      problem('missing-unique', KEYS[unique[2]], value .. ' of ' .. id, repair, id, value)
      if repair then redis.call('HSET', KEYS[unique[2]], value, id) end
    elseif holder and holder ~= id then
      problem('unique-conflict', KEYS[unique[2]],
              table.concat(unique[1], '+') .. ' held by ' .. holder .. ' and ' .. id, false,
              id, value, holder)
    end
  end
end

for _, id in ipairs(scan[2]) do
  local hash = prefix .. ':' .. id
  local kind = is_record_id(id) and redis.call('TYPE', hash)['ok']
  if kind then reply[2] = reply[2] + 1 end
  if not kind then
    problem('foreign-member', KEYS[1], 'not a record id: ' .. id, repair, id)
    if repair then redis.call('SREM', KEYS[1], id) end
  elseif kind == 'none' and is_expired(EXPIRY, id) then
    -- past its deadline: Redis expired the hash, the next write sweeps the rest
  elseif kind == 'none' then
    problem('orphan-id', KEYS[1], id, repair, id)
    if repair then redis.call('SREM', KEYS[1], id) end
  elseif kind ~= 'hash' then
    problem('not-a-hash', hash, kind, false, id)
  else
    audit(id, hash)
  end
end
return reply
