#!lua
-- persist: clear one record's deadline (record.persist()): it lives until deleted.
-- Every check runs before the first write.
--
-- KEYS[1]  the model's deadlines (sorted set)               repocket:<ns>:<Class>:ttl
-- KEYS[2]  the values of its expiring records (hash)        repocket:<ns>:<Class>:ttl:entries
-- KEYS[3]  the record's hash                                repocket:<ns>:<Class>:<id>
-- KEYS[4 ..]  its ByteStream keys                           <hash key>:field:<name>
-- ARGV[1]  the record's id
--
-- Reply: 1 when it had a deadline, 0 when it had none, 'gone' (nothing written) when the
--        record does not exist (deleted, or past its deadline).
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include lib/checks
-- @include lib/expiry

local deadlines, entries, hash, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local EXPIRY, err = expiry_state(deadlines, false)
if err then return err end
local exists = redis.pcall('EXISTS', hash)
if is_error(exists) then return pcall_failure(hash, 'hash', exists) end
local deadline = deadline_of(EXPIRY, id)
if exists == 0 or (deadline and deadline < EXPIRY.now) then return 'gone' end
if not deadline then return 0 end
err = check_type(entries, 'hash') or check_type(hash, 'hash')
if err then return err end
for i = 4, #KEYS do
  err = check_type(KEYS[i], 'string')
  if err then return err end
end
redis.call('ZREM', deadlines, id)
redis.call('HDEL', entries, id)
for i = 3, #KEYS do redis.call('PERSIST', KEYS[i]) end
return 1
