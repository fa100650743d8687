-- Shared by the scripts that write: secondary indexes and unique constraints.
-- Needs _checks and _values. `wschema` (msgpack, ARGV[1]) describes one model:
--   {is_envelope (1|0),
--    {{field, family, kind ('score'|'lex'), sorted set KEYS index,
--      null set KEYS index (0 when the field cannot be None)}, ...},
--    {{{field, ...}, hash KEYS index, {family, ...}}, ...},   -- unique constraints
--    {field = canonical value, ...},   -- what an absent tracked field reads: its declared
--                                      -- default (Options.absent_values), never nil
--    and, for a model with Meta.optimistic_lock or Meta.changes (save and delete only):
--    1|0 (optimistic_lock), {stream KEYS index, maxlen, {field but the id, ...},
--    {ByteStream name, ...}} or 0 (changes)}
-- @include lib/index

local wschema = cmsgpack.unpack(ARGV[1])
local is_envelope = wschema[1] == 1
local indexes, uniques = wschema[2], wschema[3]
local absent = wschema[4] or {}
local locked = wschema[5] == 1
local feed = type(wschema[6]) == 'table' and wschema[6] or nil
local VERSION = ':version'  -- the hash field of a record's version (optimistic_lock)

local tracked_fields = {}  -- every field an index or a constraint reads, once
local is_tracked = {}
do
  local function track(field)
    if not is_tracked[field] then
      is_tracked[field] = true
      tracked_fields[#tracked_fields + 1] = field
    end
  end
  for _, index in ipairs(indexes) do track(index[1]) end
  for _, unique in ipairs(uniques) do
    for _, field in ipairs(unique[1]) do track(field) end
  end
end

-- The prefix of the model's record keys: KEYS[1] is '<prefix>:ids'.
local function records_prefix() return (string.gsub(KEYS[1], ':ids$', '')) end

-- field -> canonical value (or nil) of the tracked fields (or only `fields`, a
-- list of some of them) stored at `hash_key`; a field the hash lacks (added to the
-- model after the record was saved) reads as its declared default, as in Python.
local function stored_values(hash_key, fields)
  fields = fields or tracked_fields
  local values = {}
  if #fields == 0 then return values end
  local raw = redis.call('HMGET', hash_key, unpack(fields))
  local exists = nil  -- asked only when a default would be used: no record, no values
  for i, field in ipairs(fields) do
    local value
    if raw[i] then
      value = canonical(raw[i], is_envelope)
    elseif absent[field] then
      if exists == nil then exists = redis.call('EXISTS', hash_key) == 1 end
      value = exists and absent[field] or nil
    end
    if value then values[field] = value end
  end
  return values
end

local function unique_value(unique, values)
  local ordered = {}
  for i, field in ipairs(unique[1]) do ordered[i] = values[field] end
  return unique_field(unique[3], ordered)
end

-- An error reply if `values` would take a unique value another record holds
-- (or one an earlier record of this batch claimed, tracked in `claimed`).
local function check_uniques(id, values, claimed)
  for _, unique in ipairs(uniques) do
    local value = unique_value(unique, values)
    if value ~= nil then
      local owner, err = unique_owner(KEYS[unique[2]], value, id, claimed)
      if err then return err end
      if owner then
        local shown = {}
        for i, field in ipairs(unique[1]) do shown[i] = values[field] end
        return fail('unique', {fields = unique[1], values = shown, owner = owner, id = id})
      end
    end
  end
  return nil
end

local function check_index_types()
  for _, index in ipairs(indexes) do
    local err = check_type(KEYS[index[4]], 'zset')
      or (index[5] > 0 and check_type(KEYS[index[5]], 'set')) or nil
    if err then return err end
  end
  for _, unique in ipairs(uniques) do
    local err = check_type(KEYS[unique[2]], 'hash')
    if err then return err end
  end
  return nil
end

-- Moves one index's entries for a record from `before` to `after` (nil: None);
-- `deleting` removes them altogether.
local function move_entry(index, id, before, after, deleting)
  move_index_entry(index[3], index[2], KEYS[index[4]], index[5] > 0 and KEYS[index[5]] or nil,
                   id, before, after, deleting)
end

-- Moves a record's entries from its `old` values to its `new` ones; `old` is
-- nil for a new record, `new` nil for a deleted one. With `known`, the record
-- existed with `old` values and its entries are trusted: unchanged values are
-- not rewritten. Otherwise adding is idempotent and also repairs missing entries.
local function update_entries(id, old, new, known)
  old = old or {}
  for _, index in ipairs(indexes) do
    local before, after = old[index[1]], new and new[index[1]]
    if not (known and new and before == after) then
      move_entry(index, id, before, after, new == nil)
    end
  end
  for _, unique in ipairs(uniques) do
    local before, after = unique_value(unique, old), new and unique_value(unique, new)
    move_claim(KEYS[unique[2]], id, before, after, known)
  end
end

-- The change feed (Meta.changes): its type check, and one entry appended.
local function check_feed_type()
  return feed and check_type(KEYS[feed[1]], 'stream') or nil
end

local function append_change(op, id, fields, version)
  local command = {'XADD', KEYS[feed[1]], 'MAXLEN', '~', feed[2], '*', 'op', op, 'id', id}
  if fields then
    command[#command + 1] = 'fields'
    command[#command + 1] = fields
  end
  if version then
    command[#command + 1] = 'version'
    command[#command + 1] = version
  end
  redis.call(unpack(command))
end

-- The stale error reply when a record's stored version (optimistic_lock) is not
-- `expected` ('' expects nothing), else nil; and the stored version.
local function check_version(hash, id, expected)
  local stored = redis.call('HGET', hash, VERSION)
  local version = tonumber(stored or '0')
  if not version or version < 0 or version % 1 ~= 0 then
    return fail('bad_version', {key = hash, value = stored}), nil
  end
  if expected ~= '' and tonumber(expected) ~= version then
    return fail('stale', {id = id, expected = tonumber(expected), found = version}), nil
  end
  return nil, version
end
