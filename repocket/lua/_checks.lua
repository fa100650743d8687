-- Shared by the writing scripts: type checks that run before any write.
-- Errors are replied as 'REPOCKET <json>' so that Python can raise a typed error.

local function fail(code, details)
  details.code = code
  return redis.error_reply('REPOCKET ' .. cjson.encode(details))
end

-- nil when `key` holds `expected` (or nothing), else the error reply to return.
local function check_type(key, expected)
  local actual = redis.call('TYPE', key)['ok']
  if actual ~= 'none' and actual ~= expected then
    return fail('wrongtype', {key = key, expected = expected, actual = actual})
  end
  return nil
end
