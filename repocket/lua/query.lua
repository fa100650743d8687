#!lua flags=no-writes
-- query: select, order, slice and hydrate the records of one model (or count
-- them, or list their ids), never with KEYS.
--
-- KEYS[1]         the model's id set                      repocket:<ns>:<Class>:ids
-- KEYS[2 .. ]     the index keys the plan names (sorted sets, null sets, unique hashes)
-- ARGV[1]  msgpack read schema (_hydrate.lua); model 1 is the queried model
-- ARGV[2]  how many Pointer levels to load
-- ARGV[3]  the model's key prefix                          repocket:<ns>:<Class>
-- ARGV[4]  msgpack plan:
--   {is_envelope, pk field,
--    sources: candidate sets the script may start from; it takes the smallest:
--      {'ids', {id...}} | {'unique', key i, {value...}} | {'null', key i}
--      | {'index', key i, kind ('score'|'lex'), family, op, {value...}},
--    groups: {{negate (0|1), {{field, family, op, {value...}}, ...}}, ...}  ANDed,
--      a negated group excludes the records matching all its conditions,
--    order: {{field, family, desc (0|1)}, ...}; ties by id, in the first field's direction,
--    stream: {key i, kind, null set key i} when order is one indexed field, or false,
--    offset, limit (-1: none), mode ('records'|'ids'|'count'|'explain'),
--    fields (hash fields to load, or false: all), streams (set of names, or false: all),
--    budget (candidates one call may examine), resume (false, or a page cursor)}
--   ops: eq, in, gt, gte, lt, lte, range, startswith, isnull; values are canonical.
--
-- Reply: when the whole query fitted in the budget,
--   {'done', n, records (_hydrate.lua; the n selected ones first)}  mode 'records'
--   {'done', n, id...}                                                mode 'ids'
--   {'done', count}                                                   mode 'count'
-- otherwise one page of matching rows, which the caller merges, orders and slices:
--   {'page', next cursor (false at the end), {id, order value...}...}
--   where a cursor is {'gather', source position, position} or {'stream', phase, position}
-- mode 'explain': {chosen source position (0: the whole id set), its size, 'gather'|'stream'}
-- Errors: REPOCKET {"code": "wrongtype", ...}; REPOCKET {"code": "bad_plan", ...}

-- @include _values
-- @include _hydrate

local prefix = ARGV[3]
local plan = cmsgpack.unpack(ARGV[4])
local is_envelope, pk_field = plan[1] == 1, plan[2]
local sources, groups, order = plan[3], plan[4], plan[5]
local stream, offset, limit, mode = plan[6], plan[7], plan[8], plan[9]
local fields, wanted_streams, budget, resume = plan[10], plan[11], plan[12], plan[13]
local desc = order[1] ~= nil and order[1][3] == 1
local ID_LENGTH = 36

-- Candidate sources ----------------------------------------------------------------
local function esc(value) return (string.gsub(value, '%z', '\0\1')) end

local function next_prefix(text)
  local trimmed = string.gsub(text, '\255+$', '')
  if trimmed == '' then return '+' end
  return '(' .. string.sub(trimmed, 1, -2) .. string.char(string.byte(trimmed, -1) + 1)
end

-- {min, max} pairs for ZRANGEBYSCORE / ZRANGEBYLEX covering every entry that may
-- satisfy `op` (a superset: each candidate is checked exactly afterwards).
local function index_ranges(kind, family, op, values)
  local ranges = {}
  local function bound(value)
    if kind == 'lex' then return esc(value) end
    local score = score_of(family, value)
    return score and format_score(score) or nil
  end
  local function add(low, high) ranges[#ranges + 1] = {low, high} end
  if op == 'eq' or op == 'in' then
    for _, value in ipairs(values) do
      local b = bound(value)
      if b == nil then return nil end
      if kind == 'lex' then add('[' .. b .. '\0\0', '(' .. b .. '\0\1') else add(b, b) end
    end
  elseif op == 'startswith' and kind == 'lex' then
    add('[' .. esc(values[1]), next_prefix(esc(values[1])))
  else
    local low = (op == 'gt' or op == 'gte' or op == 'range') and bound(values[1])
    local high = (op == 'lt' or op == 'lte') and bound(values[1])
      or (op == 'range' and bound(values[2]))
    if kind == 'lex' then
      low = low and ('[' .. low .. (op == 'gt' and '\0\1' or '\0\0')) or '-'
      high = high and ('(' .. high .. (op == 'lt' and '\0\0' or '\0\1')) or '+'
    else
      low, high = low or '-inf', high or '+inf'
    end
    add(low, high)
  end
  return ranges
end

local function zcount(kind, key, range)
  if kind == 'lex' then return redis.call('ZLEXCOUNT', key, range[1], range[2]) end
  return redis.call('ZCOUNT', key, range[1], range[2])
end

-- How many candidates a source yields (an upper bound), or nil if unusable.
local function estimate(source)
  local kind = source[1]
  if kind == 'ids' then return #source[2] end
  if kind == 'unique' then return #source[3] end
  if kind == 'null' then return redis.call('SCARD', KEYS[source[2]]) end
  local ranges = index_ranges(source[3], source[4], source[5], source[6])
  if not ranges then return nil end
  source.ranges = ranges
  local total = 0
  for _, range in ipairs(ranges) do total = total + zcount(source[3], KEYS[source[2]], range) end
  return total
end

local ALL = {'all'}

-- The smallest source, its position in `sources` (0 for the whole id set) and size.
local function choose_source()
  local best, best_at, best_count = nil, 0, nil
  for i, source in ipairs(sources) do
    local count = estimate(source)
    if count and (best_count == nil or count < best_count) then
      best, best_at, best_count = source, i, count
    end
  end
  if best == nil then return ALL, 0, redis.call('SCARD', KEYS[1]) end
  return best, best_at, best_count
end

local function member_id(kind, member)
  if kind == 'lex' then return string.sub(member, -ID_LENGTH) end
  return member
end

-- Up to `count` candidate ids of `source` from `cursor` (a position), and the
-- next cursor (false at the end).
local function candidates(source, cursor, count)
  local kind = source[1]
  if kind == 'ids' then
    local ids = {}
    for i = cursor + 1, math.min(cursor + count, #source[2]) do ids[#ids + 1] = source[2][i] end
    return ids, (cursor + count < #source[2]) and cursor + count or false
  end
  if kind == 'unique' then
    local ids = {}
    for _, value in ipairs(source[3]) do
      local owner = redis.call('HGET', KEYS[source[2]], value)
      if owner then ids[#ids + 1] = owner end
    end
    return ids, false
  end
  if kind == 'all' or kind == 'null' then
    local key = kind == 'all' and KEYS[1] or KEYS[source[2]]
    -- SSCAN cursors stay strings: they may exceed what a Lua number holds exactly
    local reply = redis.call('SSCAN', key, cursor, 'COUNT', count)
    return reply[2], reply[1] ~= '0' and reply[1] or false
  end
  -- index ranges: the cursor counts entries across the ranges in turn
  local ids, skipped = {}, 0
  local zkind, key = source[3], KEYS[source[2]]
  for _, range in ipairs(source.ranges) do
    local size = zcount(zkind, key, range)
    if cursor < skipped + size then
      local from = cursor - skipped
      local members
      if zkind == 'lex' then
        members = redis.call('ZRANGEBYLEX', key, range[1], range[2], 'LIMIT', from, count - #ids)
      else
        members = redis.call('ZRANGEBYSCORE', key, range[1], range[2], 'LIMIT', from, count - #ids)
      end
      for _, member in ipairs(members) do ids[#ids + 1] = member_id(zkind, member) end
      cursor = cursor + #members
      if #ids >= count then
        local total = 0
        for _, r in ipairs(source.ranges) do total = total + zcount(zkind, key, r) end
        return ids, cursor < total and cursor or false
      end
    end
    skipped = skipped + size
  end
  return ids, false
end

-- Conditions ------------------------------------------------------------------------
local function satisfies(value, family, op, values)
  if op == 'isnull' then return (value == nil) == (values[1] == true or values[1] == 1) end
  if not value then return false end
  if op == 'startswith' then return string.sub(value, 1, #values[1]) == values[1] end
  if op == 'eq' or op == 'in' then
    for _, expected in ipairs(values) do
      if compare(family, value, expected) == 0 then return true end
    end
    return false
  end
  local c = compare(family, value, values[1])
  if op == 'gt' then return c > 0 elseif op == 'gte' then return c >= 0
  elseif op == 'lt' then return c < 0 elseif op == 'lte' then return c <= 0
  elseif op == 'range' then return c >= 0 and compare(family, value, values[2]) <= 0 end
  return false
end

-- The fields a candidate is read for: the id (to know it exists), the
-- conditions' fields and the order fields.
local read_fields, read_position = {pk_field}, {[pk_field] = 1}
local function need(field)
  if not read_position[field] then
    read_fields[#read_fields + 1] = field
    read_position[field] = #read_fields
  end
end
for _, group in ipairs(groups) do
  for _, condition in ipairs(group[2]) do need(condition[1]) end
end
for _, spec in ipairs(order) do need(spec[1]) end

-- The candidate's row {id, order values...} when it exists and matches, else nil.
local function examine(id)
  if not string.match(id, UUID_PATTERN) then return nil end
  local key = prefix .. ':' .. id
  local raw = redis.pcall('HMGET', key, unpack(read_fields))
  if raw.err then return nil, read_error(key, raw) end
  if not raw[1] then return nil end  -- a stale entry: the record is gone
  local values = {}
  for i, field in ipairs(read_fields) do values[field] = canonical(raw[i], is_envelope) end
  for _, group in ipairs(groups) do
    local all = true
    for _, condition in ipairs(group[2]) do
      if not satisfies(values[condition[1]], condition[2], condition[3], condition[4]) then
        all = false
        break
      end
    end
    if all == (group[1] == 1) then return nil end
  end
  local row = {id}
  for i, spec in ipairs(order) do row[i + 1] = values[spec[1]] or false end
  return row
end

local function row_less(a, b)
  for i, spec in ipairs(order) do
    local c = compare(spec[2], a[i + 1] or nil, b[i + 1] or nil)
    if c ~= 0 then
      if spec[3] == 1 then return c > 0 end
      return c < 0
    end
  end
  if desc then return a[1] > b[1] end
  return a[1] < b[1]
end

-- Finishing a query that fitted in one call ------------------------------------------
local function finish(rows)
  local first = offset + 1
  local last = limit >= 0 and math.min(#rows, offset + limit) or #rows
  if mode == 'count' then return {'done', math.max(0, last - first + 1)} end
  if mode == 'ids' then
    local reply = {'done', 0}
    for i = first, last do reply[#reply + 1] = rows[i][1] end
    reply[2] = #reply - 2
    return reply
  end
  local roots = {}
  for i = first, last do
    local key = prefix .. ':' .. rows[i][1]
    seen[key] = true
    local flat, err = load_record(1, rows[i][1], key, fields or nil, wanted_streams or nil)
    if err then return err end
    if flat then roots[#roots + 1] = flat end
  end
  for _, flat in ipairs(roots) do follow_pointers(1, flat, 0) end
  local err = load_pointers()
  if err then return err end
  local reply = {'done', #roots}
  for _, record in ipairs(records) do reply[#reply + 1] = record end
  return reply
end

local function page(rows, next_cursor)
  local reply = {'page', next_cursor or false}
  for _, row in ipairs(rows) do reply[#reply + 1] = row end
  return reply
end

-- Strategies --------------------------------------------------------------------------
-- gather: examine the candidates of the smallest source, then order in Lua.
local function gather(source, source_at, cursor, first_call)
  local rows = {}
  local ids, next_cursor = candidates(source, cursor, budget)
  local seen_ids = {}
  for _, id in ipairs(ids) do
    if not seen_ids[id] then
      seen_ids[id] = true
      local row, err = examine(id)
      if err then return err end
      if row then rows[#rows + 1] = row end
    end
  end
  if first_call and not next_cursor then
    if #order > 0 then table.sort(rows, row_less) end
    return finish(rows)
  end
  return page(rows, next_cursor and {'gather', source_at, next_cursor} or false)
end

-- stream: walk the index of the order field in order, nulls first (ascending)
-- or last (descending), until enough rows match.
local function stream_walk(phase, position, first_call)
  local key, nulls = KEYS[stream[1]], KEYS[stream[3]]
  local wanted = limit >= 0 and offset + limit or nil
  local rows, examined = {}, 0
  local phases = desc and {'index', 'nulls'} or {'nulls', 'index'}
  local phase_at = phase == phases[1] and 1 or 2
  while phase_at <= 2 do
    local current = phases[phase_at]
    local ids = {}
    if current == 'nulls' then
      if position == 0 then
        ids = redis.call('SMEMBERS', nulls)
        table.sort(ids)
        if desc then
          local reversed = {}
          for i = #ids, 1, -1 do reversed[#reversed + 1] = ids[i] end
          ids = reversed
        end
      end
    else
      local window = math.min(budget - examined, 500)
      if window <= 0 then return page(rows, {'stream', current, position}) end
      local members
      if desc then
        members = redis.call('ZREVRANGE', key, position, position + window - 1)
      else
        members = redis.call('ZRANGE', key, position, position + window - 1)
      end
      for _, member in ipairs(members) do ids[#ids + 1] = member_id(stream[2], member) end
    end
    for _, id in ipairs(ids) do
      local row, err = examine(id)
      if err then return err end
      if row then rows[#rows + 1] = row end
    end
    examined = examined + #ids
    if current == 'index' and #ids > 0 then
      position = position + #ids
    else
      phase_at, position = phase_at + 1, 0
    end
    if wanted and #rows >= wanted then
      if first_call then return finish(rows) end
      return page(rows, false)
    end
    if examined >= budget and phase_at <= 2 then
      return page(rows, {'stream', phases[phase_at], position})
    end
  end
  if first_call then return finish(rows) end
  return page(rows, false)
end

local err = nil
local ids_type = redis.call('TYPE', KEYS[1])['ok']
if ids_type ~= 'set' and ids_type ~= 'none' then
  return read_error(KEYS[1], {err = ids_type})
end

if resume then
  if resume[1] == 'stream' then return stream_walk(resume[2], resume[3], false) end
  local source = resume[2] == 0 and ALL or sources[resume[2]]
  if source[1] == 'index' then estimate(source) end  -- computes its ranges
  return gather(source, resume[2], resume[3], false)
end
local source, source_at, size = choose_source()
if mode == 'count' and #groups == 0 then
  local total = redis.call('SCARD', KEYS[1])
  local last = limit >= 0 and math.min(total, offset + limit) or total
  return {'done', math.max(0, last - offset)}
end
local use_stream = stream and (source == ALL or size > budget
  or (limit >= 0 and size > 4 * (offset + limit)))
if mode == 'explain' then
  return {source_at, size, use_stream and 'stream' or 'gather'}
end
if use_stream then
  return stream_walk(desc and 'index' or 'nulls', 0, true)
end
return gather(source, source_at, 0, true)
