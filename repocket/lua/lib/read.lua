-- lib/read: reading records (pure functions: nothing runs when included, no ARGV).

-- A UUID's text (written out, not concatenated: a script's top level runs on every call).
local UUID_PATTERN = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
-- A Pointer's envelope exactly as repocket writes it: its value, a UUID, in one match
-- (anything else takes cjson.decode).
local ENVELOPED_UUID = '^{"type": "[^"\\%z]*", "value": "(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)", "module": "[^"\\%z]*"}$'

-- The error reply for a failed read: a key of another type becomes a typed
-- 'wrongtype' error naming it; any other error (e.g. NOPERM) passes through.
local function read_failure(key, reply)
  if string.sub(reply.err, 1, 9) ~= 'WRONGTYPE' and string.find(reply.err, ' ') then
    return redis.error_reply(reply.err)
  end
  return redis.error_reply('REPOCKET ' .. cjson.encode(
    {code = 'wrongtype', key = key, expected = 'hash or string',
     actual = redis.call('TYPE', key)['ok']}))
end

-- The id a stored Pointer value names, or nil when it is not a UUID: no stored value
-- can make a read leave the target model's prefix.
local function pointer_id(raw, is_envelope)
  if is_envelope then
    local id = string.match(raw, ENVELOPED_UUID)
    if id then return id end
    local ok, envelope = pcall(cjson.decode, raw)
    if not ok or type(envelope) ~= 'table' then return nil end
    raw = envelope.value
  end
  if type(raw) == 'string' and string.match(raw, UUID_PATTERN) then return raw end
  return nil
end
