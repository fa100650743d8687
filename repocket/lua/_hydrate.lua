-- Shared by the reading scripts: load records, their ByteStreams and, breadth
-- first, the records their Pointers name, up to a depth, each record once.
--
-- `schema` (msgpack) lists the models a read may reach; entry i is
--   {prefix, is_envelope (1|0), {stream field names}, {{pointer field, target model i}, ...}}
-- Each loaded record is appended to `records` as
--   {model index, id, HGETALL flat list | false when missing, {stream values | false}}
-- or, read by position (load_positional: model 1, every field the reader knows), as
--   {value | false..., stream value | false..., id, 1}
-- Pointer targets are read from keys built here, `<target prefix>:<id>`, and only
-- when the stored id is a UUID, so no stored value can name a key outside a
-- model's prefix. (On Redis Cluster this read is the documented exception to
-- "every key in KEYS": targets live in other slots.)

-- @include lib/read
local schema = cmsgpack.unpack(ARGV[1])
local max_depth = tonumber(ARGV[2])
local records = {}
local seen = {}
local pending = {}

local read_error = read_failure

-- Sets into[at + i] to the value of the record at `key`'s ByteStream i (false for
-- those not in `streams`, a set; nil: all); returns `into`, or nil and an error reply.
local stream_suffixes = {}  -- per model, ':field:<name>' of each stream, made once
local function read_streams(model_index, key, streams, into, at)
  local suffixes = stream_suffixes[model_index]
  if not suffixes then
    suffixes = {}
    for i, name in ipairs(schema[model_index][3]) do suffixes[i] = ':field:' .. name end
    stream_suffixes[model_index] = suffixes
  end
  for i, name in ipairs(schema[model_index][3]) do
    into[at + i] = false
    if not streams or streams[name] then
      local stream_key = key .. suffixes[i]
      local value = redis.pcall('GET', stream_key)
      if type(value) == 'table' and value.err then return nil, read_error(stream_key, value) end
      into[at + i] = value
    end
  end
  return into
end

-- Appends the record at `key` to `records`; returns its flat hash (nil if
-- missing), or an error reply as second value. `fields` (optional) limits the
-- hash fields read (the first one must always be stored: the id); `streams`
-- (optional) is a set of the stream names to read, the others coming back false.
local function load_record(model_index, id, key, fields, streams)
  local flat
  if fields then
    local values = redis.pcall('HMGET', key, unpack(fields))
    if values.err then return nil, read_error(key, values) end
    flat = {}
    if values[1] then
      for i, field in ipairs(fields) do
        if values[i] then
          flat[#flat + 1] = field
          flat[#flat + 1] = values[i]
        end
      end
    end
  else
    flat = redis.pcall('HGETALL', key)
    if flat.err then return nil, read_error(key, flat) end
  end
  if #flat == 0 then
    records[#records + 1] = {model_index, id, false, {}}
    return nil
  end
  local stream_values, err = read_streams(model_index, key, streams, {}, 0)
  if err then return nil, err end
  records[#records + 1] = {model_index, id, flat, stream_values}
  return flat
end

-- Appends the model 1 record at `key` read by position: `fields` are every hash field
-- the reader knows (the id first); the entry is the HMGET reply itself, their values
-- (false: absent), followed by the stream values, the id and the model number 1: what
-- HGETALL gives without the names, and no table built per record. Returns the values
-- and false, or for a hash without its id field what load_record returns for it read
-- whole (HGETALL: a hash holding other fields is still a record) and true.
local function load_positional(id, key, fields)
  local values = redis.pcall('HMGET', key, unpack(fields))
  if values.err then return nil, false, read_error(key, values) end
  if not values[1] then
    local flat, err = load_record(1, id, key)
    return flat, true, err
  end
  local n = #fields
  local _, err = read_streams(1, key, nil, values, n)
  if err then return nil, false, err end
  local k = #schema[1][3]
  values[n + k + 1], values[n + k + 2] = id, 1
  records[#records + 1] = values
  return values, false
end

local function stored_id(model_index, raw)
  return pointer_id(raw, schema[model_index][2] == 1)
end

-- Per model and Pointer, the stored values already followed: their targets are queued
-- already, so the id check and the key built to find that out are skipped.
local followed = {}

-- Queues the target of Pointer `p` of a model's record holding `raw` (nil: none).
local function follow_pointer(model_index, p, raw, depth)
  local memos = followed[model_index]
  if not memos then
    memos = {}
    followed[model_index] = memos
  end
  local memo = memos[p]
  if not memo then
    memo = {}
    memos[p] = memo
  end
  local id = nil
  if raw and not memo[raw] then
    memo[raw] = true
    id = stored_id(model_index, raw)
  end
  if id then
    local target = schema[model_index][4][p][2]
    local key = schema[target][1] .. ':' .. id
    if not seen[key] then
      seen[key] = true
      pending[#pending + 1] = {target, id, key, depth + 1}
    end
  end
end

-- Queues the not yet seen targets of a loaded record's Pointers.
local function follow_pointers(model_index, flat, depth)
  local pointers = schema[model_index][4]
  if depth >= max_depth or #pointers == 0 then return end
  for p, pointer in ipairs(pointers) do
    -- a scan of the flat list: cheaper than a table of every field, for a pointer or two
    local name, raw = pointer[1], nil
    for i = 1, #flat, 2 do
      if flat[i] == name then
        raw = flat[i + 1]
        break
      end
    end
    follow_pointer(model_index, p, raw, depth)
  end
end

-- follow_pointers for a model 1 record read by position: `at` maps each Pointer's
-- position in model 1's Pointers to its value's position.
local function follow_positional(values, at, depth)
  if depth >= max_depth then return end
  for p, position in ipairs(at) do follow_pointer(1, p, values[position], depth) end
end

-- Loads every queued Pointer target; returns an error reply or nil.
local function load_pointers()
  local next_item = 1
  while next_item <= #pending do
    local item = pending[next_item]
    next_item = next_item + 1
    local flat, err = load_record(item[1], item[2], item[3])
    if err then return err end
    if flat then follow_pointers(item[1], flat, item[4]) end
  end
  return nil
end
