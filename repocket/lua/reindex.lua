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
-- ARGV[1]  msgpack write schema (_index.lua)   ARGV[2]  M
-- ARGV[3]  SSCAN cursor of the id set          ARGV[4]  how many ids to scan
-- ARGV[5]  'check' (report only) or 'repair'
--
-- Reply: {next cursor ('0' at the end), records looked at, problems fixed,
--         {kind, key, detail, record id, value, holder}...} (false where none),
--         kinds: 'orphan-id' (an id without its record), 'foreign-member' (a
--         member that is not a record id, written by another tool: removed),
--         'not-a-hash', 'missing-entry', 'missing-unique', 'unique-conflict' (two
--         records hold one unique value: never fixed, the data must be changed)
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks
-- @include _values
-- @include _index
-- @include _audit

local err = check_type(KEYS[1], 'set') or check_index_types()
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

local function audit(id, hash)
  local values = stored_values(hash)
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
