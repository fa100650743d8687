#!lua
-- save: write records (one, or a bulk_create batch) with their ByteStreams,
-- index entries, unique claims and id-set entries, atomically. Every check for
-- every record runs before the first write, so a failing call changes nothing.
--
-- KEYS[1]          the model's id set                    repocket:<ns>:<Class>:ids
-- KEYS[2 .. 1+M]   the model's index sorted sets, null sets and unique hashes (_index.lua)
-- KEYS[M]          the model's deadlines (sorted set)    repocket:<ns>:<Class>:ttl
-- KEYS[1+M]        its expiring records' values (hash)   repocket:<ns>:<Class>:ttl:entries
--                  (the last two of the M keys after the id set)
-- then, for each record in turn:
--   its hash                                             repocket:<ns>:<Class>:<id>
--   its S ByteStream keys                                <hash key>:field:<name>
--   its P Pointer target hashes, which must exist
-- ARGV[1]  msgpack write schema (_index.lua)   ARGV[2]  M   ARGV[3]  R, records   ARGV[4]  S
-- then, for each record: id, partial ('1': only changed fields, of a record loaded
--   from Redis), N, D, P, N field/value pairs to HSET, D fields to HDEL, and S
--   op/data pairs: ''  leave the stream,  'A'  APPEND,  'S'  SET,  'D'  DEL
--   then (optimistic_lock) the version the instance holds ('0' new, '' no check)
-- With Meta.changes, each record written appends an entry to the change feed (the
-- stream at KEYS[feed[1]], one of the M model keys): op, id, fields[, version].
--   then its expiry op ('' keep, 'P' none, ms: a deadline)
-- This reference script implements no expiry: it accepts the frame of the generated
-- saves (repocket.core.luagen) and checks the deadlines key's type, for the
-- differential test, which saves without deadlines.
--
-- Reply: 'saved' ({'saved', each record's new version} with optimistic_lock), or
--        'gone' (nothing written) when a partial save finds its record deleted
--        meanwhile: the caller raises DoesNotExist (no resurrection).
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}
--         REPOCKET {"code": "pointer_missing", "key"}
--         REPOCKET {"code": "unique", "fields", "values", "owner", "id"}
--         REPOCKET {"code": "stale", "id", "expected", "found"}
--         REPOCKET {"code": "bad_version", "key", "value"}

-- @include _checks
-- @include _values
-- @include _index

local M, R, S = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

-- Where each record's keys and arguments are.
local records = {}
local key_at, arg_at = 2 + M, 5
for r = 1, R do
  local n_set, n_del, n_ptr = tonumber(ARGV[arg_at + 2]), tonumber(ARGV[arg_at + 3]),
    tonumber(ARGV[arg_at + 4])
  local record = {hash = KEYS[key_at], first_stream = key_at + 1, first_pointer = key_at + 1 + S,
                  n_ptr = n_ptr, id = ARGV[arg_at], partial = ARGV[arg_at + 1] == '1',
                  first_set = arg_at + 5, n_set = n_set, n_del = n_del}
  record.first_del = record.first_set + 2 * n_set
  record.first_op = record.first_del + n_del
  records[r] = record
  key_at = key_at + 1 + S + n_ptr
  arg_at = record.first_op + 2 * S
  if locked then
    record.expected = ARGV[arg_at]
    arg_at = arg_at + 1
  end
  arg_at = arg_at + 1  -- the expiry op
end

-- The tracked values a record will hold once written.
local function new_values(record)
  local values = {}
  if record.partial then
    for field, value in pairs(record.old) do values[field] = value end
  end
  for i = record.first_set, record.first_del - 1, 2 do
    if is_tracked[ARGV[i]] then values[ARGV[i]] = canonical(ARGV[i + 1], is_envelope) or nil end
  end
  for i = record.first_del, record.first_op - 1 do values[ARGV[i]] = nil end
  return values
end

-- The names of the fields a record's write sets, clears or changes (a stream op), in
-- declaration order, comma-separated: the 'fields' of its change entry.
local function changed_fields(record)
  local changed = {}
  for i = record.first_set, record.first_del - 1, 2 do changed[ARGV[i]] = true end
  for i = record.first_del, record.first_op - 1 do changed[ARGV[i]] = true end
  for s = 1, S do
    if ARGV[record.first_op + 2 * s - 2] ~= '' then changed[feed[4][s]] = true end
  end
  local names = {}
  for _, name in ipairs(feed[3]) do
    if changed[name] then names[#names + 1] = name end
  end
  return table.concat(names, ',')
end

local function check(record, claimed)
  local err = check_type(record.hash, 'hash')
  if err then return err end
  for i = record.first_stream, record.first_pointer - 1 do
    err = check_type(KEYS[i], 'string')
    if err then return err end
  end
  for i = record.first_pointer, record.first_pointer + record.n_ptr - 1 do
    local target = redis.call('TYPE', KEYS[i])['ok']
    if target == 'none' then return fail('pointer_missing', {key = KEYS[i]}) end
    if target ~= 'hash' then
      return fail('wrongtype', {key = KEYS[i], expected = 'hash', actual = target})
    end
  end
  record.exists = redis.call('EXISTS', record.hash) == 1
  if record.partial and not record.exists then return 'gone' end
  if locked then
    err, record.version = check_version(record.hash, record.id, record.expected)
    if err then return err end
  end
  record.old = stored_values(record.hash)
  record.new = new_values(record)
  return check_uniques(record.id, record.new, claimed)
end

local function write(record)
  if record.n_set > 0 then
    redis.call('HSET', record.hash, unpack(ARGV, record.first_set, record.first_del - 1))
  end
  if record.n_del > 0 then
    redis.call('HDEL', record.hash, unpack(ARGV, record.first_del, record.first_op - 1))
  end
  redis.call('SADD', KEYS[1], record.id)
  for s = 1, S do
    local key = KEYS[record.first_stream + s - 1]
    local op, data = ARGV[record.first_op + 2 * s - 2], ARGV[record.first_op + 2 * s - 1]
    if op == 'A' then redis.call('APPEND', key, data)
    elseif op == 'S' then redis.call('SET', key, data)
    elseif op == 'D' then redis.call('DEL', key)
    end
  end
  update_entries(record.id, record.old, record.new, record.partial)
  if locked then
    record.version = record.version + 1
    redis.call('HSET', record.hash, VERSION, record.version)
  end
  if feed then
    append_change(record.exists and 'update' or 'create', record.id, changed_fields(record),
                  record.version)
  end
end

local err = check_type(KEYS[1], 'set') or check_index_types() or check_feed_type()
  or check_type(KEYS[M], 'zset')
if err then return err end
local claimed = {}
for _, record in ipairs(records) do
  err = check(record, claimed)
  if err then return err end
end
for _, record in ipairs(records) do write(record) end
if not locked then return 'saved' end
local reply = {'saved'}
for r, record in ipairs(records) do reply[r + 1] = record.version end
return reply
