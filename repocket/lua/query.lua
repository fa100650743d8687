#!lua flags=no-writes
-- query: select, order, slice and hydrate the records of one model (or count
-- them, or list their ids), never with KEYS.
--
-- KEYS[1]         the model's id set                      repocket:<ns>:<Class>:ids
-- KEYS[2 .. ]     the index keys the plan names (sorted sets, null sets, unique hashes)
-- ARGV[1]  msgpack read schema (_hydrate.lua); model 1 is the queried model
-- ARGV[2]  how many Pointer levels to load
-- ARGV[3]  the model's key prefix                          repocket:<ns>:<Class>
-- ARGV[4]  msgpack plan, a map:
--   envelope (bool), pk (the id field),
--   sources  candidate sets the script may start from; it takes the smallest:
--            {kind='ids', values} | {kind='unique', key, values} | {kind='null', key, ...}
--            | {kind='index', key, index ('score'|'lex'), family, op, values, ...}
--            with its condition {group, i} and field, and exact=true when the set alone
--            decides that condition
--   groups   {{negate (bool), {{field, family, op, values}, ...}}, ...}: ANDed; a
--            negated group drops the records that match all its conditions
--   order    {{field, family, desc (bool)}, ...}; ties by id, in the first field's direction
--   stream   {key, index, null set key} when order is one indexed field, else false
--   offset, limit (-1: none), mode ('records'|'ids'|'count'|'explain'),
--   fields   hash fields to load (the id first), or false for all
--   streams  set of ByteStream names to load, or false for all
--   budget   how many candidates one call may examine
--   resume   false, or the cursor of the previous page
--   (ops: eq, in, gt, gte, lt, lte, range, startswith, isnull; values are canonical)
--
-- Reply: when the whole query fitted in the budget,
--   {'done', n, records (_hydrate.lua; the n selected ones first)}   mode 'records'
--   {'done', n, id...}                                                 mode 'ids'
--   {'done', count}                                                    mode 'count'
-- otherwise one page of matching rows, which the caller merges, orders and slices:
--   {'page', next cursor or false, {id, order value...}...}, a cursor being
--   {'gather', source position, position} or {'stream', phase, position}
-- mode 'explain': {chosen source position (0: the whole id set), its size, strategy}
-- Errors: REPOCKET {"code": "wrongtype", ...}

-- @include _values
-- @include _hydrate

local prefix = ARGV[3]
local plan = cmsgpack.unpack(ARGV[4])
local is_envelope, pk_field = plan.envelope, plan.pk
local sources, groups, order, stream = plan.sources, plan.groups, plan.order, plan.stream
local offset, limit, mode, budget = plan.offset, plan.limit, plan.mode, plan.budget
local wanted = limit >= 0 and offset + limit or nil  -- rows needed before slicing
local desc = order[1] ~= nil and order[1][3]

-- Candidate sources ----------------------------------------------------------------------
local esc = lex_escape

local function next_prefix(text)
  local trimmed = string.gsub(text, '\255+$', '')
  if trimmed == '' then return '+' end
  return '(' .. string.sub(trimmed, 1, -2) .. string.char(string.byte(trimmed, -1) + 1)
end

-- {min, max} pairs for ZRANGEBYSCORE / ZRANGEBYLEX. For an exact source they hold
-- exactly the entries satisfying the condition; otherwise a superset (scores are
-- doubles), and every candidate is checked against the stored value.
local function index_ranges(source)
  local kind, op, values = source.index, source.op, source.values
  local ranges = {}
  local function bound(value)
    if kind == 'lex' then return esc(value) end
    local score = score_of(source.family, value)
    return score and format_score(score) or nil
  end
  local function add(low, high) ranges[#ranges + 1] = {low, high} end
  if op == 'eq' or op == 'in' then
    local seen_bound = {}  -- equal values spelled differently (0.0, -0.0) share one range
    for _, value in ipairs(values) do
      local b = bound(value)
      if b == nil then return nil end
      local same = kind == 'lex' and b or tonumber(b)
      if not seen_bound[same] then
        seen_bound[same] = true
        if kind == 'lex' then add('[' .. b .. '\0\0', '(' .. b .. '\0\1') else add(b, b) end
      end
    end
  elseif op == 'startswith' and kind == 'lex' then
    add('[' .. esc(values[1]), next_prefix(esc(values[1])))
  else
    local low = (op == 'gt' or op == 'gte' or op == 'range') and bound(values[1]) or nil
    local high = ((op == 'lt' or op == 'lte') and bound(values[1]))
      or (op == 'range' and bound(values[2])) or nil
    if kind == 'lex' then
      low = low and ('[' .. low .. (op == 'gt' and '\0\1' or '\0\0')) or '-'
      high = high and ('(' .. high .. (op == 'lt' and '\0\0' or '\0\1')) or '+'
    else
      local open = source.exact and '(' or ''
      low = low and ((op == 'gt' and open or '') .. low) or '-inf'
      high = high and ((op == 'lt' and open or '') .. high) or '+inf'
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
  if source.kind == 'ids' then return #source.values end
  if source.kind == 'unique' then return #source.values end
  if source.kind == 'null' then return redis.call('SCARD', KEYS[source.key]) end
  source.ranges = index_ranges(source)
  if not source.ranges then return nil end
  local total = 0
  for _, range in ipairs(source.ranges) do
    total = total + zcount(source.index, KEYS[source.key], range)
  end
  return total
end

local ALL = {kind = 'all'}

-- The smallest source, its position in `sources` (0: the whole id set) and size.
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
  if kind == 'lex' then return lex_member_id(member) end
  return member
end

-- Up to `count` candidate ids of `source` from `cursor`, and the next cursor
-- (false at the end).
local function candidates(source, cursor, count)
  local kind = source.kind
  if kind == 'ids' then
    local ids = {}
    for i = cursor + 1, math.min(cursor + count, #source.values) do
      ids[#ids + 1] = source.values[i]
    end
    return ids, (cursor + count < #source.values) and cursor + count or false
  end
  if kind == 'unique' then
    local ids = {}
    for _, value in ipairs(source.values) do
      local owner = redis.call('HGET', KEYS[source.key], normal_form(source.family, value))
      if owner then ids[#ids + 1] = owner end
    end
    return ids, false
  end
  if kind == 'all' or kind == 'null' then
    -- SSCAN cursors stay strings: they may exceed what a Lua number holds exactly
    local key = kind == 'all' and KEYS[1] or KEYS[source.key]
    local reply = redis.call('SSCAN', key, cursor, 'COUNT', count)
    return reply[2], reply[1] ~= '0' and reply[1] or false
  end
  -- index ranges: the cursor counts entries across the ranges in turn
  local ids, skipped, total = {}, 0, 0
  local zkind, key = source.index, KEYS[source.key]
  for _, range in ipairs(source.ranges) do
    local size = zcount(zkind, key, range)
    total = total + size
    if #ids < count and cursor < skipped + size then
      local from = cursor - skipped
      local command = zkind == 'lex' and 'ZRANGEBYLEX' or 'ZRANGEBYSCORE'
      local members = redis.call(command, key, range[1], range[2], 'LIMIT', from, count - #ids)
      for _, member in ipairs(members) do ids[#ids + 1] = member_id(zkind, member) end
      cursor = cursor + #members
    end
    skipped = skipped + size
  end
  return ids, cursor < total and cursor or false
end

-- Conditions ---------------------------------------------------------------------------------
local function satisfies(value, family, op, values)
  if op == 'isnull' then return (value == nil) == values[1] end
  if not value then return false end
  local function is_nan(v) return family == 'float' and tonumber(v) ~= tonumber(v) end
  if is_nan(value) then return false end  -- NaN equals nothing, orders with nothing
  if op == 'startswith' then return string.sub(value, 1, #values[1]) == values[1] end
  if op == 'eq' or op == 'in' then
    for _, expected in ipairs(values) do
      if not is_nan(expected) and compare(family, value, expected) == 0 then return true end
    end
    return false
  end
  if is_nan(values[1]) or is_nan(values[2]) then return false end
  local c = compare(family, value, values[1])
  if op == 'gt' then return c > 0 elseif op == 'gte' then return c >= 0
  elseif op == 'lt' then return c < 0 elseif op == 'lte' then return c <= 0
  elseif op == 'range' then return c >= 0 and compare(family, value, values[2]) <= 0 end
  return false
end

-- The conditions left to check per candidate, given the sources whose
-- entries are all that is examined: an exact one has decided its condition.
local function checks_for(used)
  local decided = {}
  for _, source in ipairs(used) do
    if source.exact then decided[source.condition[1] .. ':' .. source.condition[2]] = true end
  end
  local checks = {}
  for g, group in ipairs(groups) do
    local conditions = {}
    for i, condition in ipairs(group[2]) do
      if not decided[g .. ':' .. i] then conditions[#conditions + 1] = condition end
    end
    if #conditions > 0 then checks[#checks + 1] = {group[1], conditions} end
  end
  return checks
end

local checks, read_fields = {}, {}

-- The fields a candidate is read for: the id (to know it exists), the
-- checked conditions' fields and the order fields.
local function prepare(used, need_order_values)
  checks = checks_for(used)
  read_fields = {pk_field}
  local listed = {[pk_field] = true}
  local function need(field)
    if not listed[field] then
      listed[field] = true
      read_fields[#read_fields + 1] = field
    end
  end
  for _, group in ipairs(checks) do
    for _, condition in ipairs(group[2]) do need(condition[1]) end
  end
  if need_order_values then
    for _, spec in ipairs(order) do need(spec[1]) end
  end
end

-- The candidate's row {id, order values...} when it exists and matches, else nil.
local function examine(id)
  if not string.match(id, UUID_PATTERN) then return nil end
  local key = prefix .. ':' .. id
  local raw = redis.pcall('HMGET', key, unpack(read_fields))
  if raw.err then return nil, read_error(key, raw) end
  if not raw[1] then return nil end  -- a stale entry: the record is gone
  local values = {}
  for i, field in ipairs(read_fields) do values[field] = canonical(raw[i], is_envelope) end
  for _, group in ipairs(checks) do
    local all = true
    for _, condition in ipairs(group[2]) do
      if not satisfies(values[condition[1]], condition[2], condition[3], condition[4]) then
        all = false
        break
      end
    end
    if all == (group[1] == true) then return nil end
  end
  local row = {id}
  for i, spec in ipairs(order) do row[i + 1] = values[spec[1]] or false end
  return row
end

local function row_less(a, b)
  for i, spec in ipairs(order) do
    local c = compare(spec[2], a[i + 1] or nil, b[i + 1] or nil)
    if c ~= 0 then
      if spec[3] then return c > 0 end
      return c < 0
    end
  end
  if desc then return a[1] > b[1] end
  return a[1] < b[1]
end

-- Answering ----------------------------------------------------------------------------------
-- The reply of a query that fitted in one call, from its rows in order.
local function finish(rows)
  local first = offset + 1
  local last = wanted and math.min(#rows, wanted) or #rows
  if mode == 'count' then return {'done', math.max(0, last - first + 1)} end
  if mode == 'ids' then
    local reply = {'done', 0}
    for i = first, last do reply[#reply + 1] = rows[i][1] end
    reply[2] = #reply - 2
    return reply
  end
  local roots = {}
  for i = first, last do
    local id = rows[i][1]
    if string.match(id, UUID_PATTERN) then
      local key = prefix .. ':' .. id
      seen[key] = true
      local flat, err = load_record(1, id, key, plan.fields or nil, plan.streams or nil)
      if err then return err end
      if flat then roots[#roots + 1] = flat else records[#records] = nil end
    end
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

-- Examines `ids` into `rows`; stops early once `enough` rows match.
local function collect(ids, rows, examine_them, enough)
  for _, id in ipairs(ids) do
    if enough and #rows >= enough then return nil end
    if examine_them then
      local row, err = examine(id)
      if err then return err end
      if row then rows[#rows + 1] = row end
    else
      rows[#rows + 1] = {id}
    end
  end
  return nil
end

-- gather: examine the candidates of the smallest source, then order in Lua.
local function gather(source, source_at, cursor, first_call)
  -- Candidates with nothing left to check are taken as they are (the index is kept
  -- in step with the records by every write), ten times as many per call.
  local examine_them = #checks > 0 or #order > 0
  local enough = #order == 0 and wanted or nil  -- unordered: any `wanted` rows will do
  local ids, next_cursor = candidates(source, cursor, examine_them and budget or 10 * budget)
  local deduped, listed = {}, {}  -- an 'in' over several values may list an id twice
  for _, id in ipairs(ids) do
    if not listed[id] then
      listed[id] = true
      deduped[#deduped + 1] = id
    end
  end
  local rows = {}
  local err = collect(deduped, rows, examine_them, enough)
  if err then return err end
  local complete = not next_cursor or (enough and #rows >= enough)
  if first_call and complete then
    if #order > 0 then table.sort(rows, row_less) end
    return finish(rows)
  end
  return page(rows, not complete and {'gather', source_at, next_cursor} or false)
end

-- The walk of the order field's index: the range its own conditions allow
-- (each an index range; the walk covers their intersection) and those sources.
local walk_low, walk_high, walk_sources = nil, nil, {}

local function parse_bound(kind, bound)
  if kind == 'lex' then
    if bound == '-' or bound == '+' then return bound, false end
    return string.sub(bound, 2), string.sub(bound, 1, 1) == '('
  end
  local open = string.sub(bound, 1, 1) == '('
  local text = open and string.sub(bound, 2) or bound
  local value = text == '-inf' and -math.huge or (text == '+inf' and math.huge or tonumber(text))
  return value, open
end

-- -1/0/1 comparing two parsed bounds' values ('-' and '+' are the lex ends).
local function bound_cmp(kind, a, b)
  if kind ~= 'lex' then return a < b and -1 or (a > b and 1 or 0) end
  if a == b then return 0 end
  if a == '-' or b == '+' then return -1 end
  if a == '+' or b == '-' then return 1 end
  return bytes_cmp(a, b)
end

local function plan_walk()
  local kind = stream[2]
  local low, high = kind == 'lex' and '-' or '-inf', kind == 'lex' and '+' or '+inf'
  for _, source in ipairs(sources) do
    if source.kind == 'index' and source.field == order[1][1] and estimate(source)
        and #source.ranges == 1 then
      local range = source.ranges[1]
      local lv, lo = parse_bound(kind, range[1])
      local cv, co = parse_bound(kind, low)
      local c = bound_cmp(kind, lv, cv)
      if c > 0 or (c == 0 and lo and not co) then low = range[1] end
      local hv, ho = parse_bound(kind, range[2])
      cv, co = parse_bound(kind, high)
      c = bound_cmp(kind, hv, cv)
      if c < 0 or (c == 0 and ho and not co) then high = range[2] end
      walk_sources[#walk_sources + 1] = source
    end
  end
  walk_low, walk_high = low, high
end

-- Up to `window` ids of the walk from `position`, in order. Sorted-set scores
-- are doubles: Integers beyond 2^53, long Decimals and far datetimes may share
-- a score, so such runs are extended past the window and sorted by value.
local function index_window(key, position, window)
  local lex = stream[2] == 'lex'
  local command = (desc and 'ZREV' or 'Z') .. (lex and 'RANGEBYLEX' or 'RANGEBYSCORE')
  local from, to = walk_low, walk_high
  if desc then from, to = walk_high, walk_low end
  local family = order[1][2]
  if family ~= 'exact' and family ~= 'datetime' then
    local ids = {}
    for _, member in ipairs(redis.call(command, key, from, to, 'LIMIT', position, window)) do
      ids[#ids + 1] = member_id(stream[2], member)
    end
    return ids
  end
  local reply = redis.call(command, key, from, to, 'WITHSCORES', 'LIMIT', position, window)
  local ids, scores = {}, {}
  for i = 1, #reply, 2 do
    ids[#ids + 1], scores[#scores + 1] = reply[i], reply[i + 1]
  end
  while #ids > 0 do  -- extend while the next entries share the last score
    local more = redis.call(command, key, from, to, 'WITHSCORES', 'LIMIT', position + #ids, 16)
    local added = 0
    for i = 1, #more, 2 do
      if more[i + 1] ~= scores[#scores] then break end
      ids[#ids + 1], scores[#scores + 1] = more[i], more[i + 1]
      added = added + 1
    end
    if added < 16 then break end
  end
  local field = order[1][1]
  local run_start = 1
  for i = 2, #ids + 1 do
    if i > #ids or scores[i] ~= scores[run_start] then
      if i - run_start > 1 then
        local run = {}
        for j = run_start, i - 1 do
          local raw = redis.call('HGET', prefix .. ':' .. ids[j], field)
          run[#run + 1] = {ids[j], canonical(raw, is_envelope) or false}
        end
        table.sort(run, function(a, b)
          local c = compare(family, a[2] or nil, b[2] or nil)
          if c ~= 0 then if desc then return c > 0 end return c < 0 end
          if desc then return a[1] > b[1] end
          return a[1] < b[1]
        end)
        for j, entry in ipairs(run) do ids[run_start + j - 1] = entry[1] end
      end
      run_start = i
    end
  end
  return ids
end

-- stream: walk the order field's index in order (nulls first ascending, last
-- descending) until `wanted` rows match.
local function stream_walk(phase, position, first_call)
  local key, nulls = KEYS[stream[1]], KEYS[stream[3]]
  local rows, examined = {}, 0
  local examine_them = #checks > 0
  local phases = desc and {'index', 'nulls'} or {'nulls', 'index'}
  if #walk_sources > 0 then phases = {'index', 'none'} end  -- a bounded walk: no None
  local phase_at = (phase == nil or phase == phases[1]) and 1 or 2
  while phase_at <= 2 do
    local ids = {}
    if phases[phase_at] == 'index' then
      local window = math.max(16, math.min(budget - examined, 2 * ((wanted or 256) - #rows)))
      ids = index_window(key, position, window)
    elseif phases[phase_at] == 'nulls' and nulls then
      ids = redis.call('SMEMBERS', nulls)
      table.sort(ids, function(a, b) if desc then return a > b end return a < b end)
    end
    local err = collect(ids, rows, examine_them, wanted)
    if err then return err end
    examined = examined + #ids
    if phases[phase_at] == 'index' and #ids > 0 then
      position = position + #ids
    else
      phase_at, position = phase_at + 1, 0
    end
    if wanted and #rows >= wanted then break end
    if examined >= budget and phase_at <= 2 then
      return page(rows, {'stream', phases[phase_at], position})
    end
  end
  if first_call then return finish(rows) end
  return page(rows, false)
end

local ids_type = redis.call('TYPE', KEYS[1])['ok']
if ids_type ~= 'set' and ids_type ~= 'none' then
  return read_error(KEYS[1], {err = ids_type})
end

if plan.resume then
  local resume = plan.resume
  if resume[1] == 'stream' then
    plan_walk()
    prepare(walk_sources, false)
    return stream_walk(resume[2], resume[3], false)
  end
  local source = resume[2] == 0 and ALL or sources[resume[2]]
  if source.kind == 'index' then estimate(source) end  -- computes its ranges
  prepare({source}, #order > 0)
  return gather(source, resume[2], resume[3], false)
end

local source, source_at, size = choose_source()
local use_stream = stream and (source == ALL or size > budget
  or (wanted ~= nil and size > 4 * wanted))
if mode == 'explain' then return {source_at, size, use_stream and 'stream' or 'gather'} end
if use_stream then
  plan_walk()
  prepare(walk_sources, false)
else
  prepare({source}, #order > 0)
end

if not use_stream and mode == 'count' and #checks == 0 and (source == ALL or source.exact) then
  -- the id set or an exact index alone knows the count
  local last = wanted and math.min(size, wanted) or size
  return {'done', math.max(0, last - offset)}
end
if use_stream then return stream_walk(nil, 0, true) end
return gather(source, source_at, 0, true)
