-- Shared by the checker's scripts (reindex, prune, audit_keys): what an id looks
-- like, and the problems a batch reports. Each of them runs in two variants
-- (core/lua.py): as written, to repair, and flagged no-writes, to check, which
-- Redis runs on replicas and over maxmemory; they write only in 'repair' mode.

-- Whether `text` is a record id: a canonical (lower-case, hyphenated) UUID, as
-- repocket writes them. Anything else in an id set, an index or a unique hash
-- was written by another tool or an older version: it names no record, and is
-- never turned into a key name.
local ID_PATTERN = '^' .. string.rep('%x', 8) .. '%-' .. string.rep('%x', 4) .. '%-'
  .. string.rep('%x', 4) .. '%-' .. string.rep('%x', 4) .. '%-' .. string.rep('%x', 12) .. '$'
local function is_record_id(text)
  return #text == 36 and string.find(text, ID_PATTERN) ~= nil and not string.find(text, '%u')
end

-- A problem row of a reply: {kind, key, detail, record id, value, holder}.
local function problem_row(kind, key, detail, id, value, holder)
  return {kind, key, detail, id or false, value or false, holder or false}
end
