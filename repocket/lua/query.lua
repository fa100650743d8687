#!lua flags=no-writes
-- query: select, order, slice and hydrate the records of one model (or count them,
-- or list their ids), in calls of bounded work, never with KEYS.
--
-- KEYS[1]         the model's id set                      repocket:<ns>:<Class>:ids
-- KEYS[2 .. ]     the index keys the plan names (sorted sets, null sets, unique hashes)
-- ARGV[1]  msgpack read schema (_hydrate.lua); model 1 is the queried model
-- ARGV[2]  how many Pointer levels to load
-- ARGV[3]  the model's key prefix                          repocket:<ns>:<Class>
-- ARGV[4]  msgpack plan, a map:
--   envelope (bool), pk (the id field),
--   defaults {field = canonical value} a record without the field reads as (Python's
--            default for it); a field not listed reads as None
--   sources  candidate sets the script may start from; it takes the smallest
--            (query/_sources.lua), each with its condition {group, i}, its field, and
--            exact=true when the set alone decides that condition
--   groups   {{negate (bool), {{field, family, op, values}, ...}}, ...}: ANDed; a
--            negated group drops the records that match all its conditions
--   order    {{field, family, desc (bool)}, ...}; ties by id, in the first field's direction
--   walk     {index key, 'score'|'lex', null set key or false, exact_below} when order is
--            one indexed field, else false; scores s with |s| < exact_below (-1: any) are
--            exact, so runs of equal score need no re-read
--   offset, limit (-1: none), mode ('records'|'ids'|'count'|'explain'),
--   fields   hash fields to load (the id first), or false for all
--   row_fields  with fields false: every hash field the caller reads, the id first; the
--            records are then read by position (_hydrate's load_positional), or false
--   streams  set of ByteStream names to load, or false for all
--   budget   how many candidates one call may examine (ids/count take 4x as many
--            candidates that need no read)
--   resume   false, or the cursor of the previous page
--   deadlines  KEYS index of the model's deadlines (lib/expiry): a record past its
--            deadline reads as absent (a ZSCORE per candidate, only while some
--            deadline has passed and no write has swept it yet)
--   (ops: eq, in, gt, gte, lt, lte, range, startswith, endswith, contains, icontains,
--   iexact, isnull; values are canonical)
--
-- Reply: `work` is {candidates examined, commands run} by this call (QuerySet.work()):
--   {'done', work, n, records (_hydrate.lua; the n selected ones first, by position with
--    row_fields: {value..., stream value..., id, 1})}                      mode 'records'
--   {'done', work, n, id...}                                               mode 'ids'
--   {'done', work, count}                                                  mode 'count'
--   when the query did not fit in one call, one page of matching rows, which the
--   caller merges, orders and slices:
--   {'page', work, next cursor or false, row...}, a cursor being
--   {'gather', source position, source cursor} or
--   {'walk', phase, rank, last member, found, stop score}
--   rows are {id, order value...} (gather; the id alone when unordered) or
--   {id, value, group} (walk, query/_ordering)
--   {'explain', work, chosen source position (0: the whole id set), its size, strategy}
-- Errors: REPOCKET {"code": "wrongtype", ...}

-- @include _checks
-- @include _values
-- @include lib/expiry
-- @include _hydrate
-- @include query/_conditions
-- @include query/_sources
-- @include query/_ordering

local prefix = ARGV[3]
local plan = cmsgpack.unpack(ARGV[4])
local order, mode, budget, offset = plan.order, plan.mode, plan.budget, plan.offset
local wanted = plan.limit >= 0 and offset + plan.limit or nil  -- rows needed before slicing
local ALL = {kind = 'all'}

local UNREAD = 4  -- candidates taken unread cost about a quarter of one read
local match = string.match
local examined, commands = 0, 0
local function call(...)
  commands = commands + 1
  return redis.call(...)
end
local function work() return {examined, commands} end

-- Examining candidates -------------------------------------------------------------------
local checks, read_fields = {}, {}

-- The conditions left to check per candidate, once those an exact source decided are
-- dropped; eq/in conditions get their membership set.
local function checks_for(used)
  local decided = {}
  for _, source in ipairs(used) do
    if source.exact then decided[source.condition[1] .. ':' .. source.condition[2]] = true end
  end
  local left = {}
  for g, group in ipairs(plan.groups) do
    local conditions = {}
    for i, condition in ipairs(group[2]) do
      if not decided[g .. ':' .. i] then
        if condition[3] == 'eq' or condition[3] == 'in' then
          condition.set = membership_set(condition[2], condition[4])
        end
        conditions[#conditions + 1] = condition
      end
    end
    if #conditions > 0 then left[#left + 1] = {group[1], conditions} end
  end
  return left
end

-- Sets what a candidate is read for: the id (to know it exists), the checked
-- conditions' fields and, when rows carry them, the order fields.
local function prepare(used, need_order_values)
  checks = checks_for(used)
  read_fields = {plan.pk}
  local listed = {[plan.pk] = true}
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

-- The candidate's row {id, order values...} when it exists and matches, else nil
-- (ids that are not UUIDs, written by another tool, are skipped: never key names).
local EXPIRY  -- lib/expiry's state, read at dispatch

-- Whether a candidate is past its deadline (then it reads as absent).
local function expired(id)
  if not EXPIRY or not EXPIRY.due then return false end
  commands = commands + 1
  return is_expired(EXPIRY, id)
end

local function examine(id)
  examined = examined + 1
  if not match(id, UUID_PATTERN) or expired(id) then return nil end
  local key = prefix .. ':' .. id
  commands = commands + 1
  local raw = redis.pcall('HMGET', key, unpack(read_fields))
  if raw.err then return nil, read_error(key, raw) end
  if not raw[1] then return nil end  -- a stale entry: the record is gone
  local values, defaults = {}, plan.defaults
  for i, field in ipairs(read_fields) do
    local value = canonical(raw[i], plan.envelope)
    if value == nil then value = defaults[field] end
    values[field] = value
  end
  if not passes(values, checks) then return nil end
  local row = {id}
  for i, spec in ipairs(order) do row[i + 1] = values[spec[1]] or false end
  return row
end

-- A candidate taken without reading it (an index or the id set vouches for it); its
-- row is the id alone.
local function take(id)
  examined = examined + 1
  if match(id, UUID_PATTERN) and not expired(id) then return id end
  return nil
end

-- Answering -------------------------------------------------------------------------------
-- A row is {id, order values...}, or the id alone when there is nothing to order by.
local function row_id(row)
  if type(row) == 'table' then return row[1] end
  return row
end

-- The reply of a query that fitted in one call, from its rows in order.
local function finish(rows)
  local first = offset + 1
  local last = wanted and math.min(#rows, wanted) or #rows
  if mode == 'count' then return {'done', work(), math.max(0, last - first + 1)} end
  if mode == 'ids' then
    local reply = {'done', work(), 0}
    for i = first, last do reply[#reply + 1] = row_id(rows[i]) end
    reply[3] = #reply - 3
    return reply
  end
  -- records read by position (plan.row_fields: all their fields) when not only some
  local row_fields, pointer_at = plan.row_fields or nil, {}
  if row_fields then
    local position = {}
    for i, name in ipairs(row_fields) do position[name] = i end
    for p, pointer in ipairs(schema[1][4]) do pointer_at[p] = position[pointer[1]] or 0 end
  end
  local roots, whole = {}, {}  -- per root loaded: its values or flat list; which one
  for i = first, last do
    local id = row_id(rows[i])
    local key = prefix .. ':' .. id
    seen[key] = true
    local loaded, is_flat, err
    if row_fields then
      loaded, is_flat, err = load_positional(id, key, row_fields)
    else
      loaded, err = load_record(1, id, key, plan.fields or nil, plan.streams or nil)
      is_flat = true
    end
    if err then return err end
    if loaded then
      local n = #roots + 1
      roots[n], whole[n] = loaded, is_flat
    else
      records[#records] = nil
    end
  end
  for i, loaded in ipairs(roots) do
    if whole[i] then follow_pointers(1, loaded, 0) else follow_positional(loaded, pointer_at, 0) end
  end
  local err = load_pointers()
  if err then return err end
  local reply = {'done', work(), #roots}
  for _, record in ipairs(records) do reply[#reply + 1] = record end
  return reply
end

local function page(rows, next_cursor)
  local reply = {'page', work(), next_cursor or false}
  for _, row in ipairs(rows) do reply[#reply + 1] = row end
  return reply
end

-- Gathering: examine the candidates of the smallest source, then order in Lua ------------
local function gather(source, source_at, cursor, first_call)
  -- Candidates that need no read are taken as they are (indexes are kept in step
  -- with the records by every write), four times as many per call when no record
  -- is loaded; ids a caller gave are always read, except to load them.
  local trusted = source.kind ~= 'ids' or (mode == 'records' and not wanted)
  local read_them = #checks > 0 or #order > 0 or not trusted
  local many = not read_them and mode ~= 'records'
  local enough = #order == 0 and wanted or nil  -- unordered: any `wanted` rows will do
  local count = (many and source.kind ~= 'unique') and UNREAD * budget or budget  -- HGET each
  local ids, next_cursor = source_page(call, source, cursor, count, KEYS[1])
  local rows = {}
  if not read_them and not enough and source.kind == 'index' and #source.ranges == 1 then
    -- the common filter: one range of a sorted set lists each id once, taken unread
    local due = EXPIRY and EXPIRY.due
    for _, id in ipairs(ids) do
      examined = examined + 1
      if match(id, UUID_PATTERN) and not (due and expired(id)) then rows[#rows + 1] = id end
    end
    ids = {}
  end
  local listed = {}  -- an 'in' over several values may list an id twice
  for _, id in ipairs(ids) do
    if enough and #rows >= enough then break end
    if not listed[id] then
      listed[id] = true
      local row, err
      if read_them then row, err = examine(id) else row = take(id) end
      if err then return err end
      if row then rows[#rows + 1] = row end
    end
  end
  local complete = not next_cursor or (enough and #rows >= enough)
  if first_call and complete then
    if #order > 0 then table.sort(rows, row_less_for(order)) end
    return finish(rows)
  end
  return page(rows, not complete and {'gather', source_at, next_cursor} or false)
end

-- Walking: the order field's index in order (None first ascending, last descending) ---
local walk = plan.walk
local desc = order[1] ~= nil and order[1][3]

-- The walk's range and the sources it covers: the order field's own one-range conditions.
local function walk_sources()
  local used, ranges = {}, {}
  for _, source in ipairs(plan.sources) do
    if source.kind == 'index' and source.field == order[1][1] then
      source.ranges = source.ranges or index_ranges(source)
      if source.ranges and #source.ranges == 1 then
        used[#used + 1] = source
        ranges[#ranges + 1] = source.ranges[1]
      end
    end
  end
  return used, walk_range(walk[2], ranges)
end

-- Whether every score within the walked range {min, max} is exact (exact_score): a
-- range bounded on both sides within the exact scores.
local function exact_range(range)
  local below = walk[4]
  if below < 0 then return true end
  local low, high = parse_bound('score', range[1]), parse_bound('score', range[2])
  return math.abs(low) < below and math.abs(high) < below
end

-- Whether a score is exact: the entries sharing it share their value.
local function exact_score(score)
  local below = walk[4]
  if below < 0 then return true end
  return math.abs(tonumber(score)) < below
end

-- A window's ZRANGE reply as two lists in walk order (reversed with `reverse`): the
-- members, and their scores (nil for a lex index, whose reply has none). Lists, not a
-- table per entry: a table constructor costs as much as a command.
local function window_lists(reply, reverse, scored)
  local step = scored and 2 or 1
  local members, scores = {}, step == 2 and {} or nil
  local n = #reply / step
  for j = 1, n do
    local i = (reverse and n - j or j - 1) * step + 1
    members[j] = reply[i]
    if scores then scores[j] = reply[i + 1] end
  end
  return members, scores
end

-- One window of the index walk from `rank` (the next rank to read, in walk order):
-- its members and scores (window_lists) and the next rank.
local function index_window(key, first, last, rank, size, scored)
  local low, high
  if desc then low, high = math.max(first, rank - size + 1), rank
  else low, high = rank, math.min(last, rank + size - 1) end
  if low > high then return {}, nil, rank end
  local reply
  if scored then reply = call('ZRANGE', key, low, high, 'WITHSCORES')
  else reply = call('ZRANGE', key, low, high) end
  local members, scores = window_lists(reply, desc, scored)
  if desc then return members, scores, low - 1 end
  return members, scores, high + 1
end

-- The first `size` entries of the walked range in walk order, as index_window gives them.
local function head_window(key, range, size, scored)
  return window_lists(range_head(call, walk[2], key, range, size, desc, scored), false, scored)
end

-- Rows of a walk as a page carries them: {id, value, group}, an id alone as {id, false, false}.
local function walk_rows(rows)
  for i, row in ipairs(rows) do
    if type(row) ~= 'table' then rows[i] = {row, false, false} end
  end
  return rows
end

-- Walks from cursor {phase, rank, last member, found, stop score}; stops once `wanted` rows are
-- found and the run of the last one's score is over (when scores are inexact),
-- or when the budget is spent.
local function walk_index(cursor, first_call, used, range)
  local key, nulls = KEYS[walk[1]], walk[3] and KEYS[walk[3]]
  local phases = desc and {'index', 'nulls'} or {'nulls', 'index'}
  if #used > 0 or not nulls then phases = {'index'} end  -- a bounded walk: no None
  local phase_at = 1
  if cursor[1] and cursor[1] ~= phases[1] then phase_at = 2 end
  local rank, last, found = cursor[2] or nil, cursor[3] or nil, cursor[4] or 0
  local rows, stop_score = {}, cursor[5] and tonumber(cursor[5]) or nil
  local first, final  -- the ranks of the walked range, counted once needed
  local function interval()
    if not first then first, final = rank_interval(call, walk[2], key, range) end
  end
  -- Rows in walk order are in the query's order but for the records without a value
  -- (met in set order), runs of an inexact score, and rows ordered by a stored value
  -- read (an exact run ties by id, as the sorted set orders equal scores); only then are
  -- they sorted. A row taken with nothing to order it by is its id alone.
  local unordered = false
  local function add(id, score, group)
    local row, err
    local inexact = score and not exact_score(score)
    if #checks > 0 or inexact then row, err = examine(id)
    else row = take(id) end
    if err then return err end
    if row then
      local value = type(row) == 'table' and row[2] or false
      if value or group then
        rows[#rows + 1] = {row_id(row), value, group}
        unordered = unordered or value or group == 'null' or inexact
      else
        rows[#rows + 1] = row_id(row)
      end
      found = found + 1
    end
  end
  -- Exact scores need not be read: the walk's order is the query's (see above).
  local scored = walk[2] ~= 'lex' and not exact_range(range)
  while phase_at <= #phases do
    local done_phase = false
    if phases[phase_at] == 'nulls' then
      local reply = call('SSCAN', nulls, rank or '0', 'COUNT', budget)
      for _, id in ipairs(reply[2]) do
        local err = add(id, false, 'null')
        if err then return err end
      end
      rank = reply[1]
      done_phase = rank == '0'
    else
      -- candidates taken unread rarely fail: one past the rows still needed shows the
      -- walk can stop; candidates read may fail their checks: twice as many
      local need = (wanted or 256) - found
      local size = math.max(16, math.min(budget - examined, #checks == 0 and need + 1 or 2 * need))
      local members, scores, from_head
      if not rank and not last then
        -- the range from its start, by score or value: ranks counted only if it goes on
        members, scores = head_window(key, range, size, scored)
        from_head = true
      else
        interval()
        if last then
          local at = call('ZRANK', key, last)
          if at then rank = desc and at - 1 or at + 1 end
        end
        rank = rank or (desc and final or first)
        members, scores, rank = index_window(key, first, final, rank, size, scored)
      end
      for j, member in ipairs(members) do
        local score = scores and scores[j] or false
        if wanted and found >= wanted then
          if not (stop_score and score and tonumber(score) == stop_score) then
            done_phase, phase_at = true, #phases  -- enough rows: no later phase either
            break
          end
        end
        local err = add(id_of(walk[2], member), score, score or false)
        if err then return err end
        last = member
        if wanted and found >= wanted and not stop_score and score
            and not exact_score(score) then
          stop_score = tonumber(score)
        end
      end
      if not done_phase and from_head then
        done_phase = #members < size  -- the whole range was read
        if not done_phase then
          interval()
          rank = desc and final - size or first + size
        end
      end
      done_phase = done_phase or #members == 0 or rank < first or rank > final
    end
    if done_phase then
      if wanted and found >= wanted then phase_at = #phases end
      phase_at, rank, last = phase_at + 1, nil, nil
    end
    if phase_at <= #phases and examined + commands >= budget then
      return page(walk_rows(rows), {'walk', phases[phase_at], rank or false, last or false, found,
                         stop_score and format_score(stop_score) or false})
    end
  end
  if first_call then
    if unordered then sort_runs(walk_rows(rows), row_less_for(order)) end
    return finish(rows)
  end
  return page(walk_rows(rows), false)
end

-- Dispatch ---------------------------------------------------------------------------------
local ids_type = redis.call('TYPE', KEYS[1])['ok']
if ids_type ~= 'set' and ids_type ~= 'none' then
  return read_error(KEYS[1], {err = ids_type})
end
local expiry_err
EXPIRY, expiry_err = expiry_state(KEYS[plan.deadlines], false)
if expiry_err then return expiry_err end

local resume = plan.resume
if resume and resume[1] == 'walk' then
  local used, range = walk_sources()
  prepare(used, walk[4] >= 0)  -- a run of an inexact score is ordered by value
  return walk_index({resume[2], resume[3], resume[4], resume[5], resume[6]}, false, used, range)
end
if resume then
  local source = resume[2] == 0 and ALL or plan.sources[resume[2]]
  if source.kind == 'index' then source.ranges = index_ranges(source) end
  prepare({source}, #order > 0)
  return gather(source, resume[2], resume[3] or nil, false)
end

-- Walk the order field's index when the smallest source is that index's own range
-- (read in order, nothing to sort, nothing read for exact scores), or when the
-- smallest source is too big to gather and sort in one call.
local function walks_itself(chosen)
  return chosen.kind == 'index' and chosen.field == order[1][1] and #chosen.ranges == 1
end

-- Whether the choice of source is made without counting: one usable source and no walk
-- (it is gathered, whatever its size), or only sources the walk covers (walked,
-- whatever their sizes). Counting is what explain() reports, so it always counts.
local function choice_is_free()
  local sources = plan.sources
  if mode == 'explain' or #sources == 0 then return false end
  for _, candidate in ipairs(sources) do
    if candidate.kind == 'index' then
      candidate.ranges = candidate.ranges or index_ranges(candidate)
      if not candidate.ranges then return false end  -- unusable: counted as before
    end
  end
  if walk then
    for _, candidate in ipairs(sources) do
      if not walks_itself(candidate) then return false end
    end
    return true
  end
  return #sources == 1
end

if choice_is_free() then
  if walk then
    local used, range = walk_sources()
    prepare(used, walk[4] >= 0)
    return walk_index({}, true, used, range)
  end
  prepare({plan.sources[1]}, #order > 0)
  return gather(plan.sources[1], 1, nil, true)
end

-- the smallest usable source, its position (0: the whole id set) and size
local source, source_at, size = ALL, 0, nil
for i, candidate in ipairs(plan.sources) do
  local count = source_size(call, candidate, KEYS[1])
  if count and (size == nil or count < size) then source, source_at, size = candidate, i, count end
end
if source == ALL then size = source_size(call, ALL, KEYS[1]) end
local use_walk = walk and (source == ALL or size > budget or walks_itself(source)
  or (wanted ~= nil and size > 4 * wanted))
if mode == 'explain' then
  return {'explain', work(), source_at, size, use_walk and 'stream' or 'gather'}
end
if use_walk then
  local used, range = walk_sources()
  prepare(used, walk[4] >= 0)
  return walk_index({}, true, used, range)
end
prepare({source}, #order > 0)
return gather(source, source_at, nil, true)
