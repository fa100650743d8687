"""Per-model Lua: save, delete, append and get written for one (model, codec).

The generic scripts (``lua/save.lua`` ...) read a schema blob and loop over field
descriptors on every call; the scripts written here have the schema baked in:
the model's keys are named locals, every index and unique constraint is its own
few lines, the codec is a constant. They call the same library functions
(``lua/lib/*.lua``) as the generic scripts, so canonical values, index entries,
ordering and unique normal forms have one source.

Their KEYS and ARGV frames are the generic scripts' minus the schema prelude
(see each header), so the operations in ``ops.py`` build one frame for both and
the differential test runs the same call through either. Generation is pure
text; :func:`scripts_for` caches the result on the model's ``_meta`` per codec.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..connections import configure
from . import keys as keyspace
from . import schema
from .codecs import CODECS
from .lua import Script, expand, make_script

if TYPE_CHECKING:
    from ..api.model import ActiveRecord
    from .schema import Options

LIBRARIES = ("lib/checks", "lib/values", "lib/index", "lib/read", "lib/arith",
             "lib/expiry")
# The query parts the update script links too (they read KEYS[source.key]: not libraries).
QUERY_PARTS = ("query/_conditions", "query/_sources")
_LUA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LUA_RESERVED = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"))


@dataclass(frozen=True)
class ModelScripts:
    """One model's generated scripts for one codec (``get`` for the codecs its reads reach)."""

    save: Script
    delete: Script
    append: Script
    get: Script
    get_or_create: Script
    update: Script
    update_ids: Script

    def __iter__(self) -> Any:
        return iter((self.save, self.delete, self.append, self.get, self.get_or_create,
                     self.update, self.update_ids))


# -- Lua text helpers ---------------------------------------------------------------------
def lua_string(value: str | bytes) -> str:
    """A Lua string literal holding exactly ``value``'s bytes."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    out = []
    for byte in raw:
        char = chr(byte)
        if 32 <= byte < 127 and char not in "'\\":
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return "'" + "".join(out) + "'"


def lua_field(table: str, name: str) -> str:
    """``table.name``, or ``table['name']`` when the name is not a Lua identifier."""
    if _LUA_NAME.fullmatch(name) and name not in _LUA_RESERVED:
        return f"{table}.{name}"
    return f"{table}[{lua_string(name)}]"


def lua_list(values: Iterable[str]) -> str:
    return "{" + ", ".join(lua_string(value) for value in values) + "}"


def with_libraries(body: str) -> str:
    """``body`` behind the library includes (``-- @include lib/...``), unexpanded."""
    lines = body.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("-- @libraries"))
    parts = LIBRARIES + (QUERY_PARTS if lines[at] == "-- @libraries +query" else ())
    lines[at:at + 1] = [f"-- @include {name}" for name in parts]
    return "\n".join(lines)


# -- what the scripts need to know about a model ----------------------------------------------
def tracked_fields(meta: Options) -> list[str]:
    """Every field an index or a unique constraint reads, once, in declaration order."""
    wanted = set(meta.indexed) | {name for group in meta.unique_together for name in group}
    return [name for name in meta.fields if name in wanted]


def _key_locals(meta: Options) -> list[tuple[str, str, str, str]]:
    """(Lua name, KEYS index, what it is, key) of the keys every write script receives."""
    rows = [("ids", "KEYS[1]", "the id set", meta.ids_key)]
    position = meta.key_position
    for name in meta.indexed:
        key = keyspace.index_key(meta.prefix, name)
        rows.append((f"idx_{name}", f"KEYS[{position[key]}]", f"index of {name}", key))
        null = keyspace.null_key(meta.prefix, name)
        if null in position:
            rows.append((f"null_{name}", f"KEYS[{position[null]}]", f"ids whose {name} is None",
                         null))
    for group in meta.unique_together:
        key = keyspace.unique_key(meta.prefix, group)
        rows.append((f"uniq_{'_'.join(group)}", f"KEYS[{position[key]}]",
                     f"unique {'+'.join(group)}", key))
    if meta.changes:
        rows.append(("changes", f"KEYS[{position[meta.changes_key]}]", "the change feed",
                     meta.changes_key))
    deadlines, entries = meta.expiry_keys
    after = meta.expiry_position
    rows.append(("deadlines", f"KEYS[{after}]", "deadlines", deadlines))
    rows.append(("expiry_entries", f"KEYS[{after + 1}]", "ttl entries", entries))
    return rows


def _keys_header(meta: Options) -> list[str]:
    rows = _key_locals(meta)
    width = max(len(what) for _, _, what, _ in rows)
    return [f"-- {index:<8} {what:<{width}}  {key}" for _, index, what, key in rows]


def _keys_table(meta: Options) -> str:
    rows = [f"  {name} = {index}," for name, index, _, _ in _key_locals(meta)]
    return "local K = {\n" + "\n".join(rows) + "\n}"


def _defaults_table(meta: Options, fields: list[str]) -> str:
    rows = []
    for name in fields:
        default = meta.absent_values().get(name)
        if default is not None:
            rows.append(f"  [{lua_string(name)}] = {lua_string(default)},")
    if not rows:
        return "local ABSENT = {}"
    return ("-- a field absent from a stored record reads as its declared default, as in Python\n"
            "local ABSENT = {\n" + "\n".join(rows) + "\n}")


def _unique_name(group: tuple[str, ...]) -> str:
    return "_".join(group)


# -- save ---------------------------------------------------------------------------------
_SAVE_HEADER = """#!lua
-- {operation} {model} ({codec} codec), generated by repocket.core.luagen from the model.
{purpose}-- Writes records (one, or a bulk_create batch) with their ByteStreams, index entries,
-- unique claims and id-set entries, atomically. Every check for every record runs
-- before the first write, so a failing call changes nothing. The #!lua shebang makes
-- Redis refuse it over maxmemory before it runs.
--
{keys}
-- then, for each record in turn:
--   KEYS  its hash                         {prefix}:<id>
--   KEYS  its {n_streams} ByteStream keys {streams}   <hash key>:field:<name>
--   KEYS  its P Pointer target hashes, which must exist
-- ARGV[1]  R, the number of records
-- ARGV[2]  the longest string Redis accepts (proto-max-bulk-len): no APPEND may pass it
-- then, for each record: id, partial ('1': only changed fields, of a record loaded
--   from Redis), N, D, P, N field/value pairs to HSET, D fields to HDEL, and per
--   ByteStream {streams} an op/data pair:
--   ''  leave the stream,  'A'  APPEND,  'S'  SET,  'D'  DEL
--   then its expiry: ''  keep the record's deadline (or none),  'P'  none (persist),
--   or a number of ms: the deadline is the server's clock plus that (TIME)
{lock_args}{find_args}{feed_note}--
-- Records past their deadline (some sorted-set member of KEYS[deadlines] below the
-- clock) read as absent: a save of such a record creates it anew (a partial save:
-- 'gone'), a unique value such a record holds is free. The call sweeps them, and a
-- page of up to {sweep_page} others, as delete removes records (entries from the expiry
-- entries hash, since Redis expired their hashes and streams at the deadline){feed_expire}.
-- Reply: {saved}, or 'gone' (nothing written) when a partial save finds its record
--        deleted meanwhile: the caller raises DoesNotExist (no resurrection).
{find_reply}-- Errors: REPOCKET {{"code": "wrongtype", "key", "expected", "actual"}}
--         REPOCKET {{"code": "pointer_missing", "key"}}
--         REPOCKET {{"code": "unique", "fields", "values", "owner", "id"}}
--         REPOCKET {{"code": "too_large", "key", "size", "limit"}}
{lock_errors}"""

_SAVE_FRAME = """
local R, MAX_BYTES = tonumber(ARGV[1]), tonumber(ARGV[2])
local S = {n_streams}
local IS_ENVELOPE = {is_envelope}
-- HMGET of a stored record: its id, then the fields indexes and constraints read
local READ = {read_fields}
local TRACKED = {{{tracked_set}}}

-- Where each record's keys and arguments are.
local records = {{}}
local NEEDS_CLOCK = false  -- whether a record gets a deadline (then TIME is read)
local key_at, arg_at = {first_record_key}, 3
for r = 1, R do
  local n_set, n_del, n_ptr = tonumber(ARGV[arg_at + 2]), tonumber(ARGV[arg_at + 3]),
    tonumber(ARGV[arg_at + 4])
  local record = {{hash = KEYS[key_at], first_stream = key_at + 1, first_pointer = key_at + 1 + S,
                  n_ptr = n_ptr, id = ARGV[arg_at], partial = ARGV[arg_at + 1] == '1',
                  first_set = arg_at + 5, n_set = n_set, n_del = n_del}}
  record.first_del = record.first_set + 2 * n_set
  record.first_op = record.first_del + n_del{expected}
  record.ttl_op = ARGV[record.first_op + 2 * S{lock_arg}]
  NEEDS_CLOCK = NEEDS_CLOCK or (record.ttl_op ~= '' and record.ttl_op ~= 'P')
  records[r] = record
  key_at = key_at + 1 + S + n_ptr
  arg_at = record.first_op + 2 * S{lock_arg} + 1
end

-- The tracked values a record holds once written.
local function new_values(record)
  local values = {{}}
  if record.partial then
    for field, value in pairs(record.old) do values[field] = value end
  end
  for i = record.first_set, record.first_del - 1, 2 do
    if TRACKED[ARGV[i]] then values[ARGV[i]] = canonical(ARGV[i + 1], IS_ENVELOPE) or nil end
  end
  for i = record.first_del, record.first_op - 1 do values[ARGV[i]] = nil end
  return values
end

-- An error reply unless the ByteStream at KEYS[at] is a string (or absent) that an
-- APPEND of `data` keeps within MAX_BYTES.
local function check_stream(at, op, data)
  local key = KEYS[at]
  if op ~= 'A' then return check_type(key, 'string') end
  local length = redis.pcall('STRLEN', key)
  if is_error(length) then return pcall_failure(key, 'string', length) end
  if length + #data > MAX_BYTES then
    return fail('too_large', {{key = key, size = length + #data, limit = MAX_BYTES}})
  end
  return nil
end

local function check_pointers(record)
  for i = record.first_pointer, record.first_pointer + record.n_ptr - 1 do
    local target = redis.call('TYPE', KEYS[i])['ok']
    if target == 'none' then return fail('pointer_missing', {{key = KEYS[i]}}) end
    if target ~= 'hash' then
      return fail('wrongtype', {{key = KEYS[i], expected = 'hash', actual = target}})
    end
  end
  return nil
end

local function write_stream(key, op, data)
  if op == 'A' then redis.call('APPEND', key, data)
  elseif op == 'S' then redis.call('SET', key, data)
  elseif op == 'D' then redis.call('DEL', key)
  end
end
"""

_SAVE_CHECK = """
-- Reads what a record holds and checks everything its write needs: an error reply,
-- 'gone', or nil.
local function check(record, claimed, unique_checked)
  local raw = redis.pcall('HMGET', record.hash, unpack(READ))  -- also its type check
  if is_error(raw) then return pcall_failure(record.hash, 'hash', raw) end
  if record.expired then raw = NOTHING end  -- past its deadline: absent, being swept
  record.deadline = not record.expired and deadline_of(EXPIRY, record.id) or nil
  local err
  for s = 1, S do
    local op = record.first_op + 2 * s - 2
    err = check_stream(record.first_stream + s - 1, ARGV[op], ARGV[op + 1])
    if err then return err end
  end
  err = check_pointers(record)
  if err then return err end
  local exists = raw[1] ~= false
  if record.partial and not exists then return 'gone' end{check_version}{note_exists}
  local old, defaulted = {{}}, false
{read_old}
  record.old = old
  -- entries of a record are trusted (unchanged ones not rewritten) unless a field was
  -- absent: nothing indexed its default yet
  record.known = record.partial and not defaulted
  local new = new_values(record)
  record.new = new
  local owner
{check_uniques}
  return nil
end
"""

_SAVE_WRITE = """
local function write(record)
{write_hash}
  if record.n_del > 0 then
    redis.call('HDEL', record.hash, unpack(ARGV, record.first_del, record.first_op - 1))
  end
  for s = 1, S do
    local op = record.first_op + 2 * s - 2
    write_stream(KEYS[record.first_stream + s - 1], ARGV[op], ARGV[op + 1])
  end
  local id, old, new, known = record.id, record.old, record.new, record.known
{write_entries}{write_feed}
  write_expiry(record)
end

-- @find
{own_expired}
local err = {model_checks}
if err then return err end
for _, record in ipairs(records) do
  err = check(record, claimed, unique_checked)
  if err then return err end
end
{unchecked_uniques}
err = write_sweep()  -- its first write is the id set's type check: nothing written before
if err then return err end
-- The first write doubles as the id set's type check: nothing is written before it.
local ids = {{}}
for r, record in ipairs(records) do ids[r] = record.id end
local added = redis.pcall('SADD', K.ids, unpack(ids))
if is_error(added) then return pcall_failure(K.ids, 'set', added) end
for _, record in ipairs(records) do write(record) end
{save_reply}"""


def _read_fields(meta: Options, fields: list[str]) -> str:
    """READ, the HMGET of a stored record: its id, its version (optimistic_lock), then
    the tracked ``fields``."""
    version = [keyspace.VERSION_FIELD] if meta.optimistic_lock else []
    return lua_list([meta.pk_name, *version, *fields])

SWEEP_PAGE = 32  # records past their deadline one write call sweeps besides its own

_EXPIRY_PRELUDE = """
-- Expiry: nil unless some record of the model has a deadline or this call sets one (then
-- the clock, and whether any deadline passed). The expiry entries hash is type-checked
-- then, before any write.
local EXPIRY, expiry_err = expiry_state(K.deadlines, {needs_clock})
if expiry_err then return expiry_err end
if EXPIRY then
  expiry_err = check_type(K.expiry_entries, 'hash')
  if expiry_err then return expiry_err end
end
"""

_SWEEP = """
-- Sweeping records past their deadline, exactly as delete removes records: their index
-- entries and unique claims (from the values kept in K.expiry_entries: Redis expired
-- their hashes at the deadline), id-set and deadline entries; the hash and streams too
-- for a record of this call (in KEYS), which may outlive its deadline by a millisecond.
-- Every read happens while planning (before the call's first write).
local sweep, sweeping, foreign = {{}}, {{}}, {{}}
plan_sweep = function(id, own)
  if sweeping[id] then return nil end
  local record = {{id = id, own = own}}
  local old = {{}}
{read_kept}
  record.old = old
  local owner
{read_claims}
  sweeping[id] = record
  sweep[#sweep + 1] = record
  return nil
end

write_sweep = function()
  -- members that are not record ids (another tool's) would hold the page's first places
  if #foreign > 0 then redis.call('ZREM', K.deadlines, unpack(foreign)) end
  if #sweep == 0 then return nil end
  local ids = {{}}
  for i, record in ipairs(sweep) do ids[i] = record.id end
  local removed = redis.pcall('SREM', K.ids, unpack(ids))  -- also the id set's type check
  if is_error(removed) then return pcall_failure(K.ids, 'set', removed) end
  redis.call('ZREM', K.deadlines, unpack(ids))
{forget_kept}
  for _, record in ipairs(sweep) do
    local id, old = record.id, record.old
{delete_entries}
{feed}
{own_keys}
  end
  return nil
end
"""

_SWEEP_DUE_PAGE = """
-- A page of other records past their deadline.
plan_due_sweep = function()
  for _, id in ipairs(due_ids(EXPIRY, {page})) do
    if string.match(id, UUID_PATTERN) then
      local err = plan_sweep(id, nil)
      if err then return err end
    else
      foreign[#foreign + 1] = id  -- never a key name: only removed from the deadlines
    end
  end
  return nil
end
"""

_OWN_EXPIRED = """-- Records of this call past their deadline read as absent (and are swept first).
if EXPIRY and EXPIRY.due then
  NOTHING = {{}}
  for i = 1, #READ do NOTHING[i] = false end
  for _, record in ipairs(records) do
    if is_expired(EXPIRY, record.id) then
      record.expired = true
      local err = plan_sweep(record.id, record)
      if err then return err end
    end
  end
  local err = plan_due_sweep()
  if err then return err end
end
"""

_LIVE_OWNER = """
local claimed, unique_checked = {{}}, {{}}
{sweep}
-- What the HMGET of a record past its deadline counts as: nothing stored (made below,
-- when a record of this call is past its deadline).
local NOTHING

-- The other record holding a unique value, or nil (then it is claimed for `id`); a
-- record past its deadline holds nothing: it is swept before this call writes.
local function live_owner(key, value, id)
  local owner, err = unique_owner(key, value, id, claimed)
  if err or not owner then return owner, err end
  local slot = key .. '\\0' .. value
  if claimed[slot] == owner or not is_expired(EXPIRY, owner) then return owner end
  err = plan_sweep(owner, nil)
  if err then return nil, err end
  if claimed[slot] and claimed[slot] ~= id then return claimed[slot] end
  claimed[slot] = id
  return nil
end
"""

_WRITE_EXPIRY = """
-- A record's deadline after its write: set ('<ms>'), cleared ('P') or kept (''). A SET of
-- a ByteStream clears its expiry and an APPEND may create its key: every stream of a
-- record with a deadline gets it again (PEXPIREAT of an absent key does nothing).
local function write_expiry(record)
  local id, deadline = record.id, record.deadline
  if record.ttl_op == 'P' then
    if deadline then
      redis.call('ZREM', K.deadlines, id)
{forget_one}
      redis.call('PERSIST', record.hash)
      for s = 1, S do redis.call('PERSIST', KEYS[record.first_stream + s - 1]) end
    end
    return
  end
  if record.ttl_op ~= '' then
    deadline = EXPIRY.now + tonumber(record.ttl_op)
    redis.call('ZADD', K.deadlines, deadline_text(deadline), id)
    redis.call('PEXPIREAT', record.hash, deadline_text(deadline))
  end
  if not deadline then return end
  for s = 1, S do
    redis.call('PEXPIREAT', KEYS[record.first_stream + s - 1], deadline_text(deadline))
  end
{keep_one}
end
"""


_OWN_KEYS = """    local own = record.own
    if own then
      redis.call('DEL', own.hash)
      for s = own.first_stream, own.first_stream + S - 1 do redis.call('DEL', KEYS[s]) end
    end"""


def _sweep(meta: Options, claims_table: str, own_records: bool = True) -> str:
    """The sweep of records past their deadline (plan, then write), for save, delete and
    update. ``own_records``: whether a record of the call itself may be swept (its hash
    and streams are in KEYS); update never does, as it skips records past their deadline."""
    tracked = bool(tracked_fields(meta))
    read_kept = ("  local kept = redis.call('HGET', K.expiry_entries, id)\n"
                 "  if kept then old = cmsgpack.unpack(kept) end") if tracked else \
        "  -- no field is indexed or unique: nothing kept"
    forget_kept = ("  redis.call('HDEL', K.expiry_entries, unpack(ids))" if tracked
                   else "  -- no field is indexed or unique: nothing kept")
    claims = _read_claims(meta).replace("claims_checked", claims_table)
    entries = _indent(_delete_entries(meta))
    feed = ("    -- the change feed: one 'expire' entry per record swept, in the sweeping script\n"
            "    redis.call('XADD', K.changes, 'MAXLEN', '~', FEED_MAXLEN, '*', 'op', 'expire',"
            " 'id', id)" if meta.changes else "    -- no change feed")
    # update sweeps only the owners of the claims it takes: no page of others
    template = _SWEEP + _SWEEP_DUE_PAGE if own_records else _SWEEP
    body = template.format(read_kept=read_kept, read_claims=claims, forget_kept=forget_kept,
                           delete_entries=entries, page=SWEEP_PAGE, feed=feed,
                           own_keys=_OWN_KEYS if own_records else
                           "    -- only other records: this call's own are never swept")
    # built only when the model has deadlines: a call without any defines no more closures
    return ("\nlocal plan_sweep, write_sweep, plan_due_sweep\n"
            "local function no_sweep() return nil end\n"
            "if not EXPIRY then\n  write_sweep, plan_due_sweep = no_sweep, no_sweep\nelse"
            + _indent(body) + "\nend\n")


def _write_expiry(meta: Options) -> str:
    tracked = bool(tracked_fields(meta))
    forget_one = ("      redis.call('HDEL', K.expiry_entries, id)" if tracked
                  else "      -- no field is indexed or unique: nothing kept")
    keep_one = ("  -- what its entries hold, for the sweep once Redis expired the hash\n"
                "  redis.call('HSET', K.expiry_entries, id, cmsgpack.pack(record.new))"
                if tracked else "  -- no field is indexed or unique: nothing to keep")
    return _WRITE_EXPIRY.format(forget_one=forget_one, keep_one=keep_one)


def _read_old(meta: Options, fields: list[str]) -> str:
    """Lua filling ``old`` from the HMGET reply ``raw`` (READ order: id, version first)."""
    lines = []
    for i, name in enumerate(fields, start=3 if meta.optimistic_lock else 2):
        target = lua_field("old", name)
        line = f"  {target} = canonical(raw[{i}], IS_ENVELOPE) or nil"
        if name in meta.absent_values():
            line += (f"\n  if exists and raw[{i}] == false then "
                     f"{target}, defaulted = ABSENT[{lua_string(name)}], true end")
        lines.append(line)
    return "\n".join(lines) if lines else "  -- no field is indexed or unique"


def _unique_values(meta: Options, group: tuple[str, ...], table: str) -> str:
    families = lua_list(meta.fields[name].family for name in group)
    values = "{" + ", ".join(lua_field(table, name) for name in group) + "}"
    return f"unique_field({families}, {values})"


def _check_uniques(meta: Options, fenced: bool = False) -> str:
    blocks = []
    for group in meta.unique_together:
        name = _unique_name(group)
        key = lua_field("K", f"uniq_{name}")
        fields_list = lua_list(group)
        shown = "{" + ", ".join(lua_field("new", f) for f in group) + "}"
        blocks.append(f"""  -- unique {'+'.join(group)}
  record.{_ident('uniq_old_' + name)} = {_unique_values(meta, group, 'old')}
  record.{_ident('uniq_new_' + name)} = {_unique_values(meta, group, 'new')}
  if record.{_ident('uniq_new_' + name)} ~= nil then
    owner, err = live_owner({key}, record.{_ident('uniq_new_' + name)}, record.id)
    if err then return err end
    if owner then
      return fail('unique', {{fields = {fields_list}, values = {shown}, owner = owner,
                             id = record.id}})
    end
    unique_checked[{key}] = true
  end""" + (_FENCE_UNCLAIMED.format(old=_ident('uniq_old_' + name),
                                     new=_ident('uniq_new_' + name),
                                     group=lua_string(",".join(group))) if fenced else ""))
    return "\n".join(blocks) if blocks else "  -- no unique constraint"


_FENCE_UNCLAIMED = """
  -- a value the record does not hold in this shard needs a live claim token for it
  if record.{new} ~= nil and record.{new} ~= record.{old}
      and not GRANTED[record.id .. '\\0' .. {group}] then
    return {{'unclaimed', record.id, {group}}}
  end"""


def _ident(name: str) -> str:
    """A Lua identifier made from field names (which are Python identifiers)."""
    return name if name not in _LUA_RESERVED else name + "_"


def _index_entry(meta: Options, name: str, deleting: bool) -> str:
    attribute = meta.fields[name]
    zset = lua_field("K", f"idx_{name}")
    null = keyspace.null_key(meta.prefix, name)
    nulls = lua_field("K", f"null_{name}") if null in meta.key_position else "nil"
    before = lua_field("old", name)
    after = "nil" if deleting else lua_field("new", name)
    call = (f"move_index_entry('{attribute.index_kind}', '{attribute.family}', {zset}, {nulls}, "
            f"id, {before}, {after}, {'true' if deleting else 'false'})")
    if deleting:
        return f"  {call}"
    return f"  if not (known and {before} == {after}) then\n    {call}\n  end"


def _write_entries(meta: Options, fenced: bool = False) -> str:
    lines = [f"  -- index of {name}\n" + _index_entry(meta, name, deleting=False)
             for name in meta.indexed]
    for group in meta.unique_together:
        name = _unique_name(group)
        key = lua_field("K", f"uniq_{name}")
        lines.append(f"  -- unique {'+'.join(group)}\n"
                     f"  move_claim({key}, id, record.{_ident('uniq_old_' + name)}, "
                     f"record.{_ident('uniq_new_' + name)}, known)")
        if fenced:
            lines.append(f"  retire_token(id, {lua_string(','.join(group))}, "
                         f"record.{_ident('uniq_old_' + name)}, "
                         f"record.{_ident('uniq_new_' + name)})")
    return "\n".join(lines) if lines else "  -- no index, no unique constraint"


def _model_checks(meta: Options) -> str:
    """The type checks of the model-wide keys the write may touch (but the id set and
    the unique hashes, whose first command doubles as their check)."""
    checks = []
    for name in meta.indexed:
        checks.append(f"check_type({lua_field('K', f'idx_{name}')}, 'zset')")
        if keyspace.null_key(meta.prefix, name) in meta.key_position:
            checks.append(f"check_type({lua_field('K', f'null_{name}')}, 'set')")
    if meta.changes:
        checks.append("check_type(K.changes, 'stream')")
    return "\n  or ".join(checks) + " or nil" if checks else "nil"


def _unchecked_uniques(meta: Options) -> str:
    if not meta.unique_together:
        return ""
    keys = ", ".join(lua_field("K", f"uniq_{_unique_name(group)}")
                     for group in meta.unique_together)
    return f"""-- A unique hash no claim was checked against (values None) may still be written to.
for _, key in ipairs({{{keys}}}) do
  if not unique_checked[key] then
    err = check_type(key, 'hash')
    if err then return err end
  end
end"""


# -- save: the fast path of one new record ---------------------------------------------
_SAVE_FAST = """
-- The common case, straight-line: one record saved whole (a new one: partial '0') that
-- sets no deadline, in a model none of whose records has one, with nothing stored under
-- the record's keys yet: one EXISTS tells all four, and then the deadlines, the hash and
-- the streams need no type check and hold no old value. The same checks in the same order
-- and the same writes as the general path below, which takes every other call.
if ARGV[1] == '1' and ARGV[4] == '0' then
  local n_set, n_del = tonumber(ARGV[5]), tonumber(ARGV[6])
  local first_del = 8 + 2 * n_set
  local first_op = first_del + n_del
  local hash = KEYS[{first}]
  if ARGV[first_op + {ttl_at}] == ''
      and redis.call('EXISTS', K.deadlines, hash{stream_keys}) == 0 then
    local id, n_ptr = ARGV[3], tonumber(ARGV[7])
{new_values}
{claim_values}{find}
    local err = {model_checks}
    if err then return err end
{stream_checks}
    for i = {first_pointer}, {last_pointer} + n_ptr do
      local target = redis.call('TYPE', KEYS[i])['ok']
      if target == 'none' then return fail('pointer_missing', {{key = KEYS[i]}}) end
      if target ~= 'hash' then
        return fail('wrongtype', {{key = KEYS[i], expected = 'hash', actual = target}})
      end
    end
{claims}
    -- the first write doubles as the id set's type check: nothing is written before it
    local added = redis.pcall('SADD', K.ids, id)
    if is_error(added) then return pcall_failure(K.ids, 'set', added) end
    if n_set > 0 then redis.call('HSET', hash, unpack(ARGV, 8, first_del - 1)) end
    -- (the fields to delete and the streams to delete are absent already)
{stream_writes}
{entries}
    return 'saved'
  end
end
"""

_FAST_FIND = """
    -- get_or_create: the record holding the wanted claim, if any, is the answer (its
    -- own hash, by id, is absent: the EXISTS above)
    local FIND, owner = ARGV[first_op + {find_at}], nil
    local found_owner = false  -- the claim's holder as read here (then not read again)
{branches}
    else
      return redis.error_reply('ERR get_or_create: unknown unique constraint ' .. tostring(FIND))
    end
    if owner then
      local owner_key = {prefix} .. owner
      local flat = redis.pcall('HGETALL', owner_key)
      if is_error(flat) then return pcall_failure(owner_key, 'hash', flat) end
      if #flat > 0 then
        local found_streams = {{}}
{streams}
        return {{'found', owner, flat, found_streams}}
      end
    end
"""


def _fast_new_values(meta: Options, is_envelope: bool) -> str:
    """Lua filling ``new``, the tracked values of the record's fields set (its HSET pairs)."""
    fields = tracked_fields(meta)
    if not fields:
        return "    -- no field is indexed or unique"
    value = "canonical(ARGV[i + 1], true) or nil" if is_envelope else "ARGV[i + 1]"
    test = " or ".join(f"field == {lua_string(name)}" for name in fields)
    return ("    local new = {}  -- the tracked values it sets (the canonical ones)\n"
            "    for i = 8, first_del - 1, 2 do\n"
            "      local field = ARGV[i]\n"
            f"      if {test} then new[field] = {value} end\n"
            "    end")


_NORMAL_FORMS = {"float": "float_normal_form", "exact": "exact_normal_form",
                 "datetime": "datetime_normal_form"}


def _fast_claim_value(meta: Options, group: tuple[str, ...], table: str = "new") -> str:
    """Lua for a unique constraint's claim in the record's ``table`` values: lib/index's
    unique_field, written out per family (a text or json value is its own normal form)."""
    if len(group) > 1:
        return _unique_values(meta, group, table)
    name = group[0]
    value = lua_field(table, name)
    function = _NORMAL_FORMS.get(meta.fields[name].family)
    return f"{value} and {function}({value})" if function else value


def _fast_claim_values(meta: Options) -> str:
    lines = [f"    local {_ident('claim_' + _unique_name(group))} = "
             f"{_fast_claim_value(meta, group)}  -- unique {'+'.join(group)}"
             for group in meta.unique_together]
    return "\n".join(lines) + "\n" if lines else ""


def _fast_find(meta: Options, find_at: int, sharded: bool = False) -> str:
    """Lua answering get_or_create's call with the record holding the wanted claim
    (``sharded``: the records' prefix is the shard's, in the ARGV after the claim)."""
    branches = [f"    if FIND == {lua_string(meta.pk_name)} then\n"
                "      -- nothing to find: no record has this id yet"]
    for group in meta.unique_together:
        name = _unique_name(group)
        key = lua_field("K", f"uniq_{name}")
        claim = _ident("claim_" + name)
        branches.append(
            f"    elseif FIND == {lua_string('+'.join(group))} then\n"
            f"      if {claim} ~= nil then\n"
            f"        owner = redis.pcall('HGET', {key}, {claim})  -- also its type check\n"
            f"        if is_error(owner) then return pcall_failure({key}, 'hash', owner) end\n"
            "        found_owner = owner\n      end")
    streams = "\n".join(
        f"        local stream_key_{i} = owner_key .. {lua_string(f':field:{name}')}\n"
        f"        found_streams[{i}] = redis.pcall('GET', stream_key_{i})\n"
        f"        if is_error(found_streams[{i}]) then\n"
        f"          return read_failure(stream_key_{i}, found_streams[{i}])\n        end"
        for i, name in enumerate(meta.stream_names, start=1))
    return _FAST_FIND.format(find_at=find_at, branches="\n".join(branches),
                             prefix=f"ARGV[first_op + {find_at + 1}]" if sharded
                             else lua_string(meta.prefix + ":"),
                             streams=streams or "        -- no ByteStream")


def _fast_claims(meta: Options, find: bool) -> str:
    """Lua checking the record's unique claims, in the general path's order (each claim,
    then the type of each unique hash no claim read); get_or_create's claim on the
    constraint it finds by was read by the find."""
    if not meta.unique_together:
        return "    -- no unique constraint"
    blocks = []
    for group in meta.unique_together:
        name = _unique_name(group)
        key = lua_field("K", f"uniq_{name}")
        claim = _ident("claim_" + name)
        shown = "{" + ", ".join(lua_field("new", f) for f in group) + "}"
        read = (f"      local owner = redis.pcall('HGET', {key}, {claim})  -- also its type check\n"
                f"      if is_error(owner) then return pcall_failure({key}, 'hash', owner) end\n")
        if find:
            read = (f"      local owner = found_owner\n"
                    f"      if FIND ~= {lua_string('+'.join(group))} then\n"
                    + _indent(read.replace("local owner", "owner", 1)) + "      end\n")
        blocks.append(f"""    -- unique {'+'.join(group)}
    if {claim} ~= nil then
{read}      if owner and owner ~= id then
        return fail('unique', {{fields = {lua_list(group)}, values = {shown}, owner = owner,
                               id = id}})
      end
    end""")
    for group in meta.unique_together:
        name = _unique_name(group)
        blocks.append(f"    if {_ident('claim_' + name)} == nil then\n"
                      f"      err = check_type({lua_field('K', f'uniq_{name}')}, 'hash')\n"
                      "      if err then return err end\n    end")
    return "\n".join(blocks)


def _fast_entries(meta: Options) -> str:
    """Lua writing a new record's index entries and claims (lib/index's move_index_entry
    and move_claim with nothing before)."""
    lines = []
    for name in meta.indexed:
        attribute = meta.fields[name]
        zset = lua_field("K", f"idx_{name}")
        value = lua_field("new", name)
        nulls = (lua_field("K", f"null_{name}")
                 if keyspace.null_key(meta.prefix, name) in meta.key_position else None)
        if attribute.index_kind == "score":
            score = (f"datetime_score({value})" if attribute.family == "datetime"
                     else f"tonumber({value})")
            added = f"redis.call('ZADD', {zset}, format_score({score} or 0), id)"
            absent = [f"redis.call('ZREM', {zset}, id)"]
        else:
            added = f"redis.call('ZADD', {zset}, 0, lex_member({value}, id))"
            absent = []
        if nulls:
            added += f"\n      redis.call('SREM', {nulls}, id)"
            absent.append(f"redis.call('SADD', {nulls}, id)")
        text = f"    -- index of {name}\n    if {value} ~= nil then\n      {added}\n"
        if absent:
            text += "    else\n" + "".join(f"      {line}\n" for line in absent)
        lines.append(text + "    end")
    for group in meta.unique_together:
        name = _unique_name(group)
        claim = _ident("claim_" + name)
        lines.append(f"    -- unique {'+'.join(group)}\n    if {claim} ~= nil then "
                     f"redis.call('HSET', {lua_field('K', f'uniq_{name}')}, {claim}, id) end")
    return "\n".join(lines) if lines else "    -- no index, no unique constraint"


def _save_fast(meta: Options, is_envelope: bool, find: bool, sharded: bool = False) -> str:
    """The save (or get_or_create) script's fast path (models without optimistic_lock or
    a change feed)."""
    first = 1 + len(meta.write_keys(meta.prefix))
    streams = list(meta.stream_names)
    stream_checks, stream_writes = [], []
    for s, name in enumerate(streams):
        op = f"ARGV[first_op + {2 * s}]" if s else "ARGV[first_op]"
        data = f"ARGV[first_op + {2 * s + 1}]"
        key = f"KEYS[{first + 1 + s}]"
        stream_checks.append(
            f"    -- {name}: absent, so only an APPEND's size is checked\n"
            f"    if {op} == 'A' and #{data} > MAX_BYTES then\n"
            f"      return fail('too_large', {{key = {key}, size = #{data}, "
            "limit = MAX_BYTES})\n    end")
        stream_writes.append(
            f"    if {op} == 'S' then redis.call('SET', {key}, {data})\n"
            f"    elseif {op} == 'A' then redis.call('APPEND', {key}, {data}) end")
    if streams:
        stream_checks.insert(0, "    local MAX_BYTES = tonumber(ARGV[2])")
    model_checks = _model_checks(meta)
    return _SAVE_FAST.format(
        first=first, ttl_at=2 * len(streams),
        stream_keys="".join(f", KEYS[{first + 1 + s}]" for s in range(len(streams))),
        model_checks=model_checks.replace("\n  or", "\n      or"),
        stream_checks="\n".join(stream_checks) or "    -- no ByteStream",
        first_pointer=first + 1 + len(streams), last_pointer=first + len(streams),
        new_values=_fast_new_values(meta, is_envelope), claim_values=_fast_claim_values(meta),
        find=_fast_find(meta, 2 * len(streams) + 1, sharded) if find else "",
        claims=_fast_claims(meta, find),
        stream_writes="\n".join(stream_writes) or "    -- no ByteStream",
        entries=_fast_entries(meta))


def save_source(meta: Options, is_envelope: bool, find: bool = False,
                fenced: bool = False, sharded: bool = False) -> str:
    """The per-model save script, its libraries as ``-- @include`` lines; with ``find``,
    get_or_create's: the save of one new record, unless a record already holds the
    unique claim the call names (then that record is the reply, and nothing is written).
    With ``fenced`` (Redis Cluster, a model with unique constraints): the save that also
    receives the tokens of the global claims it relies on and writes nothing when one
    was revoked in its shard (core/claims.py). ``sharded`` (with ``find``): get_or_create's
    Redis Cluster variant, the shard's prefix in ARGV (a lookup by id)."""
    fields = tracked_fields(meta)
    streams = list(meta.stream_names)
    lock, feed = meta.optimistic_lock, meta.changes
    header = _SAVE_HEADER.format(
        operation="get_or_create" if find else "save", purpose=_FIND_PURPOSE if find else "",
        find_args=(_FIND_ARGS + (_FIND_SHARD_ARG if sharded else "")) if find else "",
        find_reply=_FIND_REPLY if find else "",
        model=meta.name, codec="envelope" if is_envelope else "compact",
        keys="\n".join(_keys_header(meta)), prefix=meta.prefix, n_streams=len(streams),
        streams="(" + ", ".join(streams) + ")" if streams else "(none)",
        lock_args=_LOCK_ARGS if lock else "", feed_note=_feed_note(meta) if feed else "",
        saved="{'saved', each record's new version}" if lock else "'saved'",
        lock_errors=_LOCK_ERRORS if lock else "", sweep_page=SWEEP_PAGE,
        feed_expire=" (each with an 'expire' entry in the change feed)" if feed else "")
    if fenced:
        header = header.replace("-- Errors: REPOCKET", _FENCE_NOTE + "-- Errors: REPOCKET", 1)
    frame = _SAVE_FRAME.format(
        n_streams=len(streams), is_envelope="true" if is_envelope else "false",
        read_fields=_read_fields(meta, fields),
        tracked_set=", ".join(f"[{lua_string(name)}] = true" for name in fields),
        first_record_key=1 + len(meta.write_keys(meta.prefix)),
        expected="\n  record.expected = ARGV[record.first_op + 2 * S]" if lock else "",
        lock_arg=" + 1" if lock else "")
    if lock:
        frame += _VERSION_LOCAL
    if feed:
        frame += _feed_frame(meta)
    expiry = (_EXPIRY_PRELUDE.format(needs_clock="NEEDS_CLOCK")
              + _LIVE_OWNER.format(sweep=_sweep(meta, "unique_checked")))
    check = _SAVE_CHECK.format(read_old=_read_old(meta, fields),
                               check_uniques=_check_uniques(meta, fenced),
                               check_version=_CHECK_VERSION if lock else "",
                               note_exists="\n  record.exists = exists" if feed else "")
    reply = _LOCKED_REPLY if lock else "return 'saved'\n"
    if fenced:
        reply = (reply.replace("return reply", "return retired_reply(reply)") if lock
                 else "return retired_reply('saved')\n")
    write = _SAVE_WRITE.format(write_entries=_write_entries(meta, fenced),
                               model_checks=_model_checks(meta),
                               unchecked_uniques=_unchecked_uniques(meta),
                               write_hash=_WRITE_HASH_LOCKED if lock else _WRITE_HASH,
                               write_feed=_write_feed(
                                   meta, "record.exists and 'update' or 'create'",
                                   ", 'fields', changed_fields(record)") if feed else "",
                               save_reply=reply,
                               own_expired=_OWN_EXPIRED.format())
    write = write.replace("-- @find\n", _find_block(meta, sharded) + "\n" if find else "", 1)
    # the fenced save has no fast path: every write goes through the token bookkeeping
    fast = "" if lock or feed or fenced else (_save_fast(meta, is_envelope, find, sharded)
                                              + MORE_LIBRARIES + "\n")
    fence = _FENCE_CHECK if fenced else ""
    return (header + "\n-- @libraries\n\n" + _keys_table(meta) + "\n" + fence + fast
            + _defaults_table(meta, fields) + "\n" + frame + expiry + check
            + _write_expiry(meta) + write)


_FENCE_NOTE = """\
-- Redis Cluster fencing (core/claims.py, lua/revoke.lua): after everything above,
--   KEYS  (last but one) the shard's fence hash   <shard prefix>:fences
--         (the last) the shard's token hash       <shard prefix>:tokens
--   ARGV  T pairs: a constraint's fields (comma-joined), the token of the global claim
--         of its new value a record relies on ('<id>@<ms>@<nonce>'); then T (the last)
-- Or {'fenced', token...} (nothing written): those tokens were revoked in this shard
--   (their claims were taken over or dropped); the caller runs the claim protocol again;
-- or {'unclaimed', id, fields} (nothing written): the record would take a unique value
--   it does not hold in this shard without a token for it; the caller claims it.
-- A record moved off a value it held retires the token it held it by (into the fence
-- hash: a save handed it is refused from then on); the reply is then
--   {'retired', the reply above, fields, token, ...}: the caller releases the value's
--   claim only if it is still exactly that token.
"""
_TOKEN_BOOKKEEPING_KEYS = """\
local FENCES, TOKENS = KEYS[#KEYS - 1], KEYS[#KEYS]
local GRANTED, RETIRED = {}, {}  -- '<id>\\0<fields>' -> token given; fields, token...
do
  local err = check_type(FENCES, 'hash') or check_type(TOKENS, 'hash')
  if err then return err end
end
"""
_TOKEN_BOOKKEEPING = """\
-- The token a record holds a unique value by, kept in this shard with its value: retired
-- (revoked: a save handed it is refused from then on) when the record moves off the
-- value, replaced by the one granted for the new value.
local function retire_token(id, fields, old, new)
  local slot = id .. '\\0' .. fields
  if old ~= nil and old ~= new then
    local held = redis.call('HGET', TOKENS, slot)
    if held then
      local time = redis.call('TIME')
      redis.call('HSET', FENCES, held,
                 tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
      RETIRED[#RETIRED + 1] = fields
      RETIRED[#RETIRED + 1] = held
    end
    redis.call('HDEL', TOKENS, slot)
  end
  if new ~= nil and GRANTED[slot] then redis.call('HSET', TOKENS, slot, GRANTED[slot]) end
end

"""
_FENCE_CHECK = """\
-- Redis Cluster fencing: a token revoked in this shard (its claim was taken over, or
-- dropped, after a check that the record did not hold the value; or retired when its
-- record moved off the value) refuses the whole write, before any record is read and
-- anything written: the value may be another record's now.
""" + _TOKEN_BOOKKEEPING_KEYS + """\
do
  local n_tokens, fenced = tonumber(ARGV[#ARGV]), {'fenced'}
  for i = #ARGV - 2 * n_tokens, #ARGV - 1, 2 do
    local token = ARGV[i + 1]
    if redis.call('HEXISTS', FENCES, token) == 1 then fenced[#fenced + 1] = token end
    GRANTED[string.match(token, '^([^@]*)@') .. '\\0' .. ARGV[i]] = token
  end
  if #fenced > 1 then return fenced end
end

""" + _TOKEN_BOOKKEEPING + """\
local function retired_reply(reply)
  if #RETIRED == 0 then return reply end
  return {'retired', reply, unpack(RETIRED)}
end

"""
_LOCK_ARGS = """--   then (optimistic_lock) the version the instance holds: '0' for a new record, ''
--   for none (force_insert: no check); a record at another version is stale
"""
_LOCK_ERRORS = """\
--         REPOCKET {"code": "stale", "id", "expected", "found"}  (optimistic_lock)
--         REPOCKET {"code": "bad_version", "key", "value"}  (a stored version, not a count)
"""
_VERSION_LOCAL = """
-- optimistic_lock: the hash field holding a record's version (no field is named so)
local VERSION = ':version'
"""
_CHECK_VERSION = """
  -- optimistic_lock: the stored version must be the one the instance holds
  local stored_version = raw[2]
  record.version = tonumber(stored_version or '0')
  if not record.version or record.version < 0 or record.version % 1 ~= 0 then
    return fail('bad_version', {key = record.hash, value = stored_version})
  end
  if record.expected ~= '' and tonumber(record.expected) ~= record.version then
    return fail('stale', {id = record.id, expected = tonumber(record.expected),
                          found = record.version})
  end"""
_WRITE_HASH = """  if record.n_set > 0 then
    redis.call('HSET', record.hash, unpack(ARGV, record.first_set, record.first_del - 1))
  end"""
_WRITE_HASH_LOCKED = """  -- the new version goes with the fields, in the same HSET
  record.version = record.version + 1
  if record.n_set > 0 then
    redis.call('HSET', record.hash, VERSION, record.version,
               unpack(ARGV, record.first_set, record.first_del - 1))
  else
    redis.call('HSET', record.hash, VERSION, record.version)
  end"""
_LOCKED_REPLY = """local reply = {'saved'}
for r, record in ipairs(records) do reply[r + 1] = record.version end
return reply
"""


def _feed_note(meta: Options) -> str:
    version = ", version" if meta.optimistic_lock else ""
    return (f"-- Each record written appends one entry to the change feed (K.changes,\n"
            f"--   XADD MAXLEN ~ {meta.changes_maxlen}): op 'create' or 'update', id, fields\n"
            f"--   (the names it sets, clears or changes, comma-separated){version}.\n")


def _feed_frame(meta: Options) -> str:
    return f"""
-- The change feed keeps about FEED_MAXLEN entries (XADD MAXLEN ~).
local FEED_MAXLEN = {meta.changes_maxlen}
local FEED_FIELDS = {lua_list(meta.feed_fields)}  -- every field but the id, in order
local STREAM_NAMES = {lua_list(meta.stream_names)}

-- The names of the fields a record's write sets, clears or changes (a stream op), in
-- declaration order, comma-separated: the 'fields' of its change entry.
local function changed_fields(record)
  local changed = {{}}
  for i = record.first_set, record.first_del - 1, 2 do changed[ARGV[i]] = true end
  for i = record.first_del, record.first_op - 1 do changed[ARGV[i]] = true end
  for s = 1, S do
    if ARGV[record.first_op + 2 * s - 2] ~= '' then changed[STREAM_NAMES[s]] = true end
  end
  local names = {{}}
  for _, name in ipairs(FEED_FIELDS) do
    if changed[name] then names[#names + 1] = name end
  end
  return table.concat(names, ',')
end
"""


def _write_feed(meta: Options, op: str, fields: str) -> str:
    version = ", 'version', record.version" if meta.optimistic_lock else ""
    return f"""
  -- the change feed: this write's entry, appended by the script that writes
  redis.call('XADD', K.changes, 'MAXLEN', '~', FEED_MAXLEN, '*',
             'op', {op}, 'id', id{fields}{version})"""


_FIND_PURPOSE = """-- get_or_create: finds the record holding a unique claim (its id, a unique field
-- or a unique_together group), or else creates one: under any race exactly one
-- caller creates it and every caller gets the same record.
"""
_FIND_ARGS = """-- then ARGV  what to find by: the id field's name (the record's own hash), or a
--   unique constraint's field names joined by '+' (R is 1: one new record, partial '0')
"""
_FIND_REPLY = """--        Or {'found', id, HGETALL flat list, {stream values | false}}: the record
--        that holds the claim (nothing written). Its hash and streams are built from the
--        prefix and the stored owner id, a UUID (the documented exception to "every key
--        in KEYS", as for get's Pointer targets: the owner is only known once read).
"""


_FIND_SHARD_ARG = """\
-- then ARGV  the shard's prefix and ':' (Redis Cluster, a lookup by id: the record
--   found is read at that prefix .. id, its own hash, in KEYS)
"""


def _find_block(meta: Options, sharded: bool = False) -> str:
    """Lua returning the record that holds the claim ARGV names (the id, or a unique
    constraint's value), if one does. ``sharded``: the records' prefix is the shard's, in
    the ARGV after the claim (Redis Cluster)."""
    branches = [f"if FIND == {lua_string(meta.pk_name)} then\n"
                "  owner = records[1].id  -- the record's own hash, in KEYS"]
    for group in meta.unique_together:
        key = lua_field("K", f"uniq_{_unique_name(group)}")
        branches.append(f"elseif FIND == {lua_string('+'.join(group))} then\n"
                        f"  owner, find_err = find_owner({key}, "
                        f"{_unique_values(meta, group, 'wanted')})")
    streams = "\n".join(
        f"  local stream_key_{i} = owner_key .. {lua_string(f':field:{name}')}\n"
        f"  found_streams[{i}] = redis.pcall('GET', stream_key_{i})\n"
        f"  if is_error(found_streams[{i}]) then\n"
        f"    return read_failure(stream_key_{i}, found_streams[{i}])\n  end"
        for i, name in enumerate(meta.stream_names, start=1))
    prefix = "ARGV[arg_at + 1]" if sharded else lua_string(meta.prefix + ":")
    return f"""
-- get_or_create: the record that holds the wanted claim, if any, is the answer.
-- The id of the record holding `claim` in the unique hash `key` (the HGET doubles as
-- the hash's type check: an error reply comes second).
local function find_owner(key, claim)
  if claim == nil then return nil end
  local owner = redis.pcall('HGET', key, claim)
  if is_error(owner) then return nil, pcall_failure(key, 'hash', owner) end
  return owner or nil
end

local FIND = ARGV[arg_at]
local wanted = new_values(records[1])
local owner, find_err
{chr(10).join(branches)}
else
  return redis.error_reply('ERR get_or_create: unknown unique constraint ' .. tostring(FIND))
end
if find_err then return find_err end
local owner_key = owner and {prefix} .. owner
local flat = owner and redis.pcall('HGETALL', owner_key)
if flat and is_error(flat) then return pcall_failure(owner_key, 'hash', flat) end
if flat and #flat > 0 and not is_expired(EXPIRY, owner) then
  local found_streams = {{}}
{streams or '  -- no ByteStream'}
  return {{'found', owner, flat, found_streams}}
end"""


# -- delete ---------------------------------------------------------------------------------
_DELETE = """#!lua flags=allow-oom
-- delete {model} ({codec} codec), generated by repocket.core.luagen from the model.
-- Removes records with their ByteStreams, index entries, unique claims and id-set
-- entries, atomically; every check runs before the first write. It only frees
-- memory, so it runs even over maxmemory (allow-oom), where it is how an
-- application makes room.
--
{keys}
-- then, for each record: its hash                       {prefix}:<id>
--   and its {n_streams} ByteStream keys {streams}       <hash key>:field:<name>
-- ARGV[1 ..]  the records' ids, in KEYS order
{lock_args}{feed_note}--
-- A record past its deadline (KEYS[deadlines]) reads as absent (not counted), and is
-- swept with a page of up to {sweep_page} others, as records are deleted (their entries
-- from the expiry entries hash: Redis expired their hashes at the deadline){feed_expire}.
--
-- Reply: {{records deleted, keys deleted (hashes + existing streams)}}.
-- Errors: REPOCKET {{"code": "wrongtype", "key", "expected", "actual"}}
{lock_errors}
-- @libraries

{keys_table}
{fast}
{defaults}
local S = {n_streams}
local IS_ENVELOPE = {is_envelope}
-- HMGET of a stored record: its id, then the fields indexes and constraints read
local READ = {read_fields}
local FIRST = {first_record_key}
local N = {n_records}{feed_frame}

local err = {model_checks}
if err then return err end
{expiry}
local claims_checked = {{}}
{sweep}
-- Reads every record (the HMGET doubles as its type check) and its claims; one past its
-- deadline is left to the sweep.
local records = {{}}
for r = 1, N do
  local at = FIRST + (r - 1) * (S + 1)
  local record = {{hash = KEYS[at], at = at, first_stream = at + 1, id = ARGV[r]}}
  local raw = redis.pcall('HMGET', record.hash, unpack(READ))
  if is_error(raw) then return pcall_failure(record.hash, 'hash', raw) end
  for s = 1, S do
    err = check_type(KEYS[at + s], 'string')
    if err then return err end
  end
  if is_expired(EXPIRY, record.id) then
    record.expired = true
    err = plan_sweep(record.id, record)
    if err then return err end
  end
  local exists = raw[1] ~= false and not record.expired{check_version}
  local old, defaulted = {{}}, false
{read_old}
  record.old = old
  local owner
{read_claims}
  records[r] = record
end
err = plan_due_sweep()
if err then return err end
{unchecked_uniques}
err = write_sweep()  -- its first write is the id set's type check: nothing written before
if err then return err end
local ids = {{}}
for r, record in ipairs(records) do ids[r] = record.id end
if #ids > 0 then
  -- the first write doubles as the id set's type check: nothing is written before it
  local removed = redis.pcall('SREM', K.ids, unpack(ids))
  if is_error(removed) then return pcall_failure(K.ids, 'set', removed) end
end

local found, deleted = 0, 0
for _, record in ipairs(records) do
  if not record.expired then
    local id, old = record.id, record.old
{delete_entries}
    if EXPIRY and EXPIRY.any then  -- its deadline, if it had one
      redis.call('ZREM', K.deadlines, id)
{forget_one}
    end
    local removed = redis.call('DEL', record.hash)
    found, deleted = found + removed, deleted + removed
    if S > 0 then
      deleted = deleted + redis.call('DEL', unpack(KEYS, record.at + 1, record.at + S))
    end{write_feed}
  end
end
return {{found, deleted}}
"""


def _read_claims(meta: Options) -> str:
    """Lua reading, per unique constraint, whether this record holds its claim (the
    pcall'd HGET doubles as the unique hash's type check)."""
    blocks = []
    for group in meta.unique_together:
        name = _unique_name(group)
        key = lua_field("K", f"uniq_{name}")
        field = _ident("claim_" + name)
        blocks.append(f"""  local {field} = {_unique_values(meta, group, 'old')}
  if {field} ~= nil then
    owner = redis.pcall('HGET', {key}, {field})
    if is_error(owner) then return pcall_failure({key}, 'hash', owner) end
    claims_checked[{key}] = true
    record.{field} = owner == record.id and {field} or nil
  end""")
    return "\n".join(blocks) if blocks else "  -- no unique constraint"


def _delete_entries(meta: Options, fenced: bool = False) -> str:
    lines = [f"  -- index of {name}\n" + _index_entry(meta, name, deleting=True)
             for name in meta.indexed]
    for group in meta.unique_together:
        name = _unique_name(group)
        field = _ident("claim_" + name)
        lines.append(f"  -- unique {'+'.join(group)}: released only if this record holds it\n"
                     f"  if record.{field} then redis.call('HDEL', "
                     f"{lua_field('K', f'uniq_{name}')}, record.{field}) end")
        if fenced:  # whatever it held: the record is gone, so is every value's token
            lines.append(f"  retire_token(id, {lua_string(','.join(group))}, true, nil)")
    return "\n".join(lines) if lines else "  -- no index, no unique constraint"


_DELETE_FAST = """
-- The common case, straight-line: one record, in a model none of whose records has a
-- deadline (the EXISTS). The same checks and writes, and the same reply, as the general
-- path below, which takes every other call.
if #ARGV == 1 and redis.call('EXISTS', K.deadlines) == 0 then
  local err = {model_checks}
  if err then return err end
  local hash, id = KEYS[{first}], ARGV[1]
  local raw = redis.pcall('HMGET', hash, {read})  -- also its type check
  if is_error(raw) then return pcall_failure(hash, 'hash', raw) end
{stream_checks}
  local exists = raw[1] ~= false
{old}
{claims}
  -- the first write doubles as the id set's type check: nothing is written before it
  local removed = redis.pcall('SREM', K.ids, id)
  if is_error(removed) then return pcall_failure(K.ids, 'set', removed) end
{entries}
  if exists then  -- its hash is there (its id field was read): one DEL
    return {{1, redis.call('DEL', hash{stream_keys})}}
  end
  local found = redis.call('DEL', hash)
  return {{found, found{more_streams}}}
end
"""


def _delete_fast(meta: Options, is_envelope: bool) -> str:
    """The delete script's fast path (models without optimistic_lock or a change feed)."""
    fields = tracked_fields(meta)
    first = 1 + len(meta.write_keys(meta.prefix))
    streams = [f"KEYS[{first + s}]" for s in range(1, len(meta.stream_names) + 1)]
    stream_checks = [f"  err = check_type({key}, 'string')\n  if err then return err end"
                     for key in streams]
    old = ["  local old = {}  -- the values its entries and claims were written for"]
    for i, name in enumerate(fields, start=2):
        target = lua_field("old", name)
        value = f"canonical(raw[{i}], true) or nil" if is_envelope else f"raw[{i}] or nil"
        old.append(f"  {target} = {value}")
        default = meta.absent_values().get(name)
        if default is not None:
            old.append(f"  if exists and raw[{i}] == false then {target} = "
                       f"{lua_string(default)} end")
    claims, entries = [], []
    for group in meta.unique_together:
        name = _unique_name(group)
        key, claim = lua_field("K", f"uniq_{name}"), _ident("claim_" + name)
        claims.append(f"""  -- unique {'+'.join(group)}: released only if this record holds it
  local {claim} = {_fast_claim_value(meta, group, 'old')}
  if {claim} ~= nil then
    local owner = redis.pcall('HGET', {key}, {claim})  -- also its type check
    if is_error(owner) then return pcall_failure({key}, 'hash', owner) end
    if owner ~= id then {claim} = nil end
  else
    err = check_type({key}, 'hash')
    if err then return err end
  end""")
        entries.append(f"  if {claim} ~= nil then redis.call('HDEL', {key}, {claim}) end")
    for name in meta.indexed:
        attribute = meta.fields[name]
        zset, value = lua_field("K", f"idx_{name}"), lua_field("old", name)
        line = (f"  redis.call('ZREM', {zset}, id)" if attribute.index_kind == "score" else
                f"  if {value} ~= nil then redis.call('ZREM', {zset}, lex_member({value}, id)) end")
        if keyspace.null_key(meta.prefix, name) in meta.key_position:
            line += f"\n  redis.call('SREM', {lua_field('K', f'null_{name}')}, id)"
        entries.insert(len(entries) - len(meta.unique_together) if meta.unique_together
                       else len(entries), f"  -- index of {name}\n{line}")
    return _DELETE_FAST.format(
        model_checks=_model_checks(meta).replace("\n  or", "\n    or"), first=first,
        read=", ".join(lua_string(name) for name in [meta.pk_name, *fields]),
        stream_checks="\n".join(stream_checks) or "  -- no ByteStream",
        old="\n".join(old), claims="\n".join(claims) or "  -- no unique constraint",
        entries="\n".join(entries) or "  -- no index, no unique constraint",
        stream_keys="".join(f", {key}" for key in streams),
        more_streams=(" + redis.call('DEL', " + ", ".join(streams) + ")") if streams else "")


def delete_source(meta: Options, is_envelope: bool, fenced: bool = False) -> str:
    """The per-model delete script. With ``fenced`` (Redis Cluster, a model with unique
    constraints): the delete that also retires the claim tokens its records held their
    unique values by (core/claims.py), and has no fast path."""
    fields = tracked_fields(meta)
    lock, feed = meta.optimistic_lock, meta.changes
    streams = list(meta.stream_names)
    unchecked = _unchecked_uniques(meta).replace("unique_checked", "claims_checked")
    fast = "" if lock or feed or fenced else (_delete_fast(meta, is_envelope)
                                              + MORE_LIBRARIES + "\n")
    if fenced:
        fast = _TOKEN_BOOKKEEPING_KEYS + _TOKEN_BOOKKEEPING
    source = _DELETE.format(
        fast=fast, model=meta.name, codec="envelope" if is_envelope else "compact",
        keys="\n".join(_keys_header(meta)), prefix=meta.prefix, n_streams=len(streams),
        streams="(" + ", ".join(streams) + ")" if streams else "(none)",
        keys_table=_keys_table(meta), defaults=_defaults_table(meta, fields),
        is_envelope="true" if is_envelope else "false",
        read_fields=_read_fields(meta, fields),
        first_record_key=1 + len(meta.write_keys(meta.prefix)),
        model_checks=_model_checks(meta),
        read_old=_read_old(meta, fields), read_claims=_read_claims(meta),
        unchecked_uniques=unchecked,
        delete_entries=_indent(_delete_entries(meta, fenced)),
        sweep_page=SWEEP_PAGE, expiry=_EXPIRY_PRELUDE.format(needs_clock="false"),
        sweep=_sweep(meta, "claims_checked"),
        forget_one="      redis.call('HDEL', K.expiry_entries, id)" if fields
        else "      -- no field is indexed or unique: nothing kept",
        feed_expire=" (each with an 'expire' entry in the change feed)" if feed else "",
        lock_args=_DELETE_LOCK_ARGS if lock else "",
        feed_note=_DELETE_FEED_NOTE.format(
            version=", version" if lock else "") if feed else "",
        lock_errors=_LOCK_ERRORS.split("\n")[0] + "\n" if lock else "",
        n_records="#ARGV / 2" if lock else "#ARGV",
        feed_frame=f"\nlocal FEED_MAXLEN = {meta.changes_maxlen}  -- entries the feed keeps, about"
        if feed else "",
        check_version=_DELETE_CHECK_VERSION if lock else "",
        write_feed=("\n    if removed == 1 then" + _write_feed(meta, "'delete'", "").replace(
            "\n", "\n    ") + "\n    end") if feed else "")
    if not fenced:
        return source
    source = source.replace("-- Errors: REPOCKET", _DELETE_FENCE_NOTE + "-- Errors: REPOCKET", 1)
    return _replace_once(source, "\nreturn {found, deleted}\n", """
local reply = {found, deleted}
for _, part in ipairs(RETIRED) do reply[#reply + 1] = part end
return reply
""")


_DELETE_FENCE_NOTE = """\
-- Redis Cluster (a model with unique constraints: core/claims.py): after everything
--   above, KEYS (last but one) the shard's fence hash   <shard prefix>:fences
--              (the last) the shard's token hash        <shard prefix>:tokens
-- Each record deleted retires the claim tokens it held its unique values by (into the
-- fence hash: a save handed one is refused from then on); the reply then goes on with
-- fields, token, ... of each: the caller releases a claim only while it is that token.
"""


def _replace_once(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced (a template that changed fails loudly)."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.split("\n"))


_DELETE_LOCK_ARGS = """\
-- then (optimistic_lock) per record the version the deleting instance holds ('' for
--   none: a queryset's delete); a record at another version is stale, none is deleted
"""
_DELETE_FEED_NOTE = """\
-- Each record deleted appends one entry to the change feed (K.changes): op 'delete',
--   id{version}.
"""
_DELETE_CHECK_VERSION = """
  -- optimistic_lock: a stale instance deletes nothing
  record.version = tonumber(raw[2] or '0') or raw[2]
  local expected = ARGV[N + r]
  if exists and expected ~= '' and tonumber(expected) ~= record.version then
    return fail('stale', {id = record.id, expected = tonumber(expected),
                          found = record.version})
  end"""


# -- append ---------------------------------------------------------------------------------
_APPEND = """#!lua
-- append to a ByteStream of {model}, generated by repocket.core.luagen: add bytes to the
-- end of one ByteStream of an existing record, never past the server's string limit.
--
-- KEYS[1]  the record's hash (must exist)     {prefix}:<id>
-- KEYS[2]  the ByteStream                     <hash key>:field:<name>, name one of {streams}
{feed_key}-- ARGV[1]  the bytes to append
-- ARGV[2]  the longest string Redis accepts (proto-max-bulk-len)
{feed_note}--
-- Reply: the stream's length after the append.
-- Errors: REPOCKET {{"code": "record_missing", "key", "stream"}}
--         REPOCKET {{"code": "wrongtype", "key", "expected", "actual"}}
--         REPOCKET {{"code": "too_large", "key", "size", "limit"}}

-- @libraries

local hash, stream, data, max_bytes = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
-- the record's id field: whether it exists, and (pcall) the hash's type check
local id = redis.pcall('HGET', hash, {pk})
if is_error(id) then return pcall_failure(hash, 'hash', id) end
if not id then return fail('record_missing', {{key = hash, stream = stream}}) end
local length = redis.pcall('STRLEN', stream)  -- also the stream's type check
if is_error(length) then return pcall_failure(stream, 'string', length) end{feed_check}
if length + #data > max_bytes then
  return fail('too_large', {{key = stream, size = length + #data, limit = max_bytes}})
end
-- An APPEND that creates the stream gives it its record's deadline, if any (Redis expires
-- a record's hash and ByteStreams together)
local deadline = length == 0 and redis.call('PEXPIRETIME', hash) or -1
-- ARGV[2] may be Redis' default rather than this server's limit (the client did not ask
-- the server): the APPEND, the first write, then fails whole, and says so typed
local appended = redis.pcall('APPEND', stream, data)
if is_error(appended) then
  if string.find(appended.err, 'proto-max-bulk-len', 1, true) then
    return fail('too_large', {{key = stream, size = length + #data}})
  end
  return redis.error_reply(appended.err)
end
if deadline > 0 then redis.call('PEXPIREAT', stream, deadline) end{feed_write}
return appended
"""
_APPEND_FEED_KEY = """-- KEYS[3]  the change feed                    {key}
"""
_APPEND_FEED_NOTE = """\
-- The append adds one entry to the change feed (XADD MAXLEN ~ {maxlen}): op 'update',
--   id, fields (the stream's name). It leaves the version (optimistic_lock) as it is.
"""
_APPEND_FEED_CHECK = """
local feed_err = check_type(KEYS[3], 'stream')
if feed_err then return feed_err end"""
_APPEND_FEED_WRITE = """
-- the change feed: this write's entry, appended by the script that writes
-- (the id from the key: the stored id field is framed by the codec)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', {maxlen}, '*', 'op', 'update',
           'id', string.match(hash, '[^:]+$'), 'fields', string.match(stream, ':field:(.+)$'))"""


def append_source(meta: Options) -> str:
    feed = meta.changes
    return _APPEND.format(
        model=meta.name, prefix=meta.prefix, pk=lua_string(meta.pk_name),
        streams=", ".join(meta.stream_names) or "(none)",
        feed_key=_APPEND_FEED_KEY.format(key=meta.changes_key) if feed else "",
        feed_note=_APPEND_FEED_NOTE.format(maxlen=meta.changes_maxlen) if feed else "",
        feed_check=_APPEND_FEED_CHECK if feed else "",
        feed_write=_APPEND_FEED_WRITE.format(maxlen=meta.changes_maxlen) if feed else "")


# -- get ------------------------------------------------------------------------------------
_GET = """#!lua flags=no-writes
-- get {model}, generated by repocket.core.luagen: records by id (one for get, several
-- for get_many), each with its ByteStreams and, breadth first, the records its
-- Pointers name, up to a depth, each record once per call, at most a budget of
-- records per call. Read-only (no-writes): it runs on replicas and over maxmemory.
--
-- KEYS[i]     a record's hash (the roots, or the records a previous call left)
-- ARGV[1]     how many Pointer levels to load (0 = none)
-- ARGV[2]     the most records this call loads (the budget)
-- then per KEYS[i]: its model number (below), its id, its Pointer depth
-- Models (numbers as in the reply; Pointer targets and ByteStream keys are built from
-- these prefixes, only from stored ids that are UUIDs: the documented exception to
-- "every key in KEYS", as targets are only known once read):
{models}
--
-- Reply: a list of records {{model number, id, HGETALL flat list | false when missing,
--        {{stream values | false}}}}, the KEYS ones first in order, then Pointer targets;
--        when the budget ran out, a last entry {{'more', model, id, depth, ...}} lists the
--        records still to load (a follow-up call loads them).
-- Errors: REPOCKET {{"code": "wrongtype", "key", ...}} when a key holds another type.

-- @libraries
{fast}
local MAX_DEPTH, BUDGET = tonumber(ARGV[1]), tonumber(ARGV[2])
local records, seen, pending = {{}}, {{}}, {{}}

local function queue(model, id, key, depth)
  if not seen[key] then
    seen[key] = true
    pending[#pending + 1] = {{model, id, key, depth}}
  end
end
{loaders}
local LOAD = {{{load_table}}}

local roots = {{}}
for i, key in ipairs(KEYS) do
  local at = 3 + 3 * (i - 1)
  seen[key] = true
  local flat, err = LOAD[tonumber(ARGV[at])](ARGV[at + 1], key)
  if err then return err end
  roots[i] = {{tonumber(ARGV[at]), flat or false, tonumber(ARGV[at + 2])}}
end
for _, root in ipairs(roots) do
  if root[2] then FOLLOW[root[1]](root[2], root[3]) end
end
local next_item = 1
while next_item <= #pending and #records < BUDGET do
  local item = pending[next_item]
  next_item = next_item + 1
  local flat, err = LOAD[item[1]](item[2], item[3])
  if err then return err end
  if flat then FOLLOW[item[1]](flat, item[4]) end
end
if next_item <= #pending then
  local more = {{'more'}}
  for i = next_item, #pending do
    local item = pending[i]
    more[#more + 1] = item[1]
    more[#more + 1] = item[2]
    more[#more + 1] = item[4]
  end
  records[#records + 1] = more
end
return records
"""

_LOADER = """
-- model {number}: {name} ({codec}), records {prefix}:<id>
local function load_{number}(id, key)
  local flat = redis.pcall('HGETALL', key)
  if is_error(flat) then return nil, read_failure(key, flat) end
  if #flat == 0 then
    records[#records + 1] = {{{number}, id, false, {{}}}}
    return nil
  end
  local streams = {{}}
{streams}
  records[#records + 1] = {{{number}, id, flat, streams}}
  return flat
end
"""

_STREAM = """  local stream_{i} = redis.pcall('GET', key .. {suffix})
  if is_error(stream_{i}) then return nil, read_failure(key .. {suffix}, stream_{i}) end
  streams[{i}] = stream_{i}"""

_FOLLOWER = """
-- queues the targets of a model {number} record's Pointers ({names})
local function follow_{number}(flat, depth)
  if depth >= MAX_DEPTH then return end
{locals}
  for i = 1, #flat, 2 do
{matches}
  end
  local id
{queues}
end
"""


def _loader(number: int, model: type[ActiveRecord], is_envelope: bool) -> str:
    meta = model._meta
    streams = "\n".join(_STREAM.format(i=i, suffix=lua_string(f":field:{name}"))
                        for i, name in enumerate(meta.stream_names, start=1))
    return _LOADER.format(number=number, name=meta.name, prefix=meta.prefix,
                          codec="envelope" if is_envelope else "compact",
                          streams=streams or "  -- no ByteStream")


def _follower(number: int, model: type[ActiveRecord], is_envelope: bool,
              numbers: dict[type[ActiveRecord], int]) -> str:
    meta = model._meta
    if not meta.pointer_names:
        return f"\nlocal function follow_{number}(flat, depth) end  -- {meta.name}: no Pointer\n"
    names = list(meta.pointer_names)
    locals_ = "\n".join(f"  local raw_{i}" for i in range(1, len(names) + 1))
    matches = "\n".join(
        f"    {'if' if i == 1 else 'elseif'} flat[i] == {lua_string(name)} then "
        f"raw_{i} = flat[i + 1]" for i, name in enumerate(names, start=1)) + "\n    end"
    queues = []
    for i, name in enumerate(names, start=1):
        target = meta.fields[name].to_model  # type: ignore[attr-defined]
        prefix = lua_string(target._meta.prefix + ":")
        followed = f"followed_{number}_{i}"
        queues.append(
            f"  if raw_{i} and not {followed}[raw_{i}] then  -- each stored value checked once\n"
            f"    {followed}[raw_{i}] = true\n"
            f"    id = pointer_id(raw_{i}, {'true' if is_envelope else 'false'})\n"
            f"    if id then queue({numbers[target]}, id, {prefix} .. id, depth + 1) end\n"
            f"  end")
    # per Pointer, the stored values already followed (queue() would find their targets
    # seen: this skips the id check and the key built to find that out)
    memos = "".join(f"local followed_{number}_{i} = {{}}\n" for i in range(1, len(names) + 1))
    return memos + _FOLLOWER.format(number=number, names=", ".join(names), locals=locals_,
                                    matches=matches, queues="\n".join(queues))


_GET_FAST = """
-- The common case, straight-line: one {name} (a get), its Pointer targets loaded when its
-- depth allows, none of them followed further{further}; the budget holds them all. The
-- same reads and the same reply as the general path below, which takes every other call.
if #KEYS == 1 and ARGV[3] == '{number}' and tonumber(ARGV[2]) > {n_pointers}{depth_ok} then
  local key, id = KEYS[1], ARGV[4]
{load_root}
  local records = {{{{{number}, id, flat, streams}}}}
{targets}
  return records
end
{more}
"""


def _fast_load(number: int, meta: Options, key: str, id_: str, indent: str,
               root: bool) -> str:
    """Lua loading one record as load_<number> does: ``flat`` and ``streams``; a missing
    record is the reply (the root) or its entry (a target, then nothing more is read)."""
    missing = (f"return {{{{{number}, {id_}, false, {{}}}}}}" if root
               else f"records[#records + 1] = {{{number}, {id_}, false, {{}}}}")
    lines = [f"local flat = redis.pcall('HGETALL', {key})",
             f"if is_error(flat) then return read_failure({key}, flat) end",
             "local streams = {}"]
    reads = []
    for i, name in enumerate(meta.stream_names, start=1):
        suffix = lua_string(f":field:{name}")
        reads += [f"streams[{i}] = redis.pcall('GET', {key} .. {suffix})",
                  f"if is_error(streams[{i}]) then "
                  f"return read_failure({key} .. {suffix}, streams[{i}]) end"]
    if root:
        lines += [f"if #flat == 0 then {missing} end", *reads]
    else:
        lines += ["if #flat == 0 then",
                  f"  {missing}", "else",
                  *(f"  {line}" for line in reads),
                  f"  records[#records + 1] = {{{number}, {id_}, flat, streams}}", "end"]
    return "\n".join(indent + line for line in lines)


def _fast_targets(meta: Options, is_envelope: bool,
                  numbers: dict[type[ActiveRecord], int]) -> str:
    """Lua loading the root's Pointer targets (follow_1 then load_<n>, in Pointer order)."""
    names = list(meta.pointer_names)
    if not names:
        return "  -- no Pointer"
    found = "\n".join(
        f"      {'if' if i == 1 else 'elseif'} flat[i] == {lua_string(name)} then "
        f"raw_{i} = flat[i + 1]" for i, name in enumerate(names, start=1))
    lines = ["  if tonumber(ARGV[5]) < tonumber(ARGV[1]) then  -- its depth allows its targets",
             "    local " + ", ".join(f"raw_{i}" for i in range(1, len(names) + 1)),
             "    for i = 1, #flat, 2 do", found, "      end", "    end",
             "    local seen = {[key] = true}"]
    for i, name in enumerate(names, start=1):
        target = meta.fields[name].to_model  # type: ignore[attr-defined]
        prefix = lua_string(target._meta.prefix + ":")
        load = _fast_load(numbers[target], target._meta, f"key_{i}", f"id_{i}", "        ",
                          root=False)
        lines += [f"    -- {name}",
                  f"    local id_{i} = raw_{i} and pointer_id(raw_{i}, "
                  f"{'true' if is_envelope else 'false'})",
                  f"    local key_{i} = id_{i} and {prefix} .. id_{i}",
                  f"    if key_{i} and not seen[key_{i}] then",
                  f"      seen[key_{i}] = true", "      do", load, "      end", "    end"]
    lines.append("  end")
    return "\n".join(lines)


def _get_fast(meta: Options, is_envelope: bool,
              numbers: dict[type[ActiveRecord], int]) -> str:
    targets = [meta.fields[name].to_model  # type: ignore[attr-defined]
               for name in meta.pointer_names]
    further = any(target._meta.pointer_names for target in targets)
    return _GET_FAST.format(
        name=meta.name, number=numbers[meta.model], n_pointers=len(targets),
        further=" (a target's own Pointers: only at the last depth)" if further else "",
        depth_ok=" and tonumber(ARGV[5]) + 1 >= tonumber(ARGV[1])" if further else "",
        load_root=_fast_load(numbers[meta.model], meta, "key", "id", "  ", root=True),
        targets=_fast_targets(meta, is_envelope, numbers), more=MORE_LIBRARIES)


def get_source(meta: Options, codecs: tuple[bool, ...]) -> str:
    """The read of ``meta``'s model and every model its Pointers reach; ``codecs`` says
    per reachable model (in ``reachable_models`` order) whether it is envelope-coded."""
    models = meta.reachable_models
    numbers = meta.model_numbers
    described = []
    loaders, followers = [], []
    for model, is_envelope in zip(models, codecs, strict=True):
        number = numbers[model]
        sub = model._meta
        pointers = ", ".join(f"{name} -> {numbers[sub.fields[name].to_model]}"  # type: ignore
                             for name in sub.pointer_names) or "none"
        described.append(f"--   {number}  {sub.name:<12} {sub.prefix}:<id>  "
                         f"{'envelope' if is_envelope else 'compact'}; streams: "
                         f"{', '.join(sub.stream_names) or 'none'}; Pointers: {pointers}")
        loaders.append(_loader(number, model, is_envelope))
        followers.append(_follower(number, model, is_envelope, numbers))
    numbers_list = [numbers[model] for model in models]
    follow_table = "local FOLLOW = {" + ", ".join(f"follow_{n}" for n in numbers_list) + "}\n"
    # per target model, the stored Pointer values already followed (queue() would find
    # their targets seen: this skips the id check and the key built to find that out)
    return _GET.format(model=meta.name, models="\n".join(described),
                       fast=_get_fast(meta, codecs[0], numbers),
                       loaders="".join(loaders) + "".join(followers) + follow_table,
                       load_table=", ".join(f"load_{n}" for n in numbers_list))


# -- update --------------------------------------------------------------------------------
# What both update scripts (by filter, by ids) do with one record's assignments: Lua text
# inserted as a format value, so its braces are literal.
_UPDATE_ASSIGN = """  local new, set, del = {}, {}, {}
  for field, value in pairs(old) do new[field] = value end
  for _, assignment in ipairs(SETS) do
    local field, how, value, stored = assignment[1], assignment[2], nil, nil
    if how == 'set' then
      stored, value = assignment[3] or nil, assignment[4] or nil
    else
      local why
      value, why = expression_value(assignment[3], assignment[4], values, MAX_DIGITS)
      if why == nil and value == 'nan' and not assignment[7] then why = 'NaN is not allowed' end
      if why == nil and value == nil and not assignment[8] then
        why = 'an operand is None, and the field cannot be None'
      end
      if why then return nil, fail('arith', {field = field, id = id, reason = why}) end
      stored = value and (assignment[5] .. value .. assignment[6])
    end
    if stored then
      set[#set + 1] = field
      set[#set + 1] = stored
    else
      del[#del + 1] = field
    end
    if TRACKED[field] then new[field] = value end
  end
  local record = {id = id, hash = hash, old = old, new = new, set = set, del = del,
                  known = not defaulted, deadline = deadline_of(EXPIRY, id)}
"""


# check_claims of the two update scripts, inserted as a format value (its braces are
# literal): unique claims as they stand once the whole call is written. The by-ids script
# reads each claim with redis.pcall, which doubles as its hash's type check, and notes the
# hashes it checked; the by-filter script checked the types before.
_CHECK_CLAIMS = """local function check_claims(records{checked})
  local released, claimed = {{}}, {{}}
  for _, record in ipairs(records) do
    for _, unique in ipairs(UNIQUES) do
      local before, after = record[unique.old], record[unique.new]
      if before ~= nil and before ~= after then
        released[unique.key .. '\\0' .. before] = record.id
      end
    end
  end
  for _, record in ipairs(records) do
    for _, unique in ipairs(UNIQUES) do
      local before, after = record[unique.old], record[unique.new]
      if after ~= nil and (after ~= before or not record.known) then
        local slot = unique.key .. '\\0' .. after
{read}        if owner == record.id or (owner and released[slot] == owner) then owner = nil end
        local expired, failure = expired_owner(owner)
        if failure then return failure end
        if expired then owner = nil end  -- past its deadline: swept before the writes
        if not owner and claimed[slot] and claimed[slot] ~= record.id then owner = claimed[slot] end
        if owner then
          local shown = {{}}
          for i, field in ipairs(unique.fields) do shown[i] = record.new[field] end
          return fail('unique', {{fields = unique.fields, values = shown, owner = owner,
                                 id = record.id}})
        end
        claimed[slot] = record.id
      end
    end
  end
  return nil
end
"""
_PLAIN_READ = "        local owner = redis.call('HGET', unique.key, after)\n"
_TYPED_READ = ("        local owner = redis.pcall('HGET', unique.key, after)\n"
               "        if is_error(owner) then"
               " return pcall_failure(unique.key, 'hash', owner) end\n"
               "        checked[unique.key] = true\n")


def _check_claims(typed: bool) -> str:
    """The update scripts' check_claims (see _CHECK_CLAIMS)."""
    if typed:
        return _CHECK_CLAIMS.format(checked=", checked", read=_TYPED_READ)
    return _CHECK_CLAIMS.format(checked="", read=_PLAIN_READ)


_UPDATE = """#!lua
-- update {model} ({codec} codec), generated by repocket.core.luagen from the model.
-- QuerySet.update(): the records matching a filter get new values (literals, or
-- arithmetic on their own numbers: F), with their index entries and unique claims,
-- atomically per call. The script finds the candidates itself (the query's smallest
-- source: query/_sources) and checks each against the whole filter when it updates it
-- (query/_conditions), so a record changed by another client since it was listed is
-- updated only if it still matches. One call examines at most PAGE candidates: when
-- the smallest source holds more, it writes nothing and answers 'list' (the caller
-- lists the ids with query.lua, then calls again per page of ids, an 'ids' source).
-- Every check (key types, Pointer targets, arithmetic, unique claims, as they stand
-- once the whole page is written) runs before the first write. Records are reached
-- through an index or the id set, as in query.lua (<prefix>:<id>, ids that are UUIDs:
-- the documented exception to "every key in KEYS"). A record past its deadline
-- (KEYS[deadlines]) reads as absent and is not updated; an expiring record's kept
-- values (KEYS[expiry_entries], for the sweep after its deadline) follow the update.
-- A unique value whose owner is past its deadline is free: that owner is swept after
-- every check and before the first update write, as a save's sweep removes records
-- (its entries from the expiry entries hash; Redis expired its hash and streams){feed_expire}.
--
{keys}
-- KEYS[{first_pointer} ..]  the hashes the Pointer literals name (each must exist)
-- ARGV[1]  msgpack plan, as query.lua's: envelope, pk, defaults (what an absent field
--          reads as), sources, groups ({{negated, {{field, family, op, values}}...}})
-- ARGV[2]  PAGE, the most candidates this call examines
-- ARGV[3]  msgpack assignments, in order, each
--            {{field, 'set', stored bytes | false (None: HDEL), canonical | false}} or
--            {{field, 'expr', kind ('int'|'dec'|'float'), tree (lib/arith expression_value),
--             codec head, codec tail, allow NaN, may be None}}
--          expressions see the values the record held before this update
-- ARGV[4]  the most digits of an Integer or Decimal operand or result (0: no limit)
-- ARGV[5]  the arithmetic steps (lib/arith ARITH_WORK) after which the call stops taking
--          records (at least one is taken)
{shard_arg}--
{update_notes}--
-- Reply: {{'done', records updated}}, or {{'list'}} (nothing written) when the candidates
--        are more than PAGE, or {{'more', records updated, id...}} when the arithmetic
--        budget ran out: the candidates not taken, for the next call.
-- Errors: REPOCKET {{"code": "wrongtype", "key", "expected", "actual"}}
--         REPOCKET {{"code": "pointer_missing", "key"}}
--         REPOCKET {{"code": "unique", "fields", "values", "owner", "id"}}
--         REPOCKET {{"code": "arith", "field", "id", "reason"}}
{bad_version_error}
-- @libraries +query

{keys_table}
{defaults}
local IS_ENVELOPE = {is_envelope}
local PREFIX = {prefix}
-- HMGET of a stored record: its id, then the fields indexes and constraints read
local READ = {read_fields}
local TRACKED = {{{tracked_set}}}
-- per unique constraint: its key and where a record keeps its old and new claims
local UNIQUES = {uniques}
local FIRST_POINTER = {first_pointer}

local plan = cmsgpack.unpack(ARGV[1])
local PAGE = tonumber(ARGV[2])
local SETS = cmsgpack.unpack(ARGV[3])
local MAX_DIGITS = tonumber(ARGV[4])
local ARITH_BUDGET = tonumber(ARGV[5])

local err = {model_checks}
if err then return err end
for _, unique in ipairs(UNIQUES) do
  err = check_type(unique.key, 'hash')
  if err then return err end
end
local EXPIRY
EXPIRY, err = expiry_state(K.deadlines, false)
if err then return err end
if EXPIRY then
  err = check_type(K.expiry_entries, 'hash')
  if err then return err end
end
for i = FIRST_POINTER, #KEYS do
  local target = redis.call('TYPE', KEYS[i])['ok']
  if target == 'none' then return fail('pointer_missing', {{key = KEYS[i]}}) end
  if target ~= 'hash' then
    return fail('wrongtype', {{key = KEYS[i], expected = 'hash', actual = target}})
  end
end
{feed_frame}{sweep}
-- What a candidate is read for: READ, then the fields the filter and the expressions read.
local reads, read_at = {{}}, {{}}
local function need(field)
  if not read_at[field] then
    reads[#reads + 1] = field
    read_at[field] = #reads
  end
end
for _, field in ipairs(READ) do need(field) end
for _, group in ipairs(plan.groups) do
  for _, condition in ipairs(group[2]) do
    need(condition[1])
    if condition[3] == 'eq' or condition[3] == 'in' then
      condition.set = membership_set(condition[2], condition[4])
    end
  end
end
local function need_operands(node)
  if node[1] == 'f' then need(node[2])
  elseif node[1] ~= 'n' then
    need_operands(node[2])
    need_operands(node[3])
  end
end
for _, assignment in ipairs(SETS) do
  if assignment[2] == 'expr' then need_operands(assignment[4]) end
end

-- The candidates: every id of the smallest source, unless it holds more than PAGE.
local ALL = {{kind = 'all'}}
local source, size = ALL, nil
for _, candidate in ipairs(plan.sources) do
  local count = source_size(redis.call, candidate, K.ids)
  if count and (size == nil or count < size) then source, size = candidate, count end
end
if source == ALL then
  local ids_type = check_type(K.ids, 'set')
  if ids_type then return ids_type end
  size = source_size(redis.call, ALL, K.ids)
end
if size > PAGE then return {{'list'}} end
local candidates, listed, cursor = {{}}, {{}}, nil
repeat
  local ids
  ids, cursor = source_page(redis.call, source, cursor, PAGE, K.ids)
  for _, id in ipairs(ids) do
    if not listed[id] and string.match(id, UUID_PATTERN) then
      listed[id] = true
      candidates[#candidates + 1] = id
    end
  end
until not cursor

-- A matching record's new values: {{id, hash, old, new, known, set, del}}, or nil when
-- it is gone or no longer matches; an error reply second.
local function updated(id)
  if is_expired(EXPIRY, id) then return nil end  -- past its deadline: gone
  local hash = PREFIX .. id
  local raw = redis.pcall('HMGET', hash, unpack(reads))  -- also its type check
  if is_error(raw) then return nil, pcall_failure(hash, 'hash', raw) end
  if not raw[1] then return nil end  -- a stale entry: the record is gone
  local values = {{}}
  for i, field in ipairs(reads) do
    local value = canonical(raw[i], IS_ENVELOPE)
    if value == nil then value = plan.defaults[field] end
    values[field] = value
  end
  if not passes(values, plan.groups) then return nil end
  local exists, old, defaulted = true, {{}}, false
{read_old}
{assign}{claims}{next_version}
  return record
end

-- Unique claims as they stand once the whole page is written: a value may move to a
-- record of the page from another record of the page that gives it up.
{check_claims}
local function write(record)
  if #record.set > 0 then redis.call('HSET', record.hash, unpack(record.set)) end
  if #record.del > 0 then redis.call('HDEL', record.hash, unpack(record.del)) end
  local id, old, new, known = record.id, record.old, record.new, record.known
{write_entries}{update_feed}
{keep_values}
end

-- The records this call updates: every candidate, unless the arithmetic of those before
-- it has spent ARITH_BUDGET (numbers of thousands of digits): the rest go back to the
-- caller, for the next call.
local records, rest = {{}}, {{'more', 0}}
for i, id in ipairs(candidates) do
  if i > 1 and ARITH_WORK.steps > ARITH_BUDGET then
    for j = i, #candidates do rest[#rest + 1] = candidates[j] end
    break
  end
  local record, failure = updated(id)
  if failure then return failure end
  records[#records + 1] = record
end
err = check_claims(records)
if err then return err end
err = write_sweep()  -- its first write is the id set's type check: nothing written before
if err then return err end
for _, record in ipairs(records) do write(record) end
if #rest > 2 then
  rest[2] = #records
  return rest
end
return {{'done', #records}}
"""


def _record_claims(meta: Options) -> str:
    """Lua setting, per unique constraint, the record's old and new claims."""
    lines = []
    for group in meta.unique_together:
        name = _unique_name(group)
        lines.append(f"  record.{_ident('uniq_old_' + name)} = "
                     f"{_unique_values(meta, group, 'old')}\n"
                     f"  record.{_ident('uniq_new_' + name)} = "
                     f"{_unique_values(meta, group, 'new')}")
    return "\n".join(lines) if lines else "  -- no unique constraint"


def _uniques_table(meta: Options) -> str:
    rows = []
    for group in meta.unique_together:
        name = _unique_name(group)
        rows.append(f"  {{key = {lua_field('K', f'uniq_{name}')}, fields = {lua_list(group)}, "
                    f"old = {lua_string(_ident('uniq_old_' + name))}, "
                    f"new = {lua_string(_ident('uniq_new_' + name))}}},")
    return "{\n" + "\n".join(rows) + "\n}" if rows else "{}"


_UPDATE_LOCK_NOTE = """\
-- optimistic_lock: each record updated moves to its next version (in the same HSET)
"""
_UPDATE_FEED_NOTE = """\
-- Each record updated appends one entry to the change feed (K.changes): op 'update',
--   id, fields (the fields assigned, comma-separated)[, version].
"""
_UPDATE_NEXT_VERSION = """
  -- optimistic_lock: the next version, written with the values
  record.version = tonumber(raw[2] or '0')
  if not record.version or record.version < 0 or record.version % 1 ~= 0 then
    return nil, fail('bad_version', {key = hash, value = raw[2]})
  end
  record.version = record.version + 1
  set[#set + 1] = ':version'
  set[#set + 1] = record.version"""


def _update_feed_frame(meta: Options) -> str:
    return f"""
-- The change feed keeps about FEED_MAXLEN entries (XADD MAXLEN ~); an update's entries
-- name the fields it assigns, in declaration order.
local FEED_MAXLEN = {meta.changes_maxlen}
local UPDATED
do
  local assigned, names = {{}}, {{}}
  for _, assignment in ipairs(SETS) do assigned[assignment[1]] = true end
  for _, name in ipairs({lua_list(meta.feed_fields)}) do
    if assigned[name] then names[#names + 1] = name end
  end
  UPDATED = table.concat(names, ',')
end
"""


def _keep_values(fields: list[str]) -> str:
    """Lua keeping an expiring record's tracked values after its update (the sweep after its
    deadline reads them: Redis will have expired the hash)."""
    if not fields:
        return "  -- no field is indexed or unique: nothing kept"
    return ("  -- an expiring record's kept values follow (the sweep reads them)\n"
            "  if record.deadline then\n"
            "    redis.call('HSET', K.expiry_entries, id, cmsgpack.pack(new))\n  end")


_EXPIRED_OWNER = """
-- The owner a unique hash names may be past its deadline: it reads as absent and holds
-- no value (as save and get_or_create find it). Its sweep is planned here and runs after
-- every check, before this call's writes, as a save's sweep removes records. SWEEPS
-- counts the owners planned.
local SWEEPS = 0
local function expired_owner(owner)
  if not owner or not is_expired(EXPIRY, owner) then return false end{check_entries}
  SWEEPS = SWEEPS + 1
  return true, plan_sweep(owner, nil)
end
"""
_UPDATE_FEED_EXPIRE = ("\n-- (each with an 'expire' entry in the change feed, before the"
                       " updates' entries)")
# update_ids reads no expiry entries otherwise: the sweep's first read of them checks them
_CHECK_ENTRIES_ONCE = """
  if SWEEPS == 0 then
    local failure = check_type(K.expiry_entries, 'hash')
    if failure then return true, failure end
  end"""


def _update_sweep(meta: Options, claims_table: str, check_entries: bool) -> str:
    """The sweep of the owners of the claims an update assigns that are past their
    deadline: the save script's sweep (no own records), planned by ``expired_owner``."""
    return (f"\nlocal {claims_table} = {{}}  -- the unique hashes the sweep's reads checked"
            + _sweep(meta, claims_table, own_records=False)
            + _EXPIRED_OWNER.format(check_entries=_CHECK_ENTRIES_ONCE if check_entries else ""))


# On a Redis Cluster the update script runs in one shard: its records' hashes are
# <shard prefix>:<id>, the prefix given in ARGV (its KEYS are the shard's model keys).
_SHARD_ARG = """\
-- ARGV[6]  the shard's prefix and ':' (Redis Cluster: one script serves every shard;
--          its records' hashes are ARGV[6] .. id, its KEYS the shard's model keys)
"""


def update_source(meta: Options, is_envelope: bool, sharded: bool = False) -> str:
    """The per-model update script (QuerySet.update), its libraries as includes.
    ``sharded``: the Redis Cluster variant, the records' prefix taken from ARGV[6]."""
    fields = tracked_fields(meta)
    first_pointer = 1 + len(meta.write_keys(meta.prefix))
    lock, feed = meta.optimistic_lock, meta.changes
    return _UPDATE.format(
        assign=_UPDATE_ASSIGN, check_claims=_check_claims(typed=False),
        keep_values=_keep_values(fields),
        update_notes=(_UPDATE_LOCK_NOTE if lock else "") + (_UPDATE_FEED_NOTE if feed else ""),
        bad_version_error=_LOCK_ERRORS.split("\n", 1)[1] if lock else "",
        next_version=_UPDATE_NEXT_VERSION if lock else "",
        update_feed=_write_feed(meta, "'update'", ", 'fields', UPDATED") if feed else "",
        feed_frame=_update_feed_frame(meta) if feed else "",
        sweep=_update_sweep(meta, "claims_checked", check_entries=False),
        feed_expire=_UPDATE_FEED_EXPIRE if feed else "",
        model=meta.name, codec="envelope" if is_envelope else "compact",
        keys="\n".join(_keys_header(meta)), first_pointer=first_pointer,
        keys_table=_keys_table(meta), defaults=_defaults_table(meta, fields),
        is_envelope="true" if is_envelope else "false",
        prefix="ARGV[6]" if sharded else lua_string(meta.prefix + ":"),
        shard_arg=_SHARD_ARG if sharded else "",
        read_fields=_read_fields(meta, fields),
        tracked_set=", ".join(f"[{lua_string(name)}] = true" for name in fields),
        uniques=_uniques_table(meta), model_checks=_model_checks(meta),
        read_old=_read_old(meta, fields), claims=_record_claims(meta),
        write_entries=_write_entries(meta))



# -- update by id -------------------------------------------------------------------------
# update() of a filter that only pins ids (``filter(id=X)``, ``id__in=[...]``): no query
# to plan or re-check (a listed id matches while its record exists), the records' hashes
# in KEYS, and only the model keys this call's writes touch are type-checked.
_UPDATE_IDS = """#!lua
-- update_ids {model} ({codec} codec), generated by repocket.core.luagen from the model.
-- QuerySet.update() of a filter that only pins ids (filter(id=...), id__in=[...]): each
-- listed record that exists gets new values (literals, or arithmetic on its own numbers:
-- F), with its index entries and unique claims, atomically; an id whose record is gone
-- is skipped. Every check (the record hashes' types, arithmetic, Pointer targets,
-- unique claims as they stand once the whole call is written, and the type of every
-- model key the writes touch) runs before the first write. A record past its deadline
-- (KEYS[deadlines]) reads as absent and is not updated; an expiring record's kept
-- values (KEYS[expiry_entries], for the sweep after its deadline) follow the update.
-- A unique value whose owner is past its deadline is free: that owner is swept after
-- every check and before the first update write, as a save's sweep removes records
-- (its entries from the expiry entries hash; Redis expired its hash and streams){feed_expire}.
--
{keys}
-- KEYS[{first_record} .. {first_record} + R - 1]  the records' hashes ({prefix}:<id>)
-- KEYS[{first_record} + R ..]  the hashes the Pointer literals name (each must exist)
-- ARGV[1]  R, the number of ids (distinct)
-- ARGV[2]  msgpack assignments, as the update script's ARGV[3]
-- ARGV[3]  the most digits of an Integer or Decimal operand or result (0: no limit)
-- ARGV[4]  the arithmetic steps (lib/arith ARITH_WORK) after which the call stops taking
--          records (at least one is taken)
-- ARGV[5 .. 4 + R]  the ids, in the order of their hashes
--
{update_notes}--
-- Reply: {{'done', records updated}}, or {{'more', records updated, id...}} when the
--        arithmetic budget ran out: the ids not taken, for the next call.
-- Errors: REPOCKET {{"code": "wrongtype", "key", "expected", "actual"}}
--         REPOCKET {{"code": "pointer_missing", "key"}}
--         REPOCKET {{"code": "unique", "fields", "values", "owner", "id"}}
--         REPOCKET {{"code": "arith", "field", "id", "reason"}}
{bad_version_error}
-- @libraries

{keys_table}
{defaults}
local IS_ENVELOPE = {is_envelope}
-- HMGET of a stored record: its id, then the fields indexes and constraints read
local READ = {read_fields}
local TRACKED = {{{tracked_set}}}
-- per unique constraint: its key and where a record keeps its old and new claims
local UNIQUES = {uniques}

{fast}
local R = tonumber(ARGV[1])
local SETS = cmsgpack.unpack(ARGV[2])
local MAX_DIGITS = tonumber(ARGV[3])
local ARITH_BUDGET = tonumber(ARGV[4])
local FIRST_RECORD, FIRST_POINTER = {first_record}, {first_record} + R

-- Expiry: nil unless some record of the model has a deadline (the ZRANGE doubles as the
-- deadline set's type check)
local EXPIRY, expiry_err = expiry_state(K.deadlines, false)
if expiry_err then return expiry_err end
{feed_frame}{sweep}
-- What a record is read for: READ, then the fields the expressions read.
local reads, read_at = {{}}, {{}}
local function need(field)
  if not read_at[field] then
    reads[#reads + 1] = field
    read_at[field] = #reads
  end
end
for _, field in ipairs(READ) do need(field) end
local function need_operands(node)
  if node[1] == 'f' then need(node[2])
  elseif node[1] ~= 'n' then
    need_operands(node[2])
    need_operands(node[3])
  end
end
local ASSIGNED = {{}}  -- the fields this call assigns
for _, assignment in ipairs(SETS) do
  ASSIGNED[assignment[1]] = true
  if assignment[2] == 'expr' then need_operands(assignment[4]) end
end

-- A record's new values: {{id, hash, old, new, known, set, del}}, or nil when it is
-- gone; an error reply second.
local function updated(id, hash)
  if is_expired(EXPIRY, id) then return nil end  -- past its deadline: gone
  local raw = redis.pcall('HMGET', hash, unpack(reads))  -- also its type check
  if is_error(raw) then return nil, pcall_failure(hash, 'hash', raw) end
  if not raw[1] then return nil end  -- no such record
  local values = {{}}
  for i, field in ipairs(reads) do
    local value = canonical(raw[i], IS_ENVELOPE)
    if value == nil then value = ABSENT[field] end
    values[field] = value
  end
  local exists, old, defaulted = true, {{}}, false
{read_old}
{assign}{lazy_claims}{next_version}
  return record
end

-- Unique claims as they stand once the whole call is written: a value may move to a
-- record of the call from another record of the call that gives it up. The HGET of a
-- claim doubles as its hash's type check; `checked` notes the hashes it checked.
{check_claims}
-- The model keys the writes of `records` touch, key -> the type it must hold (a key
-- no write touches is not checked: a wrong type there is not this call's to report).
local function touched_keys(records)
  local touched = {{}}
  for _, record in ipairs(records) do
    local old, new, known = record.old, record.new, record.known
{touched}
    if record.deadline then touched[K.expiry_entries] = 'hash' end  -- its kept values
  end
  return touched
end

local function write(record)
  if #record.set > 0 then redis.call('HSET', record.hash, unpack(record.set)) end
  if #record.del > 0 then redis.call('HDEL', record.hash, unpack(record.del)) end
  local id, old, new, known = record.id, record.old, record.new, record.known
{write_entries}{update_feed}
{keep_values}
end

-- The records this call updates: every listed one, unless the arithmetic of those
-- before it has spent ARITH_BUDGET (numbers of thousands of digits): the rest of the ids
-- go back to the caller, for the next call.
local records, rest = {{}}, {{'more', 0}}
for r = 1, R do
  if r > 1 and ARITH_WORK.steps > ARITH_BUDGET then
    for left = r, R do rest[#rest + 1] = ARGV[4 + left] end
    break
  end
  local record, failure = updated(ARGV[4 + r], KEYS[FIRST_RECORD + r - 1])
  if failure then return failure end
  records[#records + 1] = record
end
if #records == 0 then return #rest > 2 and rest or {{'done', 0}} end
for i = FIRST_POINTER, #KEYS do
  local target = redis.call('TYPE', KEYS[i])['ok']
  if target == 'none' then return fail('pointer_missing', {{key = KEYS[i]}}) end
  if target ~= 'hash' then
    return fail('wrongtype', {{key = KEYS[i], expected = 'hash', actual = target}})
  end
end
local err = check_claims(records, checked)
if err then return err end
for key, expected in pairs(touched_keys(records)) do
  if not checked[key] then
    err = check_type(key, expected)
    if err then return err end
  end
end
if SWEEPS > 0 then  -- the model keys a sweep writes (its claims' hashes were read: checked)
  err = {model_checks}
  if err then return err end
end
err = write_sweep()  -- its first write is the id set's type check: nothing written before
if err then return err end
for _, record in ipairs(records) do write(record) end
if #rest > 2 then
  rest[2] = #records
  return rest
end
return {{'done', #records}}
"""


def _touched_entries(meta: Options) -> str:
    """Lua noting, for one record, the model keys its write touches (as ``write`` does:
    an index entry moves unless trusted and unchanged; a claim is read, dropped or set
    when it changes or is not trusted; the change feed always)."""
    lines = []
    for name in meta.indexed:
        before, after = lua_field("old", name), lua_field("new", name)
        marks = [f"touched[{lua_field('K', f'idx_{name}')}] = 'zset'"]
        if keyspace.null_key(meta.prefix, name) in meta.key_position:
            marks.append(f"touched[{lua_field('K', f'null_{name}')}] = 'set'")
        lines.append(f"    if not (known and {before} == {after}) then "
                     + "; ".join(marks) + " end")
    for group in meta.unique_together:
        name = _unique_name(group)
        before = f"record.{_ident('uniq_old_' + name)}"
        after = f"record.{_ident('uniq_new_' + name)}"
        lines.append(f"    if ({before} ~= nil and {before} ~= {after}) or ({after} ~= nil and "
                     f"not (known and {before} == {after})) then\n"
                     f"      touched[{lua_field('K', f'uniq_{name}')}] = 'hash'\n    end")
    if meta.changes:
        lines.append("    touched[K.changes] = 'stream'")
    return "\n".join(lines) if lines else "    -- no index, no unique constraint"


def _assigned_claims(meta: Options) -> str:
    """Lua setting a record's old and new claims per unique constraint, only when the call
    assigns one of its fields or the record's entries are not trusted: else the claim
    stays as it is, and neither is needed (nil, nil: nothing to check or move)."""
    lines = []
    for group in meta.unique_together:
        name = _unique_name(group)
        assigned = " or ".join(lua_field("ASSIGNED", field) for field in group)
        lines.append(f"  if {assigned} or not record.known then\n"
                     f"    record.{_ident('uniq_old_' + name)} = "
                     f"{_unique_values(meta, group, 'old')}\n"
                     f"    record.{_ident('uniq_new_' + name)} = "
                     f"{_unique_values(meta, group, 'new')}\n  end")
    return "\n".join(lines) if lines else "  -- no unique constraint"


_UPDATE_IDS_FAST = """
-- The common case, straight-line: one record (R = 1) of a model none of whose records has
-- a deadline, each assignment a literal or Integer arithmetic that small integers compute
-- exactly (lib/arith small_int_tree, as int_arith tries first). The same reads, checks
-- and writes as the general path below, which takes every other call (also, after this
-- one's reads, when an operand is None or large: nothing is written before).
local function update_one(id, hash, SETS)
  -- what it reads: READ, then the fields the expressions read
  local reads, read_at, nodes, assigned = {{{reads}}}, {{{read_at}}}, {{}}, {{}}
  for _, assignment in ipairs(SETS) do
    assigned[assignment[1]] = true
    if assignment[2] == 'expr' then
      local tag = assignment[4][1]
      if assignment[3] ~= 'int' or tag == 'f' or tag == 'n' then return nil end
      nodes[#nodes + 1] = assignment[4]
    end
  end
  while #nodes > 0 do
    local node = table.remove(nodes)
    if node[1] == 'f' then
      if not read_at[node[2]] then
        reads[#reads + 1] = node[2]
        read_at[node[2]] = #reads
      end
    elseif node[1] ~= 'n' then
      nodes[#nodes + 1] = node[2]
      nodes[#nodes + 1] = node[3]
    end
  end
  local raw = redis.pcall('HMGET', hash, unpack(reads))  -- also its type check
  if is_error(raw) then return pcall_failure(hash, 'hash', raw) end
  if not raw[1] then return {{'done', 0}} end  -- no such record
  local values = {{}}
  for i, field in ipairs(reads) do
    local value = canonical(raw[i], IS_ENVELOPE)
    if value == nil then value = ABSENT[field] end
    values[field] = value
  end
  local exists, old, defaulted = true, {{}}, false
{read_old}
  local new, set, del = {{}}, {{}}, {{}}
  for field, value in pairs(old) do new[field] = value end
  for _, assignment in ipairs(SETS) do
    local field, value, stored = assignment[1], nil, nil
    if assignment[2] == 'set' then
      stored, value = assignment[3] or nil, assignment[4] or nil
    else
      value = small_int_tree(assignment[4], values)
      if not value then return nil end
      stored = assignment[5] .. value .. assignment[6]
    end
    if stored then
      set[#set + 1] = field
      set[#set + 1] = stored
    else
      del[#del + 1] = field
    end
    if TRACKED[field] then new[field] = value end
  end
  local known = not defaulted
  local record = {{}}  -- its unique claims before and after
{claims}
  for i = {first_pointer}, #KEYS do
    local target = redis.call('TYPE', KEYS[i])['ok']
    if target == 'none' then return fail('pointer_missing', {{key = KEYS[i]}}) end
    if target ~= 'hash' then
      return fail('wrongtype', {{key = KEYS[i], expected = 'hash', actual = target}})
    end
  end
  local err
{check_claims}
{touched}
  if #set > 0 then redis.call('HSET', hash, unpack(set)) end
  if #del > 0 then redis.call('HDEL', hash, unpack(del)) end
{write_entries}
  return {{'done', 1}}
end

if ARGV[1] == '1' and (ARGV[3] == '0' or tonumber(ARGV[3]) > SMALL_DIGITS)
    and redis.call('EXISTS', K.deadlines) == 0 then
  local reply = update_one(ARGV[5], KEYS[{first}], cmsgpack.unpack(ARGV[2]))
  if reply then return reply end
end
{more}
"""


def _update_ids_fast(meta: Options, is_envelope: bool) -> str:
    """The update-by-id script's fast path (models without optimistic_lock or a change
    feed)."""
    fields = tracked_fields(meta)
    first = 1 + len(meta.write_keys(meta.prefix))
    read = [meta.pk_name, *fields]
    claims, checks, touched = [], [], []
    for group in meta.unique_together:
        name = _unique_name(group)
        key = lua_field("K", f"uniq_{name}")
        before = f"record.{_ident('uniq_old_' + name)}"
        after = f"record.{_ident('uniq_new_' + name)}"
        checked = _ident("checked_" + name)
        assigned = " or ".join(lua_field("assigned", field) for field in group)
        claims.append(f"  if {assigned} or not known then\n"
                      f"    {before} = {_fast_claim_value(meta, group, 'old')}\n"
                      f"    {after} = {_fast_claim_value(meta, group, 'new')}\n  end")
        shown = "{" + ", ".join(lua_field("new", f) for f in group) + "}"
        checks.append(f"""  -- unique {'+'.join(group)}
  local {checked} = false  -- whether its hash's type was checked (by the HGET)
  if {after} ~= nil and ({after} ~= {before} or not known) then
    local owner = redis.pcall('HGET', {key}, {after})  -- also its type check
    if is_error(owner) then return pcall_failure({key}, 'hash', owner) end
    {checked} = true
    if owner and owner ~= id then
      return fail('unique', {{fields = {lua_list(group)}, values = {shown}, owner = owner,
                             id = id}})
    end
  end""")
        touched.append(f"  if not {checked} and (({before} ~= nil and {before} ~= {after}) or "
                       f"({after} ~= nil and not (known and {before} == {after}))) then\n"
                       f"    err = check_type({key}, 'hash')\n"
                       "    if err then return err end\n  end")
    for name in meta.indexed:
        keys = [(lua_field("K", f"idx_{name}"), "zset")]
        if keyspace.null_key(meta.prefix, name) in meta.key_position:
            keys.append((lua_field("K", f"null_{name}"), "set"))
        checks_ = " or ".join(f"check_type({key}, '{kind}')" for key, kind in keys)
        touched.insert(len(touched) - len(meta.unique_together) if meta.unique_together
                       else len(touched),
                       f"  if not (known and {lua_field('old', name)} == "
                       f"{lua_field('new', name)}) then  -- index of {name}\n"
                       f"    err = {checks_}\n    if err then return err end\n  end")
    return _UPDATE_IDS_FAST.format(
        reads=", ".join(lua_string(name) for name in read),
        read_at=", ".join(f"[{lua_string(name)}] = {i}" for i, name in enumerate(read, 1)),
        read_old=_read_old(meta, fields), claims="\n".join(claims) or
        "  -- no unique constraint", first_pointer=first + 1, first=first,
        check_claims="\n".join(checks) or "  -- no unique constraint",
        touched="\n".join(touched) or "  -- no index, no unique constraint",
        write_entries=_write_entries(meta), more=MORE_LIBRARIES)


def update_ids_source(meta: Options, is_envelope: bool) -> str:
    """The per-model update-by-id script (QuerySet.update of a filter by id only)."""
    fields = tracked_fields(meta)
    lock, feed = meta.optimistic_lock, meta.changes
    return _UPDATE_IDS.format(
        fast="" if lock or feed else _update_ids_fast(meta, is_envelope),
        assign=_UPDATE_ASSIGN, check_claims=_check_claims(typed=True),
        keep_values=_keep_values(fields),
        update_notes=(_UPDATE_LOCK_NOTE if lock else "") + (_UPDATE_FEED_NOTE if feed else ""),
        bad_version_error=_LOCK_ERRORS.split("\n", 1)[1] if lock else "",
        next_version=_UPDATE_NEXT_VERSION if lock else "",
        update_feed=_write_feed(meta, "'update'", ", 'fields', UPDATED") if feed else "",
        feed_frame=_update_feed_frame(meta) if feed else "",
        sweep=_update_sweep(meta, "checked", check_entries=True),
        feed_expire=_UPDATE_FEED_EXPIRE if feed else "", model_checks=_model_checks(meta),
        model=meta.name, codec="envelope" if is_envelope else "compact",
        keys="\n".join(_keys_header(meta)), first_record=1 + len(meta.write_keys(meta.prefix)),
        prefix=meta.prefix, keys_table=_keys_table(meta),
        defaults=_defaults_table(meta, list(meta.fields)),
        is_envelope="true" if is_envelope else "false",
        read_fields=_read_fields(meta, fields),
        tracked_set=", ".join(f"[{lua_string(name)}] = true" for name in fields),
        uniques=_uniques_table(meta), read_old=_read_old(meta, fields),
        lazy_claims=_assigned_claims(meta), touched=_touched_entries(meta),
        write_entries=_write_entries(meta))

# -- compiled, cached -----------------------------------------------------------------------
_DEFINITION = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.cache
def _library_blocks(libraries: tuple[str, ...] = LIBRARIES) -> list[tuple[str, str, str]]:
    """(library, defined name, text) of every top-level definition of the libraries, in
    order; comment lines just above a definition belong to it."""
    blocks: list[tuple[str, str, str]] = []
    for library in libraries:
        pending: list[str] = []
        for line in expand(f"-- @include {library}").split("\n"):
            found = _DEFINITION.match(line)
            if found:
                blocks.append((library, found.group(1), "\n".join([*pending, line])))
                pending = []
            elif line.startswith("--"):
                pending.append(line)
            elif not line.strip():
                pending = []
            elif blocks:  # the body of the definition above
                library_, name, text = blocks[-1]
                blocks[-1] = (library_, name, f"{text}\n{line}")
    return blocks


def _code_words(text: str) -> set[str]:
    code = "\n".join(line.split("--", 1)[0] for line in text.split("\n"))
    return set(_WORD.findall(code))


# A second library line, after a script's fast path: the definitions only the rest of the
# script needs come there, so a call that the fast path answers never defines them.
MORE_LIBRARIES = "-- @libraries: the general path's"


def _needed(text: str, blocks: list[tuple[str, str, str]], defined: set[str]) -> set[str]:
    """The library definitions ``text`` uses, directly or through other definitions."""
    needed = _code_words(text) & defined
    while True:
        more = set().union(*(_code_words(body) for _, name, body in blocks if name in needed))
        if more & defined <= needed:
            return needed
        needed |= more & defined


def _definitions(blocks: list[tuple[str, str, str]], names: set[str]) -> str:
    parts, library = [], ""
    for lib, name, text in blocks:
        if name in names:
            if lib != library:
                parts.append(f"-- from {lib}.lua")
                library = lib
            parts.append(text)
    return "\n".join(parts)


def link(source: str) -> str:
    """``source`` with its ``-- @libraries`` line replaced by the library definitions it
    uses, directly or through other definitions (each once, in library order): a script
    defines no function it never calls, as defining them costs every call. The update
    script (its ``-- @libraries +query`` line) also links the query parts. A script with a
    fast path (``MORE_LIBRARIES`` after it) gets there the definitions only the rest uses."""
    libraries: tuple[str, ...] = LIBRARIES
    if "-- @libraries +query" in source:
        source, libraries = source.replace("-- @libraries +query", "-- @libraries", 1), (
            LIBRARIES + QUERY_PARTS)
    blocks = _library_blocks(libraries)
    defined = {name for _, name, _ in blocks}
    head, marker, rest = source.partition(MORE_LIBRARIES)
    first = _needed(head, blocks, defined)
    if marker:
        later = _needed(rest, blocks, defined) - first
        rest = ("\n" + _definitions(blocks, later) if later else "") + rest
    return (head.replace("-- @libraries", _definitions(blocks, first), 1)
            + rest)


_FAST_PATH = re.compile(
    r"\n-- The common case, straight-line:.*?\n" + re.escape(MORE_LIBRARIES) + r"\n", re.S)


def general_only(source: str) -> str:
    """``source`` without its fast path: what the script does for every call the fast path
    answers (the fast paths' differential test runs both)."""
    return _FAST_PATH.sub("\n", source, count=1)


def compile_source(name: str, source: str) -> Script:
    """A Script from a generated source: the library definitions it uses linked in."""
    return make_script(name, link(source))


def readable(source: str) -> str:
    """A generated source as ``repocket scripts`` prints it: libraries as includes."""
    return with_libraries(source.replace(MORE_LIBRARIES + "\n", "", 1))


def scripts_for(model: type[ActiveRecord]) -> ModelScripts:
    """The model's generated scripts for the codecs in force now, made on first use and
    cached on ``_meta`` (a model without ``Meta.codec`` follows the default, which may
    change: the codecs are part of the cache key)."""
    meta = model._meta
    default = configure.default_codec()
    # one lookup on the hot path: the codecs in force are the default one and the models'
    # own, which change only through Options.codec_name (counted in CODEC_CHANGES)
    quick = (default, schema.CODEC_CHANGES)
    last = meta.script_cache.get(quick)
    if last is not None:
        return last  # type: ignore[no-any-return]
    names = tuple(m._meta.codec_name or default for m in meta.reachable_models)
    cached = meta.script_cache.get(names)
    if cached is None:
        codecs = tuple(CODECS[name].is_envelope for name in names)
        cached = ModelScripts(*(compile_source(name, source)
                                for name, source in sources(meta, codecs)))
        meta.script_cache[names] = cached
    meta.script_cache[quick] = cached
    return cached


def fenced_save_for(model: type[ActiveRecord]) -> Script:
    """The model's fenced save script (Redis Cluster, a model with unique constraints:
    see :func:`save_source`) for the codec in force now, made on first use and cached on
    ``_meta`` beside the other scripts."""
    meta = model._meta
    name = meta.codec_name or configure.default_codec()
    key = ("fenced", name)
    script = meta.script_cache.get(key)
    if script is None:
        script = meta.script_cache[key] = compile_source(
            "save_fenced", save_source(meta, CODECS[name].is_envelope, fenced=True))
    return script


def fenced_delete_for(model: type[ActiveRecord]) -> Script:
    """The model's fenced delete script (as :func:`fenced_save_for`: see
    :func:`delete_source`)."""
    meta = model._meta
    name = meta.codec_name or configure.default_codec()
    key = ("fenced_delete", name)
    script = meta.script_cache.get(key)
    if script is None:
        script = meta.script_cache[key] = compile_source(
            "delete_fenced", delete_source(meta, CODECS[name].is_envelope, fenced=True))
    return script


def cluster_sources(meta: Options, is_envelope: bool) -> list[tuple[str, str]]:
    """(name, source) of the scripts a model runs on Redis Cluster besides
    :func:`sources`': the fenced save and delete, for a model with unique constraints."""
    if not meta.unique_together:
        return []
    return [("save_fenced", save_source(meta, is_envelope, fenced=True)),
            ("delete_fenced", delete_source(meta, is_envelope, fenced=True))]


def sharded_update_for(model: type[ActiveRecord]) -> Script:
    """The model's update script on Redis Cluster (``update_source(sharded=True)``), for
    the codec in force now; cached beside the model's scripts, by their update script."""
    return _sharded(model, "update", lambda meta, is_envelope: update_source(
        meta, is_envelope, sharded=True))


def sharded_get_or_create_for(model: type[ActiveRecord]) -> Script:
    """The model's get_or_create script on Redis Cluster, for a lookup by id (the record
    found is read at the shard's prefix, given in ARGV)."""
    return _sharded(model, "get_or_create", lambda meta, is_envelope: save_source(
        meta, is_envelope, find=True, sharded=True))


def _sharded(model: type[ActiveRecord], name: str, source: Any) -> Script:
    """The Redis Cluster variant of the model's script ``name``, made by ``source(meta,
    is_envelope)``; cached beside the model's scripts, by the standalone one's sha (which
    changes with the codec in force)."""
    meta = model._meta
    standalone: Script = getattr(scripts_for(model), name)
    key = (f"{name}, sharded", standalone.sha)
    found = meta.script_cache.get(key)
    if found is None:
        found = meta.script_cache[key] = compile_source(
            name, source(meta, meta.codec.is_envelope))
    return found


def sources(meta: Options, codecs: tuple[bool, ...]) -> list[tuple[str, str]]:
    """(name, source) of the model's seven scripts; ``codecs`` as for :func:`get_source`."""
    return [("save", save_source(meta, codecs[0])),
            ("delete", delete_source(meta, codecs[0])),
            ("append", append_source(meta)),
            ("get", get_source(meta, codecs)),
            ("get_or_create", save_source(meta, codecs[0], find=True)),
            ("update", update_source(meta, codecs[0])),
            ("update_ids", update_ids_source(meta, codecs[0]))]
