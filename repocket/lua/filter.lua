#!lua flags=no-writes
-- filter: the records of one model whose fields equal given values, hydrated
-- like get. Scans the model's id set (never KEYS); the query engine replaces
-- this scan with indexes.
--
-- KEYS[1]  the model's id set              repocket:<ns>:<Class>:ids
-- ARGV[1]  msgpack schema (see _hydrate.lua); model 1 is the filtered model
-- ARGV[2]  how many Pointer levels to load
-- ARGV[3]  the model's key prefix          repocket:<ns>:<Class>
-- ARGV[4]  msgpack list of conditions {field, {accepted stored values...}}, ANDed;
--          a record matches when each field's stored bytes equal one accepted value
--
-- Reply: {number of matching records, records...} (see _hydrate.lua); the
--        matching records come first, in id-set order, then Pointer targets.
-- Errors: REPOCKET {"code": "wrongtype", ...} when a key holds another type.

-- @include _hydrate

local prefix = ARGV[3]
local conditions = cmsgpack.unpack(ARGV[4])
local condition_fields = {}
local accepted = {}
for i, condition in ipairs(conditions) do
  condition_fields[i] = condition[1]
  accepted[i] = {}
  for _, value in ipairs(condition[2]) do accepted[i][value] = true end
end

local function matches(key)
  if #conditions == 0 then return true end
  local values = redis.pcall('HMGET', key, unpack(condition_fields))
  if values.err then return false, read_error(key, values) end
  for i = 1, #conditions do
    if not values[i] or not accepted[i][values[i]] then return false end
  end
  return true
end

local ids_type = redis.call('TYPE', KEYS[1])['ok']
if ids_type ~= 'set' and ids_type ~= 'none' then
  return read_error(KEYS[1], {err = ids_type})
end

local roots = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.match(id, UUID_PATTERN) then
    local key = prefix .. ':' .. id
    local ok, err = matches(key)
    if err then return err end
    if ok then
      seen[key] = true
      local flat
      flat, err = load_record(1, id, key)
      if err then return err end
      if flat then roots[#roots + 1] = flat else records[#records] = nil end
    end
  end
end
local count = #records
for i, flat in ipairs(roots) do follow_pointers(1, flat, 0) end
local err = load_pointers()
if err then return err end
table.insert(records, 1, count)
return records
