-- lib/expiry: records with a deadline (pure functions: nothing runs when included, no
-- ARGV; every key is passed in). Needs lib/checks.
-- A model's deadlines are one sorted set (member: the record id, score: its deadline in
-- ms since 1970); Redis also expires the record's hash and ByteStreams at that deadline
-- (PEXPIREAT), so a record whose deadline passed reads as missing everywhere. Its
-- index entries, unique claims and id-set entry are swept by the write scripts, a
-- bounded page per call, from the values kept in the model's expiry entries hash.

-- The server's clock in ms, truncated as Redis truncates it to expire keys: a record
-- is past its deadline exactly when Redis considers its hash expired (deadline < now).
local function clock_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- A score as ZADD / ZRANGE take it: deadlines are integers (ms), well within 2^53.
local function deadline_text(ms)
  return string.format('%.0f', ms)
end

-- What a call knows of its model's deadlines: nil when no record has one and the call
-- sets none (`needs_clock` false): then nothing else is asked, a single ZRANGE of an
-- empty key. Else {key, now, any (some record has a deadline), due (some deadline has
-- passed)}. The ZRANGE doubles as the sorted set's type check (an error reply second).
local function expiry_state(key, needs_clock)
  local first = redis.pcall('ZRANGE', key, 0, 0, 'WITHSCORES')
  if is_error(first) then return nil, pcall_failure(key, 'zset', first) end
  if #first == 0 and not needs_clock then return nil end
  local now = clock_ms()
  return {key = key, now = now, any = #first > 0, due = #first > 0 and tonumber(first[2]) < now}
end

-- The deadline (ms) of record `id`, or nil when it has none.
local function deadline_of(state, id)
  if not state or not state.any then return nil end
  local score = redis.call('ZSCORE', state.key, id)
  return score and tonumber(score) or nil
end

-- Whether record `id` is past its deadline: it reads as absent (one ZSCORE, only when
-- some deadline has passed).
local function is_expired(state, id)
  if not state or not state.due then return false end
  local score = redis.call('ZSCORE', state.key, id)
  return score ~= false and tonumber(score) < state.now
end

-- Up to `limit` ids past their deadline, earliest first.
local function due_ids(state, limit)
  if not state or not state.due then return {} end
  return redis.call('ZRANGE', state.key, '-inf', '(' .. deadline_text(state.now), 'BYSCORE',
                    'LIMIT', 0, limit)
end
