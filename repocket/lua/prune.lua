#!lua
-- prune: remove, from one index key or unique hash of a model, the entries that
-- no longer match their record's current value (records changed by code that
-- did not maintain the index, or deleted), and the members that name no record
-- at all (written by another tool or an older version); one batch per call.
-- reindex() runs it over every key after adding entries; check() runs its
-- no-writes variant (see _audit.lua).
--
-- KEYS[1]          the model's id set                    repocket:<ns>:<Class>:ids
-- KEYS[2 .. 1+M]   the model's index sorted sets, null sets and unique hashes (_index.lua)
-- KEYS[2+M]        the model's deadlines (lib/expiry)    repocket:<ns>:<Class>:ttl
-- ARGV[1]  msgpack write schema (_index.lua)   ARGV[2]  M
-- ARGV[3]  which key to prune (its KEYS index)
-- ARGV[4]  cursor ('@<rank>' for sorted sets, a SCAN cursor otherwise; '0' to start)
-- ARGV[5]  how many entries to look at
-- ARGV[6]  'check' (report only) or 'repair'
--
-- Reply: {next cursor ('0' at the end), entries removed or corrected,
--         {kind, key, detail, record id}...},
--        kinds 'stale-entry' (an entry for a value its record no longer has, or no
--        record), 'foreign-member' (a member, or a unique hash's holder, that is not
--        a record id: never read as a key name); the entries of a record past its
--        deadline are no problem: the next write sweeps them
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks
-- @include _values
-- @include _index
-- @include _audit
-- @include lib/expiry

local err = check_type(KEYS[1], 'set') or check_index_types()
if err then return err end
local EXPIRY
EXPIRY, err = expiry_state(KEYS[2 + tonumber(ARGV[2])], false)
if err then return err end
local target, cursor, count = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local repair = ARGV[6] == 'repair'
local key = KEYS[target]
local found = {}

-- Records a stale entry; true when it is to be fixed.
local function stale(detail, id)
  if is_expired(EXPIRY, id) then return false end  -- past its deadline: swept by a write
  found[#found + 1] = problem_row('stale-entry', key, detail, id)
  return repair
end

-- Records a member that names no record; true when it is to be removed.
local function foreign(member)
  found[#found + 1] = problem_row('foreign-member', key, 'not a record id: ' .. member)
  return repair
end

-- The record id of a lex index member <escaped value>\0\0<id>, or nil.
local function lex_id(member)
  local id = lex_member_id(member)
  if #member < #id + 2 or string.sub(member, -(#id + 2), -(#id + 1)) ~= '\0\0' then return nil end
  return is_record_id(id) and id or nil
end
local prefix = records_prefix()

-- The fields the pruned key holds entries of: read only those (one decode each).
local pruned_fields = {}
for _, index in ipairs(indexes) do
  if index[4] == target or index[5] == target then pruned_fields = {index[1]} end
end
for _, unique in ipairs(uniques) do
  if unique[2] == target then pruned_fields = unique[1] end
end

local function current(id) return stored_values(prefix .. ':' .. id, pruned_fields) end

local function prune_sorted_set(index)
  local field, family, kind = index[1], index[2], index[3]
  local start = tonumber((string.gsub(cursor, '^@', '')))
  local reply = redis.call('ZRANGE', key, start, start + count - 1, 'WITHSCORES')
  local removed = 0
  for i = 1, #reply, 2 do
    local member, score = reply[i], tonumber(reply[i + 1])
    local id
    if kind == 'lex' then id = lex_id(member) elseif is_record_id(member) then id = member end
    local value = id and current(id)[field]
    if not id then
      if foreign(member) then
        redis.call('ZREM', key, member)
        removed = removed + 1
      end
    elseif kind == 'lex' then
      local indexed = lex_member_value(member)
      if value ~= indexed and stale(field .. ' of ' .. id, id) then
        redis.call('ZREM', key, member)
        removed = removed + 1
      end
    elseif value == nil then
      if stale(field .. ' of ' .. id, id) then
        redis.call('ZREM', key, member)
        removed = removed + 1
      end
    elseif score ~= (score_of(family, value) or 0) and stale(field .. ' of ' .. id, id) then
      redis.call('ZADD', key, format_score(score_of(family, value) or 0), member)
    end
  end
  local entries = #reply / 2
  -- '@<rank>': a rank of 0 (a first page wholly removed) must not read as the end
  local next_cursor = entries < count and '0' or '@' .. (start + entries - removed)
  return {next_cursor, #found}
end

local function prune_null_set(index)
  local reply = redis.call('SSCAN', key, cursor, 'COUNT', count)
  for _, id in ipairs(reply[2]) do
    if not is_record_id(id) then
      if foreign(id) then redis.call('SREM', key, id) end
    else
      local exists = redis.call('EXISTS', prefix .. ':' .. id) == 1
      if (not exists or current(id)[index[1]] ~= nil) and stale(index[1] .. ' of ' .. id, id) then
        redis.call('SREM', key, id)
      end
    end
  end
  return {reply[1], #found}
end

local function prune_unique_hash(unique)
  local reply = redis.call('HSCAN', key, cursor, 'COUNT', count)
  for i = 1, #reply[2], 2 do
    local value, id = reply[2][i], reply[2][i + 1]
    if not is_record_id(id) then
      if foreign(value .. ' -> ' .. id) then redis.call('HDEL', key, value) end
    elseif unique_value(unique, current(id)) ~= value and stale(value .. ' -> ' .. id, id) then
      redis.call('HDEL', key, value)
    end
  end
  return {reply[1], #found}
end

local result = {'0', 0}
for _, index in ipairs(indexes) do
  if index[4] == target then result = prune_sorted_set(index) end
  if index[5] == target then result = prune_null_set(index) end
end
for _, unique in ipairs(uniques) do
  if unique[2] == target then result = prune_unique_hash(unique) end
end
if not repair then result[2] = 0 end
for _, problem in ipairs(found) do result[#result + 1] = problem end
return result
