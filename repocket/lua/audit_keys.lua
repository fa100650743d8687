#!lua
-- audit_keys: one page of the checker's keyspace pass. For the record hashes a
-- SCAN page found: is each in the model's id set? For its ByteStream keys: does
-- each one's record still exist? In 'repair' mode an unlisted record joins the id
-- set (the id-set pass, which runs next, then builds its index entries) and an
-- orphan stream is deleted. Each key is looked at once, atomically with its fix.
--
-- KEYS[1]            the model's id set                  repocket:<ns>:<Class>:ids
-- KEYS[2 .. 1+R]     record hashes                       repocket:<ns>:<Class>:<id>
-- KEYS[2+R ..]       pairs: a ByteStream key, then its record's hash
-- ARGV[1]  R   ARGV[2]  'check' (report only) or 'repair'
-- ARGV[3 .. 2+R]     the ids of the R record hashes
--
-- Reply: {problems fixed, {kind, key, detail, record id, false, false}...},
--        kinds: 'unlisted-record' (a record hash missing from the id set),
--        'orphan-stream' (a ByteStream whose record is gone)
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"} (the id set)

-- @include _checks
-- @include _audit

local err = check_type(KEYS[1], 'set')
if err then return err end
local R, repair = tonumber(ARGV[1]), ARGV[2] == 'repair'
local reply = {0}

local function report(kind, key, detail, id)
  reply[#reply + 1] = problem_row(kind, key, detail, id)
  if repair then reply[1] = reply[1] + 1 end
end

for r = 1, R do
  local hash, id = KEYS[1 + r], ARGV[2 + r]
  -- only a hash is a record; another type under a record key is the id-set pass' business
  if redis.call('TYPE', hash)['ok'] == 'hash' and redis.call('SISMEMBER', KEYS[1], id) == 0 then
    report('unlisted-record', hash, 'not in the id set', id)
    if repair then redis.call('SADD', KEYS[1], id) end
  end
end
for i = 2 + R, #KEYS, 2 do
  local stream, hash = KEYS[i], KEYS[i + 1]
  -- the stream may have gone since SCAN listed it, with its record (a delete, or both
  -- expiring at their deadline): only one that is still there is an orphan
  if redis.call('EXISTS', hash) == 0 and redis.call('EXISTS', stream) == 1 then
    report('orphan-stream', stream, 'its record is gone')
    if repair then redis.call('DEL', stream) end
  end
end
return reply
