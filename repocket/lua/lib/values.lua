-- Shared: typed values. A field's stored bytes are turned into its canonical
-- form (what Attribute.encode produces in Python), which is then compared,
-- scored or ordered by its family:
--   'text'     Unicode, Bytes, UUID, Pointer: bytewise
--   'exact'    Integer, Decimal: exact decimal comparison (no rounding)
--   'float'    Float: as doubles
--   'datetime' DateTime: the instant (seconds, microseconds), naive values as UTC
--   'json'     JSON: equality of the decoded values (no order)

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

local function base64_decode(text)
  local out, bits, nbits = {}, 0, 0
  for i = 1, #text do
    local found = string.find(B64, string.sub(text, i, i), 1, true)
    local v = found and found - 1
    if v then
      bits, nbits = bits * 64 + v, nbits + 6
      if nbits >= 8 then
        nbits = nbits - 8
        local byte = math.floor(bits / 2 ^ nbits)
        out[#out + 1] = string.char(byte)
        bits = bits - byte * 2 ^ nbits
      end
    end
  end
  return table.concat(out)
end

-- The envelope exactly as repocket writes it, with no quote, backslash or NUL (which
-- cjson refuses) inside its strings: its value is the text between the quotes, what
-- cjson.decode would give (one match instead of a decode; anything else is decoded).
local ENVELOPE_SHAPE = '^{"type": "[^"\\%z]*", "value": "([^"\\%z]*)", "module": "[^"\\%z]*"}$'

-- The canonical value of stored bytes (nil for an absent field; false when the
-- bytes are not a valid envelope, which then matches no condition).
local function canonical(raw, is_envelope)
  if not raw then return nil end
  if not is_envelope then return raw end
  local plain = string.match(raw, ENVELOPE_SHAPE)
  if plain then return plain end
  local ok, envelope = pcall(cjson.decode, raw)
  if not ok or type(envelope) ~= 'table' or type(envelope.value) ~= 'string' then return false end
  if envelope.encoding == 'base64' then return base64_decode(envelope.value) end
  return envelope.value
end

-- A value as it is written into a lex index member: a NUL becomes \0\1, so that
-- \0\0 can separate the value from the id and order is kept.
local function lex_escape(value) return (string.gsub(value, '%z', '\0\1')) end

-- The id and the value of a lex index member <escaped value>\0\0<id> (ids are
-- 36-character UUIDs).
local ID_LENGTH = 36
local function lex_member_id(member) return string.sub(member, -ID_LENGTH) end
local function lex_member_value(member)
  return (string.gsub(string.sub(member, 1, -(ID_LENGTH + 3)), '%z\1', '\0'))
end

-- -1, 0 or 1 comparing two strings byte by byte (Lua's < follows the locale).
local function bytes_cmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  local i = 1
  while i <= n do
    local j = math.min(i + 15, n)
    if string.sub(a, i, j) ~= string.sub(b, i, j) then
      for k = i, j do
        local x, y = string.byte(a, k), string.byte(b, k)
        if x ~= y then return x < y and -1 or 1 end
      end
    end
    i = j + 1
  end
  return #a < #b and -1 or 1
end

-- Exact decimals: '[-]digits[.digits][E[+-]digits]' as sign, digits, exponent.
local function decimal_parts(text)
  local sign, int, frac, exp = string.match(text, '^([%-+]?)(%d*)%.?(%d*)[Ee]?([%-+]?%d*)$')
  if not sign then return nil end
  local digits = int .. frac
  local exponent = (tonumber(exp) or 0) - #frac
  local first = string.find(digits, '[1-9]')
  if not first then return 0, '', 0 end
  digits = string.sub(digits, first)
  local last = string.find(digits, '0*$')
  exponent = exponent + (#digits - last + 1)
  digits = string.sub(digits, 1, last - 1)
  -- magnitude: position of the leading digit
  return (sign == '-' and -1 or 1), digits, exponent + #digits
end

local function exact_cmp(a, b)
  local sa, da, ma = decimal_parts(a)
  local sb, db, mb = decimal_parts(b)
  if not sa or not sb then return bytes_cmp(a, b) end
  if sa == 0 or sb == 0 or sa ~= sb then
    local va = sa == 0 and 0 or sa
    local vb = sb == 0 and 0 or sb
    return va < vb and -1 or (va > vb and 1 or 0)
  end
  local c
  if ma ~= mb then c = ma < mb and -1 or 1 else c = bytes_cmp(da, db) end
  return c * sa
end

-- Days from 1970-01-01 to a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- An instant as whole seconds since the epoch and microseconds, both exact
-- (naive values are taken as UTC).
local function datetime_parts(text)
  local y, mo, d, h, mi, s, us, rest = string.match(text,
    '^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)(.*)$')
  if not y then return nil end
  local seconds = ((days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 24 + tonumber(h))
    * 60 + tonumber(mi)) * 60 + tonumber(s)
  local micros = tonumber((us .. '000000'):sub(1, 6)) or 0
  local osign, oh, om, os = string.match(rest, '^([%-+])(%d%d):(%d%d):?(%d*)')
  if osign then
    local offset = (tonumber(oh) * 60 + tonumber(om)) * 60 + (tonumber(os) or 0)
    seconds = osign == '+' and seconds - offset or seconds + offset
  end
  return seconds, micros
end

-- The sorted-set score of a canonical value (nil when it has none); a double,
-- so exact only within 2^53 (datetimes: microseconds within ~285 years of 1970).
-- A datetime's, then any family's (a number's is tonumber(value)).
local function datetime_score(value)
  local seconds, micros = datetime_parts(value)
  return seconds and seconds * 1000000 + micros
end

local function score_of(family, value)
  if family == 'datetime' then return datetime_score(value) end
  return tonumber(value)
end

local function format_score(score)
  if score == math.huge then return '+inf' elseif score == -math.huge then return '-inf' end
  return string.format('%.17g', score)
end

local function number_cmp(x, y)
  return x < y and -1 or (x > y and 1 or 0)
end

-- One text per value, whatever its stored form: what unique constraints hold. Per
-- family (a generated script calls the one its field needs; text and json values are
-- their own normal form), then for any family.
local function float_normal_form(value)
  local number = tonumber(value)
  if number == nil then return value end
  if number == 0 then return '0' end
  return format_score(number)
end

local function exact_normal_form(value)  -- plain decimal notation, no trailing zeros: 1.50 -> 1.5
  local sign, digits, magnitude = decimal_parts(value)
  if not sign then return value end
  if sign == 0 then return '0' end
  local text
  if magnitude - #digits > 30 or magnitude < -30 then
    text = digits .. 'e' .. (magnitude - #digits)
  elseif magnitude >= #digits then
    text = digits .. string.rep('0', magnitude - #digits)
  elseif magnitude <= 0 then
    text = '0.' .. string.rep('0', -magnitude) .. digits
  else
    text = string.sub(digits, 1, magnitude) .. '.' .. string.sub(digits, magnitude + 1)
  end
  return (sign < 0 and '-' or '') .. text
end

local function datetime_normal_form(value)
  local seconds, micros = datetime_parts(value)
  if not seconds then return value end
  return string.format('%.0f.%06d', seconds, micros)
end

local function normal_form(family, value)
  if family == 'float' then return float_normal_form(value)
  elseif family == 'exact' then return exact_normal_form(value)
  elseif family == 'datetime' then return datetime_normal_form(value)
  end
  return value
end

-- Whether two decoded JSON values are equal: numbers by value (as doubles),
-- tables key by key (json_cmp also tells arrays from objects).
local function json_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= 'table' then return a == b end
  for key, value in pairs(a) do
    if not json_equal(value, b[key]) then return false end
  end
  for key in pairs(b) do
    if a[key] == nil then return false end
  end
  return true
end

-- The brackets of a JSON text outside its strings: cjson decodes [] and {} alike,
-- this tells arrays from objects (keys are sorted, so equal objects align).
local function json_skeleton(text)
  local out, in_string, i = {}, false, 1
  while i <= #text do
    local c = string.sub(text, i, i)
    if in_string then
      if c == '\\' then i = i + 1 elseif c == '"' then in_string = false end
    elseif c == '"' then
      in_string = true
    elseif c == '[' or c == ']' or c == '{' or c == '}' then
      out[#out + 1] = c
    end
    i = i + 1
  end
  return table.concat(out)
end

local function json_cmp(a, b)
  if a == b then return 0 end
  local ok_a, x = pcall(cjson.decode, a)
  local ok_b, y = pcall(cjson.decode, b)
  if ok_a and ok_b and json_equal(x, y) and json_skeleton(a) == json_skeleton(b) then
    return 0
  end
  return 1
end

-- -1, 0 or 1 comparing two canonical values of one family (nil sorts first).
local function compare(family, a, b)
  if a == nil or b == nil then
    if a == b then return 0 end
    return a == nil and -1 or 1
  end
  if family == 'exact' then return exact_cmp(a, b) end
  if family == 'datetime' then
    local sa, ua = datetime_parts(a)
    local sb, ub = datetime_parts(b)
    if sa == nil or sb == nil then return bytes_cmp(a, b) end
    if sa ~= sb then return number_cmp(sa, sb) end
    return number_cmp(ua, ub)
  end
  if family == 'float' then
    local x, y = tonumber(a), tonumber(b)
    if x == nil or y == nil then return bytes_cmp(a, b) end
    if x ~= x or y ~= y then  -- NaN (Float(allow_nan=True)) orders after every number
      return (x ~= x and 1 or 0) - (y ~= y and 1 or 0)
    end
    return number_cmp(x, y)
  end
  if family == 'json' then return json_cmp(a, b) end
  return bytes_cmp(a, b)
end
