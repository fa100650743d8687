-- query/_conditions: does a canonical value satisfy a condition? Pure functions
-- over _values.lua; nothing here touches Redis.
--
-- A condition is {field, family, op, values}; ops: eq, in, gt, gte, lt, lte,
-- range, startswith, endswith, contains, icontains, iexact, isnull. eq/in test membership in a set built once per call
-- (membership_set) so a candidate costs one table lookup, whatever the list's size.

-- One text per JSON value: equal (json_cmp == 0) texts give equal keys. Numbers by
-- value, strings length-prefixed, objects and arrays by sorted entries, and the
-- bracket skeleton of the text, which tells [] from {} (cjson decodes both alike).
local function json_value_key(value)
  local kind = type(value)
  if kind == 'string' then return 's' .. #value .. ':' .. value end
  if kind == 'number' then
    if value == 0 then return 'n0' end
    return 'n' .. string.format('%.17g', value)
  end
  if kind == 'boolean' then return value and 'T' or 'F' end
  if kind ~= 'table' then return 'z' end  -- cjson.null
  local entries = {}
  for key, item in pairs(value) do
    entries[#entries + 1] = json_value_key(key) .. '=' .. json_value_key(item)
  end
  table.sort(entries)
  return '{' .. table.concat(entries, ',') .. '}'
end

local function json_key(text)
  local ok, value = pcall(cjson.decode, text)
  if not ok then return 'raw:' .. text end
  return json_value_key(value) .. '|' .. json_skeleton(text)
end

-- The membership key of a canonical value: two values of a family are equal
-- (compare == 0) exactly when their keys are; nil for NaN, equal to nothing.
local function match_key(family, value)
  if family == 'text' then return value end
  if family == 'json' then return json_key(value) end
  if family == 'float' then
    local number = tonumber(value)
    if number == nil then return 'raw:' .. value end  -- compare falls back to bytes
    if number ~= number then return nil end
  elseif family == 'exact' then
    -- an integer of up to 31 digits, as Python writes it, is its own normal form
    if #value <= 31 and string.find(value, '^%-?[1-9]%d*$') then return value end
    if not decimal_parts(value) then return 'raw:' .. value end
  elseif family == 'datetime' then
    if not datetime_parts(value) then return 'raw:' .. value end
  end
  return normal_form(family, value)
end

local function membership_set(family, values)
  local set = {}
  for _, value in ipairs(values) do
    local key = match_key(family, value)
    if key then set[key] = true end
  end
  return set
end

local function is_nan(family, value)
  if family ~= 'float' then return false end
  local number = tonumber(value)
  return number ~= number
end

-- Whether `value` (canonical, nil when None) satisfies the condition; `set` is
-- the condition's membership set for eq/in.
local function satisfies(value, family, op, values, set)
  if op == 'isnull' then return (value == nil) == values[1] end
  if not value then return false end  -- None (or an unreadable envelope) matches nothing else
  if op == 'eq' or op == 'in' then
    local key = match_key(family, value)
    return key ~= nil and set[key] == true
  end
  if op == 'startswith' then return string.sub(value, 1, #values[1]) == values[1] end
  -- Unicode fields only (checked by the client); the i- forms get a lowered needle and
  -- lower ASCII letters only (string.lower), so other letters compare exactly.
  if op == 'endswith' then return #values[1] == 0 or string.sub(value, -#values[1]) == values[1] end
  if op == 'contains' then return string.find(value, values[1], 1, true) ~= nil end
  if op == 'icontains' then return string.find(string.lower(value), values[1], 1, true) ~= nil end
  if op == 'iexact' then return string.lower(value) == values[1] end
  if is_nan(family, value) or is_nan(family, values[1])
      or (values[2] and is_nan(family, values[2])) then
    return false  -- NaN orders with nothing
  end
  local c = compare(family, value, values[1])
  if op == 'gt' then return c > 0 elseif op == 'gte' then return c >= 0
  elseif op == 'lt' then return c < 0 elseif op == 'lte' then return c <= 0
  elseif op == 'range' then return c >= 0 and compare(family, value, values[2]) <= 0 end
  return false
end

-- Whether a record with `values` (field -> canonical) passes every group of
-- `checks` ({negated, {condition...}}: a group matches when all its conditions do).
local function passes(values, checks)
  for _, group in ipairs(checks) do
    local all = true
    for _, condition in ipairs(group[2]) do
      if not satisfies(values[condition[1]], condition[2], condition[3], condition[4],
                       condition.set) then
        all = false
        break
      end
    end
    if all == (group[1] == true) then return false end
  end
  return true
end
