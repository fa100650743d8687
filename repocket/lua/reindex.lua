#!lua
-- reindex: add the index entries and unique claims of one batch of records
-- (Model.objects.reindex() calls it until the cursor comes back 0). Safe while
-- the application writes: each record's entries come from its current values,
-- read in the same atomic step, and saves maintain entries themselves.
--
-- KEYS[1]          the model's id set                    repocket:<ns>:<Class>:ids
-- KEYS[2 .. 1+M]   the model's index sorted sets, null sets and unique hashes (_index.lua)
-- ARGV[1]  msgpack write schema (_index.lua)   ARGV[2]  M
-- ARGV[3]  SSCAN cursor of the id set          ARGV[4]  how many ids to scan
--
-- Reply: {next cursor ('0' at the end), records indexed,
--         {unique fields, value, holder id, other id}...}  (unique values held twice)
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include _checks
-- @include _values
-- @include _index

local err = check_type(KEYS[1], 'set') or check_index_types()
if err then return err end
local scan = redis.call('SSCAN', KEYS[1], ARGV[3], 'COUNT', tonumber(ARGV[4]))
local prefix = string.sub(KEYS[1], 1, -5)  -- '<prefix>:ids' without ':ids'
local reply = {scan[1], 0}
for _, id in ipairs(scan[2]) do
  local hash = prefix .. ':' .. id
  if redis.call('TYPE', hash)['ok'] == 'hash' then
    local values = stored_values(hash)
    local clash = nil
    for _, unique in ipairs(uniques) do
      local value = unique_value(unique, values)
      local holder = value ~= nil and redis.call('HGET', KEYS[unique[2]], value)
      if holder and holder ~= id then
        clash = true
        reply[#reply + 1] = {unique[1], value, holder, id}
      end
    end
    if not clash then
      update_entries(id, nil, values)
      reply[2] = reply[2] + 1
    end
  end
end
return reply
