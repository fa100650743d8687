-- query/_sources: the candidate sets a query can start from, their sizes, and
-- their entries one bounded page at a time. Redis is reached only through the
-- `call` argument (redis.call counting the work).
--
-- A source is {kind='ids', values} | {kind='unique', key, family, values}
--   | {kind='null', key} | {kind='index', key, index ('score'|'lex'), family, op, values}
--   | {kind='all'} (the id set, KEYS[1]).
-- Index entries are read by rank (ZRANGE start stop): a page costs O(log n + page),
-- never a walk over the entries before it, as LIMIT offset would.

local function next_prefix(text)
  local trimmed = string.gsub(text, '\255+$', '')
  if trimmed == '' then return '+' end
  return '(' .. string.sub(trimmed, 1, -2) .. string.char(string.byte(trimmed, -1) + 1)
end

-- {min, max} pairs in the range syntax of ZCOUNT / ZLEXCOUNT. For an exact source they
-- hold exactly the entries satisfying the condition; otherwise a superset (scores are
-- doubles), and every candidate is checked against the stored value. nil: no score.
local function index_ranges(source)
  local kind, op, values = source.index, source.op, source.values
  local ranges = {}
  local function bound(value)
    if kind == 'lex' then return lex_escape(value) end
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
    add('[' .. lex_escape(values[1]), next_prefix(lex_escape(values[1])))
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

-- The ranks [first, last] (0-based, inclusive; first > last when empty) of the
-- entries of sorted set `key` within `range`: two O(log n) counts.
local function rank_interval(call, kind, key, range)
  local min, max = range[1], range[2]
  local below, upto
  if kind == 'lex' then
    if min == '-' then below = 0
    else
      local inclusive = string.sub(min, 1, 1) == '['
      below = call('ZLEXCOUNT', key, '-', (inclusive and '(' or '[') .. string.sub(min, 2))
    end
    upto = call('ZLEXCOUNT', key, '-', max)
  else
    if min == '-inf' then below = 0
    elseif string.sub(min, 1, 1) == '(' then below = call('ZCOUNT', key, '-inf', string.sub(min, 2))
    else below = call('ZCOUNT', key, '-inf', '(' .. min) end
    upto = call('ZCOUNT', key, '-inf', max)
  end
  return below, upto - 1
end

-- How many candidates a source yields at most, or nil when it cannot be used.
-- An 'in' over many values is bounded by the whole index rather than counted
-- range by range (each count is a command).
local MANY_RANGES = 32
local function source_size(call, source, ids_key)
  local kind = source.kind
  if kind == 'ids' or kind == 'unique' then return #source.values end
  if kind == 'null' then return call('SCARD', KEYS[source.key]) end
  if kind == 'all' then return call('SCARD', ids_key) end
  source.ranges = source.ranges or index_ranges(source)
  if not source.ranges then return nil end
  local key = KEYS[source.key]
  if #source.ranges > MANY_RANGES then  -- the whole index bounds them
    if source.index == 'lex' then return call('ZLEXCOUNT', key, '-', '+') end
    return call('ZCOUNT', key, '-inf', '+inf')
  end
  local total = 0
  for _, range in ipairs(source.ranges) do
    local first, last = rank_interval(call, source.index, key, range)
    total = total + math.max(0, last - first + 1)
  end
  return total
end

local function id_of(kind, member)
  if kind == 'lex' then return lex_member_id(member) end
  return member
end

-- The next page of an index source: up to `count` ids from cursor {range, rank,
-- last member} (resuming after the last member when it is still there, so entries
-- written meanwhile shift nothing), the next cursor or false, and the work spent.
-- The first `count` members of sorted set `key` within `range`, in order (descending
-- with `rev`): one command where counting ranks first takes three. Needs Redis 6.2's
-- ZRANGE ... BYSCORE/BYLEX [REV] LIMIT.
local function range_head(call, kind, key, range, count, rev, with_scores)
  local by = kind == 'lex' and 'BYLEX' or 'BYSCORE'
  local low, high = range[1], range[2]
  if rev then
    if with_scores then
      return call('ZRANGE', key, high, low, by, 'REV', 'LIMIT', 0, count, 'WITHSCORES')
    end
    return call('ZRANGE', key, high, low, by, 'REV', 'LIMIT', 0, count)
  end
  if with_scores then return call('ZRANGE', key, low, high, by, 'LIMIT', 0, count, 'WITHSCORES') end
  return call('ZRANGE', key, low, high, by, 'LIMIT', 0, count)
end

local function index_page(call, source, cursor, count)
  local key, kind, ranges = KEYS[source.key], source.index, source.ranges
  local at, rank, last = cursor[1] or 1, cursor[2] or nil, cursor[3] or nil
  local ids, spent = {}, 0
  if not cursor[1] and #ranges == 1 then
    -- a first page of one range: read it from its start; ranks only when more remain
    local members = range_head(call, kind, key, ranges[1], count)
    for i, member in ipairs(members) do ids[i] = id_of(kind, member) end
    if #members < count then return ids, false, 1 + #members end
    local first, final = rank_interval(call, kind, key, ranges[1])
    rank = first + #members
    if rank > final then return ids, false, 3 + #members end
    return ids, {1, rank, members[#members]}, 3 + #members
  end
  while at <= #ranges and #ids < count and spent < count do
    local first, final = rank_interval(call, kind, key, ranges[at])
    spent = spent + 2
    if last then
      local found = call('ZRANK', key, last)
      if found then rank = found + 1 end
    end
    rank = math.max(rank or first, first)
    if rank <= final then
      local stop = math.min(final, rank + (count - #ids) - 1)
      local members = call('ZRANGE', key, rank, stop)
      for _, member in ipairs(members) do ids[#ids + 1] = id_of(kind, member) end
      spent = spent + #members
      last, rank = members[#members], stop + 1
    end
    if rank > final then at, rank, last = at + 1, nil, nil end
  end
  if at > #ranges then return ids, false, spent end
  return ids, {at, rank or false, last or false}, spent
end

-- The next page of any source: up to about `count` candidate ids, the next cursor
-- (false at the end) and the work spent.
local function source_page(call, source, cursor, count, ids_key)
  local kind = source.kind
  if kind == 'ids' then
    local at, ids = cursor or 0, {}
    for i = at + 1, math.min(at + count, #source.values) do ids[#ids + 1] = source.values[i] end
    local next_at = at + count
    return ids, next_at < #source.values and next_at or false, #ids
  end
  if kind == 'unique' then  -- one HGET per value: the owner of that value, if any
    local at, ids, hash = cursor or 0, {}, KEYS[source.key]
    local stop = math.min(at + count, #source.values)
    for i = at + 1, stop do
      local owner = call('HGET', hash, normal_form(source.family, source.values[i]))
      if owner then ids[#ids + 1] = owner end
    end
    return ids, stop < #source.values and stop or false, stop - at
  end
  if kind == 'all' or kind == 'null' then
    -- SSCAN cursors stay strings: they may exceed what a Lua number holds exactly
    local key = kind == 'all' and ids_key or KEYS[source.key]
    local reply = call('SSCAN', key, cursor or '0', 'COUNT', count)
    return reply[2], reply[1] ~= '0' and reply[1] or false, #reply[2]
  end
  return index_page(call, source, cursor or {}, count)
end
