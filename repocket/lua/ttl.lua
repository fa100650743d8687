#!lua flags=no-writes
-- ttl: how long one record has left before its deadline (record.ttl()). Read-only.
--
-- KEYS[1]  the model's deadlines (sorted set)    repocket:<ns>:<Class>:ttl
-- KEYS[2]  the record's hash                     repocket:<ns>:<Class>:<id>
-- ARGV[1]  the record's id
--
-- Reply: the ms left until its deadline (0 or more), -1 when it has none, -2 when the
--        record does not exist (deleted, never saved, or past its deadline).
-- Errors: REPOCKET {"code": "wrongtype", "key", "expected", "actual"}

-- @include lib/checks
-- @include lib/expiry

local deadlines, hash, id = KEYS[1], KEYS[2], ARGV[1]
local EXPIRY, err = expiry_state(deadlines, false)
if err then return err end
local exists = redis.pcall('EXISTS', hash)
if is_error(exists) then return pcall_failure(hash, 'hash', exists) end
local deadline = deadline_of(EXPIRY, id)
if exists == 0 or (deadline and deadline < EXPIRY.now) then return -2 end
if not deadline then return -1 end
return deadline - EXPIRY.now
