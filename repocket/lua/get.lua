#!lua flags=no-writes
-- get: records by id (one for get, several for get_many), each with its
-- ByteStreams and the records its Pointers name.
--
-- KEYS[1] .. KEYS[N]  the records' hashes               repocket:<ns>:<Class>:<id>
-- ARGV[1]       msgpack schema of the models the read may reach (_hydrate.lua); model 1 is the root
-- ARGV[2]       how many Pointer levels to load (0 = none)
-- ARGV[3 .. ]   the records' ids, in KEYS order
--
-- Reply: a list of records (_hydrate.lua): the N requested ones first, in order
--        (hash `false` for a missing one), then the Pointer targets.
-- Errors: REPOCKET {"code": "wrongtype", "key", ...} when a key holds another type.

-- @include _hydrate

local roots = {}
for i, key in ipairs(KEYS) do
  seen[key] = true
  local flat, err = load_record(1, ARGV[2 + i], key)
  if err then return err end
  roots[i] = flat or false
end
for _, flat in ipairs(roots) do
  if flat then follow_pointers(1, flat, 0) end
end
local err = load_pointers()
if err then return err end
return records
