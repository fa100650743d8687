-- lib/checks: typed error replies and key type checks (pure functions: nothing runs
-- when included, no ARGV). Errors are replied as 'REPOCKET <json>' so that Python
-- raises a typed error.

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

-- Whether a redis.pcall reply is an error.
local function is_error(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

-- The error reply for a redis.pcall that failed on `key`: WRONGTYPE becomes the typed
-- 'wrongtype' error naming the key; any other error (e.g. NOPERM) passes through.
local function pcall_failure(key, expected, reply)
  if string.sub(reply.err, 1, 9) ~= 'WRONGTYPE' then return redis.error_reply(reply.err) end
  return fail('wrongtype', {key = key, expected = expected,
                            actual = redis.call('TYPE', key)['ok']})
end
