-- lib/arith: exact arithmetic on canonical numbers, for QuerySet.update() with F
-- (pure functions: nothing runs when included, no ARGV). Needs lib/values.
--
-- Lua numbers are doubles, so Integers and Decimals are computed on their decimal
-- texts: magnitudes as digit strings (no sign, no leading zero, '0' for zero), worked
-- in limbs of 7 digits (products of two limbs stay far below 2^53, so every step is
-- exact). Results are the texts Python stores for the same value: an Integer as
-- b'%d', a Decimal as str(Decimal) (to-scientific-string, trailing zeros kept),
-- a Float as repr(float).
-- Every operation returns its result, or nil and a reason (a division by zero, a
-- value that is not a number, too many digits).

local LIMB = 10000000
local LIMB_DIGITS = 7

-- The work the arithmetic of this script call has done, in steps of about 0.1 us (a digit
-- added, a limb multiplied): a script that computes for many records bounds it (a table
-- made anew by each call, as every local of a script).
local ARITH_WORK = {steps = 0}

local function charge(steps)
  ARITH_WORK.steps = ARITH_WORK.steps + steps
end

-- The steps of an operation on magnitudes of `a` and `b` digits.
local function steps_of(op, a, b)
  if op == '*' then return a + b + math.ceil(a / LIMB_DIGITS) * math.ceil(b / LIMB_DIGITS) end
  if op == '/' and b > LIMB_DIGITS then return a * (math.ceil(b / LIMB_DIGITS) + 10) end
  return a + b
end

local function digits_trim(digits)
  local trimmed = string.gsub(digits, '^0+', '')
  if trimmed == '' then return '0' end
  return trimmed
end

-- A digit string as limbs, least significant first.
local function to_limbs(digits)
  local limbs, last = {}, #digits
  while last >= 1 do
    local first = math.max(1, last - LIMB_DIGITS + 1)
    limbs[#limbs + 1] = tonumber(string.sub(digits, first, last))
    last = first - 1
  end
  return limbs
end

local function from_limbs(limbs)
  local top = #limbs
  while top > 1 and limbs[top] == 0 do top = top - 1 end
  local parts = {string.format('%d', limbs[top] or 0)}
  for i = top - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', limbs[i]) end
  return table.concat(parts)
end

-- -1, 0 or 1 comparing two magnitudes.
local function digits_cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  return bytes_cmp(a, b)
end

local function digits_add(a, b)
  local x, y = to_limbs(a), to_limbs(b)
  local out, carry = {}, 0
  for i = 1, math.max(#x, #y) do
    local sum = (x[i] or 0) + (y[i] or 0) + carry
    if sum >= LIMB then out[i], carry = sum - LIMB, 1 else out[i], carry = sum, 0 end
  end
  if carry > 0 then out[#out + 1] = carry end
  return from_limbs(out)
end

-- a - b, for a >= b.
local function digits_sub(a, b)
  local x, y = to_limbs(a), to_limbs(b)
  local out, borrow = {}, 0
  for i = 1, #x do
    local difference = x[i] - (y[i] or 0) - borrow
    if difference < 0 then out[i], borrow = difference + LIMB, 1
    else out[i], borrow = difference, 0 end
  end
  return from_limbs(out)
end

local function digits_mul(a, b)
  local x, y = to_limbs(a), to_limbs(b)
  local out = {}
  for i = 1, #x + #y do out[i] = 0 end
  for i = 1, #x do
    local xi, carry = x[i], 0
    if xi ~= 0 then
      for j = 1, #y do
        local t = out[i + j - 1] + xi * y[j] + carry  -- < 2^47: exact
        carry = math.floor(t / LIMB)
        out[i + j - 1] = t - carry * LIMB
      end
      local k = i + #y
      while carry > 0 do
        local t = out[k] + carry
        carry = math.floor(t / LIMB)
        out[k] = t - carry * LIMB
        k = k + 1
      end
    end
  end
  return from_limbs(out)
end

-- Quotient and remainder of a magnitude by a divisor of one limb (below 10^7, not 0):
-- each step divides a number below 10^14, exact in doubles.
local function digits_divmod_small(a, divisor)
  local limbs = to_limbs(a)
  local quotient, rest = {}, 0
  for i = #limbs, 1, -1 do
    local current = rest * LIMB + limbs[i]
    quotient[i] = math.floor(current / divisor)
    rest = current - quotient[i] * divisor
  end
  return from_limbs(quotient), string.format('%d', rest)
end

-- The most digits a dividend may have when the divisor has more than one limb: that
-- long division costs about (dividend digits) x (divisor limbs) steps.
local LONG_DIVISION_DIGITS = 200

-- Quotient and remainder of magnitudes (b not '0'), or nil when the division would take
-- too long: by one limb at a time, or else a long division, one digit of a at a time
-- against the multiples 0..9 of b.
local function digits_divmod(a, b)
  if digits_cmp(a, b) < 0 then return '0', a end
  if #b <= LIMB_DIGITS then return digits_divmod_small(a, tonumber(b)) end
  if #a > LONG_DIVISION_DIGITS then return nil end
  local multiples = {'0'}
  for k = 1, 9 do multiples[k + 1] = digits_add(multiples[k], b) end
  local quotient, rest = {}, '0'
  for i = 1, #a do
    rest = digits_trim(rest .. string.sub(a, i, i))
    local q = 0
    while q < 9 and digits_cmp(multiples[q + 2], rest) <= 0 do q = q + 1 end
    if q > 0 then rest = digits_sub(rest, multiples[q + 1]) end
    quotient[i] = q
  end
  return digits_trim(table.concat(quotient)), rest
end

-- (negative, magnitude) of a signed sum of two signed magnitudes.
local function signed_add(negative_a, a, negative_b, b)
  if negative_a == negative_b then return negative_a, digits_add(a, b) end
  local c = digits_cmp(a, b)
  if c == 0 then return false, '0' end
  if c > 0 then return negative_a, digits_sub(a, b) end
  return negative_b, digits_sub(b, a)
end

-- Integers ----------------------------------------------------------------------------------
-- (negative, magnitude) of an integer's text, or nil.
local function int_parts(text)
  local sign, digits = string.match(text, '^([%-+]?)(%d+)$')
  if not sign then return nil end
  return sign == '-', digits_trim(digits)
end

local function int_text(negative, digits)
  if digits == '0' then return '0' end
  return (negative and '-' or '') .. digits
end

-- Integers of at most 15 digits are exact as doubles, and so are their sums,
-- differences and (up to 15 digits in all) products: those take Lua's arithmetic.
local SMALL_DIGITS = 15

-- The text of an integral double below 2^53 in magnitude, as Python writes the int.
local function small_int_text(number)
  if number == 0 then return '0' end  -- never '-0'
  return string.format('%.0f', number)
end

-- x op y in doubles when both texts are small integers and the result is surely exact;
-- nil otherwise (the digit-string arithmetic then runs).
local function small_int_arith(op, x, y)
  if #x > SMALL_DIGITS + 1 or #y > SMALL_DIGITS + 1 then return nil end
  if not string.find(x, '^%-?%d+$') or not string.find(y, '^%-?%d+$') then return nil end
  local a, b = tonumber(x), tonumber(y)
  if math.abs(a) >= 1e15 or math.abs(b) >= 1e15 then return nil end
  if op == '+' then return small_int_text(a + b) end
  if op == '-' then return small_int_text(a - b) end
  if op == '*' then
    if math.abs(a) * math.abs(b) >= 1e15 then return nil end
    return small_int_text(a * b)
  end
  if op == '/' and b ~= 0 then
    local q = math.floor(a / b)
    local rest = a - q * b  -- exact: |q * b| stays below 2^53
    if rest < 0 and b > 0 or rest > 0 and b < 0 then q = q - 1
    elseif rest >= b and b > 0 or rest <= b and b < 0 then q = q + 1 end
    return small_int_text(q)
  end
  return nil
end

-- What evaluate gives for an 'int' tree of operators ({op, tree, tree}, fields, numbers)
-- when small integers compute every step exactly (small_int_arith, as int_arith does
-- first), without charging ARITH_WORK; nil when an operand is None, unreadable or not
-- small, or a step is not exact (then evaluate runs, and says why when it fails).
local function small_int_tree(node, values)
  local tag = node[1]
  if tag == 'f' then return values[node[2]] or nil end
  if tag == 'n' then return node[2] end
  local x = small_int_tree(node[2], values)
  local y = x and small_int_tree(node[3], values)
  return y and small_int_arith(tag, x, y) or nil
end

-- x op y for integer texts; '/' is floor division (Python's //). `limit`: the most
-- digits an operand or the result may have (0: no limit).
local function int_arith(op, x, y, limit)
  charge(1)
  if limit == 0 or limit > SMALL_DIGITS then  -- a small result is within any such limit
    local small = small_int_arith(op, x, y)
    if small then return small end
  end
  local negative_x, a = int_parts(x)
  local negative_y, b = int_parts(y)
  if negative_x == nil or negative_y == nil then return nil, 'not an integer' end
  if limit > 0 and (#a > limit or #b > limit or op == '*' and #a + #b > limit + 1) then
    return nil, 'too many digits'
  end
  charge(steps_of(op, #a, #b))
  local negative, digits
  if op == '+' then negative, digits = signed_add(negative_x, a, negative_y, b)
  elseif op == '-' then negative, digits = signed_add(negative_x, a, not negative_y, b)
  elseif op == '*' then negative, digits = negative_x ~= negative_y, digits_mul(a, b)
  elseif op == '/' then
    if b == '0' then return nil, 'division by zero' end
    local rest
    digits, rest = digits_divmod(a, b)
    if not digits then return nil, 'too many digits for an exact division' end
    negative = negative_x ~= negative_y
    if negative and rest ~= '0' then digits = digits_add(digits, '1') end  -- floor
  else
    return nil, 'unknown operator ' .. tostring(op)
  end
  if limit > 0 and #digits > limit then return nil, 'too many digits' end
  return int_text(negative, digits)
end

-- Decimals ----------------------------------------------------------------------------------
-- (negative, coefficient, exponent) of a decimal text: the value is
-- coefficient * 10^exponent; trailing zeros stay in the coefficient (1.50 is 150, -2), as
-- Python's Decimal keeps them. nil when the text is no finite decimal.
local function dec_parts(text)
  local sign, int, frac, e, exp = string.match(text,
    '^([%-+]?)(%d*)%.?(%d*)([Ee]?)([%-+]?%d*)$')
  if not sign or int .. frac == '' then return nil end
  if (e == '') ~= (exp == '') or (e ~= '' and not string.find(exp, '%d')) then return nil end
  return sign == '-', digits_trim(int .. frac), (tonumber(exp) or 0) - #frac
end

-- str(Decimal) of sign, coefficient and exponent (Python's to-scientific-string).
local function dec_text(negative, digits, exponent)
  local n = #digits
  local left = exponent + n
  local dot = (exponent <= 0 and left > -6) and left or 1
  local int, frac
  if dot <= 0 then int, frac = '0', '.' .. string.rep('0', -dot) .. digits
  elseif dot >= n then int, frac = digits .. string.rep('0', dot - n), ''
  else int, frac = string.sub(digits, 1, dot), '.' .. string.sub(digits, dot + 1) end
  local suffix = ''
  if left ~= dot then suffix = string.format('E%+d', left - dot) end
  return (negative and '-' or '') .. int .. frac .. suffix
end

-- x op y for decimal texts, exactly (as Python computes with enough precision: no
-- rounding). '/' is refused: a quotient may have no finite decimal form.
local function dec_arith(op, x, y, limit)
  local negative_x, a, exponent_x = dec_parts(x)
  local negative_y, b, exponent_y = dec_parts(y)
  if negative_x == nil or negative_y == nil then return nil, 'not a decimal' end
  charge(1)
  local negative, digits, exponent
  if op == '*' then
    if limit > 0 and #a + #b > limit + 1 then return nil, 'too many digits' end
    charge(steps_of(op, #a, #b))
    negative, digits, exponent = negative_x ~= negative_y, digits_mul(a, b),
      exponent_x + exponent_y
  elseif op == '+' or op == '-' then
    if op == '-' then negative_y = not negative_y end
    exponent = math.min(exponent_x, exponent_y)
    local width = math.max(#a + exponent_x - exponent, #b + exponent_y - exponent)
    if limit > 0 and width > limit then return nil, 'too many digits' end
    charge(steps_of(op, width, width))
    a = digits_trim(a .. string.rep('0', exponent_x - exponent))
    b = digits_trim(b .. string.rep('0', exponent_y - exponent))
    negative, digits = signed_add(negative_x, a, negative_y, b)
    -- an exact zero is positive unless both terms are negative (Python's rounding rule)
    if digits == '0' then negative = negative_x and negative_y end
  elseif op == '/' then
    return nil, 'Decimal division is not exact'
  else
    return nil, 'unknown operator ' .. tostring(op)
  end
  if limit > 0 and #digits > limit then return nil, 'too many digits' end
  return dec_text(negative, digits, exponent)
end

-- Floats ------------------------------------------------------------------------------------
-- repr(x) as Python writes it: the shortest digits that read back as x, positional
-- notation for exponents from -4 to 15, else d.ddde+XX.
local function float_repr(x)
  if x ~= x then return 'nan' end
  if x == math.huge then return 'inf' end
  if x == -math.huge then return '-inf' end
  if x == 0 then return (1 / x < 0) and '-0.0' or '0.0' end
  local text
  for precision = 0, 16 do
    text = string.format('%.' .. precision .. 'e', x)
    if tonumber(text) == x then break end
  end
  local sign, first, rest, exp = string.match(text, '^(%-?)(%d)%.?(%d*)e([%-+]%d+)$')
  local digits = string.gsub(first .. rest, '0+$', '')
  if digits == '' then digits = '0' end
  local e = tonumber(exp)
  local out
  if e >= -4 and e < 16 then
    if e < 0 then out = '0.' .. string.rep('0', -e - 1) .. digits
    elseif #digits <= e + 1 then out = digits .. string.rep('0', e + 1 - #digits) .. '.0'
    else out = string.sub(digits, 1, e + 1) .. '.' .. string.sub(digits, e + 2) end
  else
    out = string.sub(digits, 1, 1)
    if #digits > 1 then out = out .. '.' .. string.sub(digits, 2) end
    out = out .. 'e' .. (e < 0 and '-' or '+') .. string.format('%02d', math.abs(e))
  end
  return sign .. out
end

-- A number text as a double, or nil: Integers too large for a double are refused, as
-- Python's float(int) refuses them.
local function float_operand(text)
  local number = tonumber(text)
  if number == nil then return nil end
  if (number == math.huge or number == -math.huge) and not string.find(text, 'inf', 1, true) then
    return nil
  end
  return number
end

local function float_arith(op, x, y)
  charge(1)
  local a, b = float_operand(x), float_operand(y)
  if a == nil or b == nil then return nil, 'not a float' end
  if op == '+' then return float_repr(a + b) end
  if op == '-' then return float_repr(a - b) end
  if op == '*' then return float_repr(a * b) end
  if op == '/' then
    if b == 0 then return nil, 'division by zero' end
    return float_repr(a / b)
  end
  return nil, 'unknown operator ' .. tostring(op)
end

-- Expressions -------------------------------------------------------------------------------
-- The value of an expression tree of `kind` ('int', 'dec' or 'float'):
--   {'f', field}  the record's value of `field` (canonical, from `values`; nil: None,
--                 false: unreadable), {'n', number text}, {op, tree, tree}.
-- Returns the canonical result; nil (no reason) when an operand is None, as SQL's NULL;
-- nil and a reason when it cannot be computed.
local function evaluate(kind, node, values, limit)
  local tag = node[1]
  if tag == 'f' then
    local value = values[node[2]]
    if value == false then return nil, 'the stored value of ' .. node[2] .. ' is unreadable' end
    return value
  end
  if tag == 'n' then return node[2] end
  local x, why = evaluate(kind, node[2], values, limit)
  if why then return nil, why end
  local y
  y, why = evaluate(kind, node[3], values, limit)
  if why then return nil, why end
  if x == nil or y == nil then return nil end
  if kind == 'int' then return int_arith(tag, x, y, limit) end
  if kind == 'dec' then return dec_arith(tag, x, y, limit) end
  if kind == 'float' then
    if limit > 0 and (#x > limit or #y > limit) then return nil, 'too many digits' end
    return float_arith(tag, x, y)
  end
  return nil, 'unknown kind ' .. tostring(kind)
end

-- The canonical value of an expression assigned to a field of `kind`: evaluate's, a
-- lone field or number written as that kind writes it (an Integer field read into a
-- Float: 5 -> 5.0; a foreign 007 -> 7). Arithmetic results are canonical already.
local function expression_value(kind, node, values, limit)
  local value, why = evaluate(kind, node, values, limit)
  if value == nil or (node[1] ~= 'f' and node[1] ~= 'n') then return value, why end
  if kind == 'float' then
    local number = float_operand(value)
    if number == nil then return nil, 'not a float' end
    return float_repr(number)
  end
  if kind == 'int' then
    local negative, digits = int_parts(value)
    if negative == nil then return nil, 'not an integer' end
    return int_text(negative, digits)
  end
  local negative, digits, exponent = dec_parts(value)
  if negative == nil then return nil, 'not a decimal' end
  return dec_text(negative, digits, exponent)
end
