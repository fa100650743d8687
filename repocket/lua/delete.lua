#!lua flags=allow-oom
-- delete: remove records with their ByteStreams, index entries, unique claims
-- and id-set entries, atomically. It only frees memory, so it runs even over
-- maxmemory (allow-oom), where it is how an application makes room.
--
-- KEYS[1]          the model's id set                    repocket:<ns>:<Class>:ids
-- KEYS[2 .. 1+M]   the model's index sorted sets, null sets and unique hashes (_index.lua)
-- KEYS[M]          the model's deadlines (sorted set)    repocket:<ns>:<Class>:ttl
-- KEYS[1+M]        its expiring records' values (hash)   repocket:<ns>:<Class>:ttl:entries
--                  (the last two of the M keys after the id set)
--                  (this reference script implements no expiry: see save.lua)
-- then, for each record: its hash and its S ByteStream keys
-- ARGV[1]  msgpack write schema (_index.lua)   ARGV[2]  M   ARGV[3]  S
-- ARGV[4 ..]  the records' ids, in KEYS order; then (optimistic_lock) per record the
--   version the deleting instance holds ('' no check)
-- With Meta.changes, each record deleted appends an entry to the change feed.
--
-- Reply: {records deleted, keys deleted (hashes + existing streams)}.
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}
--         REPOCKET {"code": "stale", "id", "expected", "found"}

-- @include _checks
-- @include _values
-- @include _index

local M, S = tonumber(ARGV[2]), tonumber(ARGV[3])
local first_record_key = 2 + M

local last = locked and 3 + (#ARGV - 3) / 2 or #ARGV  -- the last id's ARGV index

local err = check_type(KEYS[1], 'set') or check_index_types() or check_feed_type()
  or check_type(KEYS[M], 'zset')
if err then return err end
for i = first_record_key, #KEYS do
  local is_hash = (i - first_record_key) % (S + 1) == 0
  err = check_type(KEYS[i], is_hash and 'hash' or 'string')
  if err then return err end
end
local versions = {}
if locked then
  for r = 4, last do
    local hash = KEYS[first_record_key + (r - 4) * (S + 1)]
    if redis.call('EXISTS', hash) == 1 then
      local stored = redis.call('HGET', hash, VERSION)
      versions[r] = tonumber(stored or '0') or stored
      local expected = ARGV[last + r - 3]
      if expected ~= '' and tonumber(expected) ~= versions[r] then
        return fail('stale', {id = ARGV[r], expected = tonumber(expected),
                              found = versions[r]})
      end
    end
  end
end

local records, deleted = 0, 0
for r = 4, last do
  local hash = KEYS[first_record_key + (r - 4) * (S + 1)]
  local id = ARGV[r]
  update_entries(id, stored_values(hash), nil)
  local found = redis.call('DEL', hash)
  records, deleted = records + found, deleted + found
  if feed and found == 1 then append_change('delete', id, nil, versions[r]) end
  for s = 1, S do
    deleted = deleted + redis.call('DEL', KEYS[first_record_key + (r - 4) * (S + 1) + s])
  end
  redis.call('SREM', KEYS[1], id)
end
return {records, deleted}
