#!lua flags=no-writes
-- get: one record by id, with its ByteStreams and the records its Pointers name.
--
-- KEYS[1]  the record's hash               repocket:<ns>:<Class>:<id>
-- ARGV[1]  msgpack schema of the models the read may reach (see _hydrate.lua); model 1 is the root
-- ARGV[2]  how many Pointer levels to load (0 = none)
-- ARGV[3]  the record's id
--
-- Reply: a list of records (see _hydrate.lua), the root first; the root's hash
--        is `false` when the record does not exist.
-- Errors: REPOCKET {"code": "wrongtype", "key": ...} when a key holds another type.

-- @include _hydrate

local root_key, root_id = KEYS[1], ARGV[3]
seen[root_key] = true
local flat, err = load_record(1, root_id, root_key)
if err then return err end
if flat then
  follow_pointers(1, flat, 0)
  err = load_pointers()
  if err then return err end
end
return records
