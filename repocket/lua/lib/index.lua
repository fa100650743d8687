-- lib/index: a record's secondary index entries and unique claims (pure functions:
-- nothing runs when included, no ARGV; every key is passed in). Needs lib/values.
-- Index entries, for a record <id>:
--   score index  sorted set, member <id>, score = the value (numbers, datetimes)
--   lex index    sorted set, score 0, member <value with \0 as \0\1> \0\0 <id>
--   null set     the ids whose value is None (absent)
--   unique hash  field <value> (or msgpack of the values, for several fields) -> <id>,
--                each value in its normal form (lib/values): equal values, one field

local function lex_member(value, id)
  return lex_escape(value) .. '\0\0' .. id
end

-- Moves one index's entries for record `id` from `before` to `after` (nil: None);
-- `deleting` removes them altogether. `nulls` is the null set key, or nil when the
-- field cannot be None.
local function move_index_entry(kind, family, zset, nulls, id, before, after, deleting)
  if kind == 'lex' and before ~= nil and before ~= after then
    redis.call('ZREM', zset, lex_member(before, id))
  end
  if after == nil then
    if kind == 'score' then redis.call('ZREM', zset, id) end
    if nulls and not deleting then redis.call('SADD', nulls, id)
    elseif nulls then redis.call('SREM', nulls, id) end
    return
  end
  if kind == 'score' then
    redis.call('ZADD', zset, format_score(score_of(family, after) or 0), id)
  else
    redis.call('ZADD', zset, 0, lex_member(after, id))
  end
  if nulls then redis.call('SREM', nulls, id) end
end

-- The unique hash field of one constraint: its values' normal forms (`families` and
-- `values` in the constraint's field order); nil when one of them is None.
local function unique_field(families, values)
  local parts = {}
  for i, family in ipairs(families) do
    if values[i] == nil then return nil end
    parts[i] = normal_form(family, values[i])
  end
  if #families == 1 then return parts[1] end
  return cmsgpack.pack(parts)
end

-- Who else holds `field` in the unique hash `key`: its owner (another record, or one
-- claimed earlier in this batch, tracked in `claimed`), or nil after claiming it
-- for `id`. The HGET doubles as the hash's type check: an error reply comes second.
local function unique_owner(key, field, id, claimed)
  local owner = redis.pcall('HGET', key, field)
  if is_error(owner) then return nil, pcall_failure(key, 'hash', owner) end
  local claim = claimed[key .. '\0' .. field]
  if owner and owner ~= id then return owner end
  if claim and claim ~= id then return claim end
  claimed[key .. '\0' .. field] = id
  return nil
end

-- Moves record `id`'s claim in the unique hash `key` from `before` to `after` (either
-- nil); with `known`, an unchanged claim is trusted and not rewritten.
local function move_claim(key, id, before, after, known)
  if before ~= nil and before ~= after and redis.call('HGET', key, before) == id then
    redis.call('HDEL', key, before)
  end
  if after ~= nil and not (known and before == after) then redis.call('HSET', key, after, id) end
end
