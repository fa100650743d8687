-- query/_ordering: the order of rows. Pure functions over _values.lua.
--
-- A row is {id, order value...} (values canonical, false for None). Rows order by
-- each order field in its direction, None first, then by id in the first field's
-- direction: what Python's row_key does with the same rows.

-- The comparator of rows for `order` ({{field, family, desc}, ...}).
local function row_less_for(order)
  local desc = order[1] ~= nil and order[1][3]
  return function(a, b)
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
end

-- Rows of an index walk are {id, value, group}: `group` is the entry's score (rows
-- of equal score stand together), 'null' for the records without a value, false for
-- lex entries (whose order is already exact). Sorts each run of rows whose group
-- compares equal (numerically for scores: Redis says '-0' and '0' for equal scores)
-- by value, then id; the runs themselves are in order.
local function group_key(group)
  if group == 'null' or group == false then return group end
  return tonumber(group)
end

local function sort_runs(rows, less)
  local start = 1
  for i = 2, #rows + 1 do
    local key = rows[start][3] and group_key(rows[start][3])
    if i > #rows or not key or group_key(rows[i][3]) ~= key then
      if key and i - start > 1 then
        local run = {}
        for j = start, i - 1 do run[#run + 1] = rows[j] end
        table.sort(run, less)
        for j, row in ipairs(run) do rows[start + j - 1] = row end
      end
      start = i
    end
  end
end

-- The bounds of a sorted-set range as comparable values: lex texts ('-' and '+'
-- are the ends) or numbers, and whether the bound is open.
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

local function bound_cmp(kind, a, b)
  if kind ~= 'lex' then return a < b and -1 or (a > b and 1 or 0) end
  if a == b then return 0 end
  if a == '-' or b == '+' then return -1 end
  if a == '+' or b == '-' then return 1 end
  return bytes_cmp(a, b)
end

-- The intersection of one-range index sources on the walked field: the {min, max}
-- range the walk covers.
local function walk_range(kind, ranges)
  local low, high = kind == 'lex' and '-' or '-inf', kind == 'lex' and '+' or '+inf'
  for _, range in ipairs(ranges) do
    local lv, lo = parse_bound(kind, range[1])
    local cv, co = parse_bound(kind, low)
    local c = bound_cmp(kind, lv, cv)
    if c > 0 or (c == 0 and lo and not co) then low = range[1] end
    local hv, ho = parse_bound(kind, range[2])
    cv, co = parse_bound(kind, high)
    c = bound_cmp(kind, hv, cv)
    if c < 0 or (c == 0 and ho and not co) then high = range[2] end
  end
  return {low, high}
end
