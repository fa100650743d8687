"""Model operations compiled into script calls, and their replies decoded. No I/O here.

``compile_*`` turns an operation into a :class:`Call` (script name, KEYS, ARGV
and a ``decode`` for the reply). ``decode`` returns the result, or another
``Call`` to run next (the next batch of a bulk write, a follow-up read). The
executors in ``repocket.exec`` run calls; an async or pipelined executor runs
the same calls.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..attributes import short_repr, uuid_text
from ..errors import DoesNotExist, InvalidQuery, UnsavedPointer, ValidationError, ValueTooLarge
from . import claims
from . import keys as keyspace
from .deref import checking_targets, load_roots, read_raw
from .hydrate import hydrate
from .layout import on_cluster, refuse_on_cluster
from .lua import SCRIPTS
from .luagen import fenced_delete_for, fenced_save_for, scripts_for, sharded_get_or_create_for
from .plan import DEFAULT_MAX_BYTES, Call, Gather, gather, pack, then

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

MAX_DEPTH = 16


# -- expiry ---------------------------------------------------------------------------
class TTL(enum.Enum):
    """What a save does to a record's deadline besides a number of seconds or None."""

    KEEP = "keep"  # leave the record's deadline as it is (none for a new record)
    DEFAULT = "default"  # Meta.ttl when the model declares one, else KEEP


KEEP_TTL = TTL.KEEP
TTLArg = float | None | TTL
# The longest ttl, in seconds: the scripts add it (in ms) to the server's clock in a Lua
# double, exact below 2**53 ms; 2**52 ms (about 142,000 years) leaves the clock its half.
MAX_TTL = 2**52 // 1000


def ttl_op(model: type[ActiveRecord], ttl: TTLArg) -> bytes:
    """The save script's expiry op for ``ttl`` seconds: b'' keep the deadline, b'P' clear it
    (None), else the milliseconds from the server's clock to the deadline."""
    meta = model._meta
    if ttl is TTL.DEFAULT:
        ttl = meta.ttl if meta.ttl is not None else TTL.KEEP
    if ttl is TTL.KEEP:
        return b""
    if ttl is None:
        return b"P"
    if (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl)
            or not 0 < ttl <= MAX_TTL):
        raise ValidationError(
            f"{meta.name}: ttl must be a positive number of seconds (at most {MAX_TTL}), "
            f"None (no deadline) or KEEP_TTL, not {short_repr(ttl)}",
            model=meta.name, field="ttl", value=ttl)
    return b"%d" % max(1, math.ceil(ttl * 1000))



# -- save ---------------------------------------------------------------------------
@dataclass
class _SaveBlock:
    """One record's part of a save call, and what its instance becomes once written."""

    keys: list[str]
    args: list[Any]
    prefix: str  # of the record's keys: the model's, or its shard's on a cluster
    pointer_keys: dict[str, str]  # checked by the save script (one server)
    targets: list[tuple[Any, str, str]]  # (model, id, field) read before it (a cluster)
    apply: Callable[[int], None]  # given the version written (optimistic_lock; else 0)
    large: list[tuple[str, int]]  # (field, bytes) of the values that might pass a server limit
    appends: bool  # whether its script APPENDs to a ByteStream (checked against the limit)
    work: int  # about how many Redis commands its part of the script runs


def _save_block(record: ActiveRecord, whole: bool, force: bool = False,
                ttl: TTLArg = TTL.DEFAULT) -> _SaveBlock:
    """``whole``: every field, whatever Redis holds; ``force`` (save(force_insert=True)):
    also whatever version it holds (optimistic_lock: no check); ``ttl``: as for save."""
    meta = type(record)._meta
    expiry = ttl_op(type(record), ttl)
    for attribute in meta.pre_savers:
        attribute.pre_save(record)
    values = record._values
    partial = record._persisted and not whole
    to_set: list[Any] = []
    to_delete: list[str] = []
    new_stored: dict[str, bytes | None] = {}
    pointer_keys: dict[str, str] = {}
    large: list[tuple[str, int]] = []
    if partial:
        _changed_fields(record, to_set, to_delete, new_stored, pointer_keys, large)
    else:
        _all_fields(record, to_set, to_delete, new_stored, pointer_keys, large)
    targets: list[tuple[Any, str, str]] = []
    if pointer_keys and on_cluster():  # the targets live in other slots: read them first
        targets = [(*_pointer_target(record, name, record._values[name]), name)
                   for name in pointer_keys.values()]
        pointer_keys = {}
    record_id = uuid_text(record.pk)
    prefix = meta.prefix_of(record_id)
    hash_key = keyspace.record_key(prefix, record_id)
    stream_keys, stream_ops, appends = _streams(record, hash_key, whole, large)

    if meta.optimistic_lock:  # the version it expects Redis to hold ('': none, forced)
        stream_ops.append(b"" if force else str(record._version).encode())

    def apply(version: int) -> None:
        record._stored.update(new_stored)
        record._synced_streams = {name: values[name] for name in meta.stream_names
                                  if name in values}
        record._persisted = True
        record._version = version

    return _SaveBlock(
        [hash_key, *stream_keys, *pointer_keys],
        [record_id, b"1" if partial else b"0", len(to_set) // 2, len(to_delete),
         len(pointer_keys), *to_set, *to_delete, *stream_ops, expiry],
        prefix, pointer_keys, targets, apply, large, appends,
        4 + len(stream_keys) + len(pointer_keys) + 2 * len(meta.model_keys)
        + meta.changes + (4 + len(meta.stream_names) if expiry else 0))


def _all_fields(record: ActiveRecord, to_set: list[Any], to_delete: list[str],
                new_stored: dict[str, bytes | None], pointer_keys: dict[str, str],
                large: list[tuple[str, int]]) -> None:
    """A whole save's fields: every loaded one, set or (None) deleted."""
    meta = type(record)._meta
    values, pointers = record._values, meta.pointer_names
    for name, encode, _attribute in meta.encoders(meta.codec):
        if name not in values:
            continue  # deferred and never loaded: as stored
        value = values[name]
        if value is None:
            new_stored[name] = None
            to_delete.append(name)
            continue
        try:
            raw = encode(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise _cannot_encode(meta, name, value, exc) from None
        new_stored[name] = raw
        to_set += (name, raw)
        if len(raw) >= MIN_SERVER_LIMIT:
            large.append((name, len(raw)))
        if pointers and name in pointers:
            pointer_keys[_pointer_target_key(record, name, value)] = name


def _changed_fields(record: ActiveRecord, to_set: list[Any], to_delete: list[str],
                    new_stored: dict[str, bytes | None], pointer_keys: dict[str, str],
                    large: list[tuple[str, int]]) -> None:
    """A partial save's fields: those whose stored bytes change."""
    meta = type(record)._meta
    values, stored = record._values, record._stored
    dangling = record.__dict__.get("_dangling", ())
    for name, encode, _attribute in meta.encoders(meta.codec):
        if name not in values or name in dangling:
            continue  # deferred and never loaded, or a Pointer to a gone record: as stored
        value = values[name]
        if value is None:
            new_stored[name] = None
            if stored.get(name) is not None:
                to_delete.append(name)
            continue
        try:
            raw = encode(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise _cannot_encode(meta, name, value, exc) from None
        new_stored[name] = raw
        if stored.get(name) != raw:
            to_set += (name, raw)
            if len(raw) >= MIN_SERVER_LIMIT:
                large.append((name, len(raw)))
            if name in meta.pointer_names:
                pointer_keys[_pointer_target_key(record, name, value)] = name


def _cannot_encode(meta: Any, name: str, value: Any, exc: Exception) -> ValidationError:
    return ValidationError(f"{meta.name}.{name}: cannot encode {short_repr(value)}: {exc}",
                           model=meta.name, field=name, value=value)


def _streams(record: ActiveRecord, hash_key: str, whole: bool,
             large: list[tuple[str, int]]) -> tuple[list[str], list[bytes], bool]:
    """The ByteStreams' keys, their op/data pairs, and whether one is an APPEND (the
    script must then know the server's limit)."""
    meta = type(record)._meta
    values = record._values
    keys: list[str] = []
    ops: list[bytes] = []
    appends = False
    synced = {} if whole else record._synced_streams  # a whole save rewrites every stream
    for name in meta.stream_names:
        keys.append(keyspace.stream_key(hash_key, name))
        if name in values:
            op = _stream_op(values[name], synced.get(name), meta.fields[name].null,
                            known=name in synced)
            ops += op
            if op[0] == b"S" and len(op[1]) >= MIN_SERVER_LIMIT:
                large.append((name, len(op[1])))
            elif op[0] == b"A":
                appends = True
        else:
            ops += (b"", b"")  # deferred: untouched
    return keys, ops, appends


def _save_call(model: type[ActiveRecord], blocks: Sequence[_SaveBlock],
               decode: Callable[[Any], Any], find: bytes | None = None,
               sharded: bool = False, grant: claims.Grant | None = None,
               refused: Callable[[Any], Any] | None = None) -> Call:
    """The call of the model's save script (its header documents this frame); the blocks'
    records share one prefix (one shard on a cluster). With ``find``, the get_or_create
    script's call: the same frame, then the claim to find by (``sharded``: its Redis
    Cluster variant, then the shard's prefix). With ``grant`` (Redis
    Cluster: the global claims the records rely on), the fenced save's call: the same
    frame, then the shard's fence hash and the claims' tokens; its refusal ('fenced') is
    decoded by ``refused`` (by default ``grant.refused``: the whole protocol again),
    never by ``decode``."""
    meta = model._meta
    keys: list[str] = [*meta.write_keys(blocks[0].prefix)]
    args: list[Any] = [len(blocks), DEFAULT_MAX_BYTES]
    key_fields: dict[str, str] = {}
    large: list[tuple[str, int]] = []
    appends = False
    for block in blocks:
        keys += block.keys
        args += block.args
        key_fields.update(block.pointer_keys)
        large += block.large
        appends = appends or block.appends
    scripts = scripts_for(model)
    script = scripts.save
    if find is not None:
        script = scripts.get_or_create
        args.append(find)
    if sharded:  # (find) the Redis Cluster variant: the record found at the shard's prefix
        script = sharded_get_or_create_for(model)
        args.append(blocks[0].prefix + ":")
    if grant is not None:
        pairs = grant.of({block.args[0] for block in blocks})
        script = fenced_save_for(model)
        keys += (keyspace.fence_key(blocks[0].prefix), keyspace.tokens_key(blocks[0].prefix))
        args += (*(part for pair in pairs for part in pair), len(pairs))
        decode = _fenced(decode, refused or grant.refused, grant.retired)
    # the server's limit is asked for (once per client) only when it matters
    binder = _limit_binder(meta.name, args, large, at=1) if large or appends else None
    return Call(script, tuple(keys), tuple(args), decode, meta.name, key_fields, binder)


def _fenced(decode: Callable[[Any], Any], refused: Callable[[Any], Any],
            retired: dict[tuple[str, str], str]) -> Callable[[Any], Any]:
    """``decode`` of a save's reply, but the fenced save's refusal goes to ``refused``,
    and the tokens it retired are noted in ``retired`` (what the release may drop)."""
    def decode_fenced(reply: Any) -> Any:
        if claims.is_fenced(reply) or claims.is_unclaimed(reply):
            return refused(reply)
        return decode(claims.note_retired(reply, retired))

    return decode_fenced


MIN_SERVER_LIMIT = 1024 * 1024  # the lowest proto-max-bulk-len Redis accepts


def _limit_binder(model: str, args: list[Any], large: list[tuple[str, int]],
                  at: int) -> Callable[[int], tuple[Any, ...]]:
    """What ``Call.args_for_limit`` does for a write: refuse a value the server cannot take
    (a typed error naming the field, before anything is sent), and tell the script
    the limit, so that it refuses an APPEND that would pass it before its first write."""
    def bind(limit: int) -> tuple[Any, ...]:
        for name, size in large:
            if size > limit:
                raise ValueTooLarge(
                    f"{model}.{name}: {size} bytes is more than the server accepts in "
                    f"one string (proto-max-bulk-len {limit}); nothing was written",
                    model=model, field=name, value=size)
        if limit == args[at]:
            return tuple(args)
        bound = list(args)
        bound[at] = limit
        return tuple(bound)

    return bind


def compile_save(record: ActiveRecord, whole: bool = False,
                 ttl: TTLArg = TTL.DEFAULT) -> Call | Gather:
    """The save of ``record``: changed fields only when it was loaded from Redis.

    A record loaded from Redis and deleted since is not re-created (the script
    answers 'gone' and writes nothing): its save raises DoesNotExist, so a stale
    instance never resurrects a record another process deleted. ``whole`` writes
    every field and stream whatever Redis holds (``save(force_insert=True)``). ``ttl``:
    seconds until the record expires, None for no deadline, KEEP_TTL to keep it; by
    default Meta.ttl when the model declares one, else the deadline is kept."""
    meta = type(record)._meta
    block = _save_block(record, whole, force=whole, ttl=ttl)
    take, release = claims.changes(record, whole) if _claims_global(meta) else ([], [])

    def decode(reply: Any) -> Any:
        if reply == b"gone":
            raise DoesNotExist(
                f"{meta.name} {record.pk} was deleted since it was loaded; nothing was "
                "written (save(force_insert=True) creates it again)",
                model=meta.name, field=meta.pk_name, value=record.pk)
        block.apply(saved_versions(reply)[0])
        return {"hash": block.keys[0],
                "strings": dict(zip(meta.stream_names, block.keys[1:], strict=False))}

    model = type(record)
    if not (block.targets or take or release):
        return _save_call(model, [block], decode)  # one round trip (always on one server)

    retired: dict[tuple[str, str], str] = {}

    def write(grant: claims.Grant | None) -> Any:
        if grant is None and (take or release):
            grant = claims.Grant({}, None)  # a release alone retires its token too
        if grant is not None:
            grant.retired = retired
        return checking_targets(model, block.targets,
                                _save_call(model, [block], decode, grant=grant))

    checked: Call | Gather = then(claims.claiming(take, write, shared=record._persisted),
                                  lambda result: claims.releasing(release, result, retired))
    return checked


def _claims_global(meta: Any) -> bool:
    """Whether a model's unique values are claimed globally (on a cluster, see claims.py)."""
    return bool(meta.unique_together) and on_cluster()


def unique_lookup(model: type[ActiveRecord], lookups: dict[str, Any]) -> tuple[str, ...] | None:
    """What plain field lookups find a record by in one script: the id field, else the
    first declared unique constraint (a unique field or a unique_together group) they
    name whole; None when they name none, or use a lookup with ``__``."""
    if any("__" in name or name == "pk" for name in lookups):
        return None
    meta = model._meta
    if meta.pk_name in lookups:
        return (meta.pk_name,)
    return next((group for group in meta.unique_together if set(group) <= set(lookups)), None)


def compile_get_or_create(record: ActiveRecord, group: tuple[str, ...],
                          ttl: TTLArg = TTL.DEFAULT) -> Call | Gather:
    """One atomic call: the record holding ``record``'s claim on the unique ``group``,
    or else ``record`` saved (with ``ttl``, as for a save). Decodes to ``(record, created)``."""
    model = type(record)
    meta = model._meta
    by_id_on_cluster = on_cluster() and group == (meta.pk_name,)
    if on_cluster() and not by_id_on_cluster:
        return _get_or_create_on_cluster(record, group, ttl)
    if by_id_on_cluster:
        _by_id_on_cluster(meta)
    block = _save_block(record, whole=True, ttl=ttl)

    def decode(reply: Any) -> tuple[ActiveRecord, bool]:
        if isinstance(reply, list) and reply and reply[0] == b"found":
            _, owner, flat, streams = reply
            found = hydrate(meta.reachable_models, [(1, owner, flat, streams)])[0]
            assert found is not None  # the script found it non-empty
            return found, False
        block.apply(saved_versions(reply)[0])
        return record, True

    call = _save_call(model, [block], decode, find="+".join(group).encode(),
                      sharded=by_id_on_cluster)
    if not block.targets:
        return call
    # on a cluster a Pointer's target lives in another slot: read before, as a save does,
    # unless the record exists (the call will find it: the defaults' targets do not
    # matter, as on one server, where the script finds before it checks)
    record_id = uuid_text(record.pk)

    def exists_or_check(entries: list[Any]) -> Any:
        return call if entries and entries[0][2] else checking_targets(
            model, block.targets, call)

    found: Call | Gather = then(read_raw(model, [(1, record_id)]), exists_or_check)
    return found


def _by_id_on_cluster(meta: Any) -> None:
    """get_or_create by id on a cluster is the record shard's get_or_create script (the
    id names the shard: one call on one node), unless the model has unique constraints:
    their values are claimed globally before a record is written (``claims.py``), which
    a call that may find the record instead cannot undo exactly: refused before anything
    is sent."""
    if meta.unique_together:
        refuse_on_cluster("get_or_create by id of a model with unique constraints (their "
                          "values are claimed globally before a record is written)", meta.name)


def _get_or_create_on_cluster(record: ActiveRecord, group: tuple[str, ...],
                              ttl: TTLArg) -> Call | Gather:
    """get_or_create on a cluster: the claim protocol (claims.py) with the holder of the
    group's value as the answer; creating writes the record after its claims are taken,
    so of racing callers exactly one creates and the others get its record."""
    model = type(record)
    block = _save_block(record, whole=True, ttl=ttl)

    def created(reply: Any) -> tuple[ActiveRecord, bool]:
        block.apply(saved_versions(reply)[0])
        return record, True

    def write(grant: claims.Grant | None) -> Any:
        return checking_targets(model, block.targets,
                                _save_call(model, [block], created, grant=grant))

    found: Call | Gather = claims.claiming(claims.changes(record, whole=True)[0], write,
                                           find=group)
    return found


WRITE_BUDGET = 8_000  # about how many Redis commands one bulk_create call may run
BYTES_BUDGET = 64 * 1024 * 1024  # and how many bytes of values it may carry


def compile_bulk_create(model: type[ActiveRecord], records: Sequence[ActiveRecord],
                        ttl: TTLArg = TTL.DEFAULT) -> Call | Gather:
    """Saves of new records, in calls bounded by a work budget (about WRITE_BUDGET
    commands and BYTES_BUDGET bytes: no call blocks Redis for long, whatever the
    batch size). Each call is atomic: all its records are written or, on a unique
    violation or a missing Pointer target, none of them; an error in a later call
    leaves the records of the earlier calls written. On a cluster a call holds the
    records of one shard: one chain of calls per shard, gathered (sent together)."""
    blocks = [_save_block(record, whole=True, ttl=ttl) for record in records]
    if not on_cluster():
        return _bulk_calls(model, blocks, 0, list(records))
    targets = [target for block in blocks for target in block.targets]
    take = _batch_claims(model, records) if _claims_global(model._meta) else []
    groups: dict[str, list[_SaveBlock]] = {}
    for block in blocks:
        groups.setdefault(block.prefix, []).append(block)

    def write(grant: claims.Grant | None) -> Any:
        chains = [_bulk_calls(model, group, 0, list(records), grant)
                  for group in groups.values()]
        return checking_targets(model, targets, gather(chains, lambda _done: list(records)))

    result: Call | Gather = claims.claiming(take, write)
    return result


def _batch_claims(model: type[ActiveRecord], records: Sequence[ActiveRecord]
                  ) -> list[claims.Claim]:
    """The claims of new records' unique values; two records of the batch with one value
    raise UniqueViolation before anything is sent."""
    take: list[claims.Claim] = []
    seen: dict[tuple[Any, ...], claims.Claim] = {}
    for record in records:
        for claim in claims.changes(record, whole=True)[0]:
            first = seen.setdefault((claim.group, claim.identity), claim)
            if first is not claim:
                raise claim.violation(first.record_id)  # the batch gives it twice
            take.append(claim)
    return take


def _bulk_calls(model: type[ActiveRecord], blocks: list[_SaveBlock], start: int,
                records: list[ActiveRecord], grant: claims.Grant | None = None) -> Call:
    """The calls writing ``blocks[start:]``, one after the other. With ``grant`` (Redis
    Cluster), fenced: a refused call runs the claim protocol again for its records and
    the later ones of its chain, then goes on from that call."""
    end, work, size = start, 0, 0
    while end < len(blocks):
        work, size = work + blocks[end].work, size + _bytes(blocks[end])
        if end > start and (work > WRITE_BUDGET or size > BYTES_BUDGET):
            break
        end += 1

    def decode(reply: Any) -> Any:
        for block, version in zip(blocks[start:end], saved_versions(reply, end - start),
                                  strict=True):
            block.apply(version)
        return _bulk_calls(model, blocks, end, records, grant) if end < len(blocks) \
            else records

    def refused(reply: Any) -> Any:
        assert grant is not None
        rest = {block.args[0] for block in blocks[start:]}
        return grant.refused(reply, rest, lambda again: _bulk_calls(
            model, blocks, start, records, again))

    return _save_call(model, blocks[start:end], decode, grant=grant, refused=refused)


def saved_versions(reply: Any, count: int = 1) -> list[int]:
    """The versions a save wrote, from its reply: ``['saved', version...]`` with
    optimistic_lock, else ``'saved'`` (versions 0: none kept)."""
    if isinstance(reply, list):
        return [int(version) for version in reply[1:]]
    return [0] * count


def _bytes(block: _SaveBlock) -> int:
    return sum(len(arg) for arg in block.args if isinstance(arg, bytes))


def _pointer_target_key(record: ActiveRecord, name: str, value: Any) -> str:
    target, target_id = _pointer_target(record, name, value)
    return target._meta.record_key(target_id)  # type: ignore[no-any-return]


def _pointer_target(record: ActiveRecord, name: str, value: Any) -> tuple[Any, str]:
    meta = type(record)._meta
    pointer = meta.fields[name]
    if hasattr(value, "_meta") and not value._persisted:
        state = "a deleted" if value.__dict__.get("_deleted") else "an unsaved"
        raise UnsavedPointer(
            f"{meta.name}.{name} points at {state} {type(value).__name__} ({value.pk}); "
            "save it first", model=meta.name, field=name, value=value)
    target_model = pointer.to_model  # type: ignore[attr-defined]
    target_id = pointer.target_id(value)  # type: ignore[attr-defined]
    return target_model, uuid_text(target_id) if isinstance(target_id, uuid.UUID) \
        else str(target_id)


def _stream_op(current: bytes | None, synced: bytes | None,
               nullable: bool = False, known: bool = True) -> tuple[bytes, bytes]:
    """What a save writes to one ByteStream.

    ``synced`` is what this instance knows Redis holds; ``known`` is False when it
    knows nothing (a new instance), so None there deletes whatever stream an older
    record left under this id. A value that extends it is APPENDed, so bytes other
    processes appended meanwhile survive; any other value replaces the stream.
    No key means None for a ``null=True`` stream and b'' otherwise, so an empty
    value deletes the key only when the stream cannot be None."""
    if synced is not None and current is not None and current.startswith(synced):
        added = current[len(synced):]
        return (b"A", added) if added else (b"", b"")
    if synced == current and known:  # both None: the field is null and so is the stream
        return b"", b""
    if current is None or (not current and not nullable):
        return b"D", b""
    return b"S", current


# -- delete ---------------------------------------------------------------------------
def compile_delete_many(model: type[ActiveRecord], record_ids: Sequence[Any],
                        on_deleted: Callable[[], None] = lambda: None,
                        versions: Sequence[int] | None = None,
                        retired: dict[tuple[str, str], str] | None = None) -> Call | Gather:
    """One atomic delete of records by id; decodes to (records deleted, keys deleted).
    On a cluster: one atomic call per shard (a Gather: sent together). With
    optimistic_lock, ``versions`` are those the deleting instances hold (None: a delete
    by id, unchecked). ``retired``: as for :func:`_delete_call`."""
    meta = model._meta
    texts = [str(record_id) for record_id in record_ids]
    expected = dict(zip(texts, versions, strict=True)) if versions is not None else {}
    by_prefix: dict[str, list[str]] = {}
    for text in texts:
        by_prefix.setdefault(meta.prefix_of(text), []).append(text)
    if len(by_prefix) <= 1:
        return _delete_call(model, next(iter(by_prefix), meta.prefix), texts, on_deleted,
                            expected, retired)

    def total(replies: list[tuple[int, int]]) -> tuple[int, int]:
        on_deleted()
        return sum(r[0] for r in replies), sum(r[1] for r in replies)

    calls = [_delete_call(model, prefix, ids, expected=expected, retired=retired)
             for prefix, ids in by_prefix.items()]
    result: Gather = gather(calls, total)
    return result


def _delete_call(model: type[ActiveRecord], prefix: str, record_ids: list[str],
                 on_deleted: Callable[[], None] = lambda: None,
                 expected: dict[str, int] | None = None,
                 retired: dict[tuple[str, str], str] | None = None) -> Call:
    """The delete script on records whose keys all start with ``prefix``; ``expected``:
    the version each record must be at (optimistic_lock; an id it lacks: unchecked). On
    Redis Cluster, for a model with unique constraints, the fenced delete: the claim
    tokens it retired are noted in ``retired`` (what a release may drop)."""
    meta = model._meta
    keys: list[str] = [*meta.write_keys(prefix)]
    for record_id in record_ids:
        hash_key = keyspace.record_key(prefix, record_id)
        keys += (hash_key, *(keyspace.stream_key(hash_key, name) for name in meta.stream_names))
    fenced = _claims_global(meta)
    if fenced:
        keys += (keyspace.fence_key(prefix), keyspace.tokens_key(prefix))

    def decode(reply: list[Any]) -> tuple[int, int]:
        on_deleted()
        if retired is not None:
            claims.note_retired([b"retired", None, *reply[2:]], retired)
        return int(reply[0]), int(reply[1])

    args = list(record_ids)
    if meta.optimistic_lock:
        args += [str((expected or {})[record_id]) if record_id in (expected or {}) else ""
                 for record_id in record_ids]
    script = fenced_delete_for(model) if fenced else scripts_for(model).delete
    return Call(script, tuple(keys), tuple(args), decode, meta.name)


def compile_delete(record: ActiveRecord) -> Call:
    def forget() -> None:
        record._persisted = False
        record._stored = {}
        record._synced_streams = {}
        record._version = 0

    meta = type(record)._meta
    # on a cluster, the claims of its unique values are released after the delete, each
    # only while it is the token the delete retired (a claim re-taken since stays)
    release = claims.held(record) if _claims_global(meta) else []
    retired: dict[tuple[str, str], str] = {}
    # a stale instance (optimistic_lock) deletes nothing: StaleRecord, as for a save
    call: Call = then(compile_delete_many(type(record), [record.pk], forget, [record._version],
                                          retired),
                      lambda counts: claims.releasing(release, counts[1], retired))  # keys
    return call


def _gone(record: ActiveRecord, what: str) -> DoesNotExist:
    meta = type(record)._meta
    return DoesNotExist(f"{meta.name} {record.pk} does not exist (deleted, or past its "
                        f"deadline): {what}", model=meta.name, field=meta.pk_name,
                        value=record.pk)


def compile_ttl(record: ActiveRecord) -> Call:
    """The seconds ``record`` has left before its deadline (None: it has none);
    DoesNotExist when it is gone."""
    meta = type(record)._meta

    def decode(reply: int) -> float | None:
        if reply == -2:
            raise _gone(record, "it has no deadline to read")
        return None if reply == -1 else reply / 1000

    record_id = uuid_text(record.pk)
    deadlines, _ = meta.expiry_keys_of(meta.prefix_of(record_id))
    return Call(SCRIPTS["ttl"], (deadlines, record._key()), (record_id,), decode, meta.name)


def compile_persist(record: ActiveRecord) -> Call:
    """Clear ``record``'s deadline; decodes to whether it had one. DoesNotExist (nothing
    written) when it is gone."""
    meta = type(record)._meta
    hash_key = record._key()

    def decode(reply: Any) -> bool:
        if reply == b"gone":
            raise _gone(record, "nothing was written")
        return bool(reply)

    record_id = uuid_text(record.pk)
    return Call(SCRIPTS["persist"],
                (*meta.expiry_keys_of(meta.prefix_of(record_id)), hash_key,
                 *(keyspace.stream_key(hash_key, name) for name in meta.stream_names)),
                (record_id,), decode, meta.name)


# -- append ---------------------------------------------------------------------------
def compile_append(record: ActiveRecord, name: str, data: bytes) -> Call:
    meta = type(record)._meta
    hash_key = record._key()
    stream_key = keyspace.stream_key(hash_key, name)

    def decode(reply: int) -> int:
        if name in record._values:  # a deferred stream stays deferred
            record._values[name] = (record._values[name] or b"") + data
            record._synced_streams[name] = (record._synced_streams.get(name) or b"") + data
        return int(reply)

    args = [data, DEFAULT_MAX_BYTES]
    # a small append needs no limit: the script's APPEND, its only write, fails whole
    binder = (_limit_binder(meta.name, args, [(name, len(data))], at=1)
              if len(data) >= MIN_SERVER_LIMIT else None)
    # the change feed: the model's, or on a cluster the record's shard's
    keys = ((hash_key, stream_key, keyspace.changes_key(meta.prefix_of(uuid_text(record.pk))))
            if meta.changes else (hash_key, stream_key))
    return Call(scripts_for(type(record)).append, keys, tuple(args), decode,
                meta.name, {stream_key: name}, binder)


# -- reads: get and filter --------------------------------------------------------------
READ_BUDGET = 1_000  # the most records one get call loads; Pointer fan-out continues after


def compile_get(model: type[ActiveRecord], record_id: uuid.UUID,
                depth: int = 1) -> Call | Gather:
    """One record by id (None when missing), its Pointers loaded ``depth`` levels deep."""
    text = uuid_text(record_id) if isinstance(record_id, uuid.UUID) else str(record_id)
    if on_cluster() and model._meta.pointer_names:  # targets in other slots: per level
        found: Call | Gather = then(load_roots(model, [text], check_depth(depth)),
                                    lambda records: records[0])
        return found
    return _read_call(model, model._meta.reachable_models, [(1, text, 0)], check_depth(depth),
                      [], 0)


def compile_get_many(model: type[ActiveRecord], record_ids: Sequence[uuid.UUID],
                     depth: int = 1) -> Call | Gather:
    """Records by id, in order, None for each missing one. One call, unless the Pointer
    fan-out passes READ_BUDGET records: then follow-up calls load the rest."""
    meta = model._meta
    models = meta.reachable_models
    ids = [uuid_text(record_id) if isinstance(record_id, uuid.UUID) else str(record_id)
           for record_id in record_ids]
    depth = check_depth(depth)
    if on_cluster():
        loaded: Call | Gather = load_roots(model, ids, depth)
        return loaded
    roots = [(1, text, 0) for text in ids]
    return _read_call(model, models, roots, depth, [], len(ids))


def _read_call(model: type[ActiveRecord], models: list[type[ActiveRecord]],
               items: Sequence[tuple[int, str, int]], depth: int, found: list[Any],
               roots: int, seen: set[tuple[int, str]] | None = None) -> Call:
    """The get script loading ``items`` (model number, id, Pointer depth), at most
    READ_BUDGET of them (the rest wait for the next call); ``found`` holds the records
    earlier calls of the same read returned. It decodes to the first ``roots`` records,
    or with ``roots`` 0 to the one record of a get."""
    seen = set() if seen is None else seen
    budget = max(READ_BUDGET, roots)  # get_many's roots all load in the first call
    now, backlog = items[:budget], items[budget:]
    if on_cluster():
        keys = tuple(models[number - 1]._meta.record_key(text) for number, text, _ in now)
    else:  # record_key's own text, its prefix made once per model
        prefixes = [f"{m._meta.prefix}:" for m in models]
        keys = tuple(prefixes[number - 1] + text for number, text, _ in now)
    args: list[Any] = [depth, budget]
    for item in now:
        args += item

    def decode(reply: list[Any]) -> Any:
        if not found and not backlog and not (reply and reply[-1] and reply[-1][0] == b"more"):
            # all of the read in this one reply (a get, most get_many): nothing to carry
            found_records = hydrate(models, reply)
            return found_records[:roots] if roots else found_records[0]
        records = found + list(reply)
        more: list[Any] = []
        if records and records[-1] and records[-1][0] == b"more":
            more = records.pop()[1:]
        loaded = {(entry[0], entry[1].decode("ascii")) for entry in records[len(found):]}
        seen.update(loaded)
        rest: dict[tuple[int, str], tuple[int, str, int]] = {}
        for item in (*backlog, *((int(more[i]), more[i + 1].decode("ascii"), int(more[i + 2]))
                                 for i in range(0, len(more), 3))):
            if (item[0], item[1]) not in seen:
                rest.setdefault((item[0], item[1]), item)
        if rest:
            return _read_call(model, models, list(rest.values()), depth, records, roots, seen)
        found_records = hydrate(models, records)
        return found_records[:roots] if roots else found_records[0]

    return Call(scripts_for(model).get, keys, tuple(args), decode, model._meta.name)


GET_CHUNK = 500  # records one get call reads: a bounded script, a bounded reply


def compile_get_chunked(model: type[ActiveRecord], record_ids: Sequence[uuid.UUID],
                        depth: int = 1, found: tuple[ActiveRecord | None, ...] = ()
                        ) -> Call | Gather:
    """``compile_get_many`` in calls of at most GET_CHUNK ids, one after the other."""
    chunk, rest = record_ids[:GET_CHUNK], record_ids[GET_CHUNK:]

    def next_chunk(records: list[ActiveRecord | None]) -> Any:
        done = found + tuple(records)
        return compile_get_chunked(model, rest, depth, done) if rest else list(done)

    call: Call | Gather = then(compile_get_many(model, chunk, depth), next_chunk)
    return call


def check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidQuery(f"pointer_depth must be an integer from 0 to {MAX_DEPTH}, "
                           f"not {short_repr(depth)}")
    return depth


def read_schema(model: type[ActiveRecord]) -> tuple[bytes, list[type[ActiveRecord]]]:
    """The msgpack schema the read scripts follow, and the models by schema index (root first).

    Cached per model and codec choice; the codecs are part of the key because a
    model without ``Meta.codec`` follows the global default, which may change."""
    models = model._meta.reachable_models
    codecs = tuple(m._meta.codec.is_envelope for m in models)
    cache = model._meta.schema_cache
    if codecs not in cache:
        index = model._meta.model_numbers
        entries = [
            [m._meta.prefix, int(m._meta.codec.is_envelope), list(m._meta.stream_names),
             [[name, index[m._meta.fields[name].to_model]]  # type: ignore[attr-defined]
              for name in m._meta.pointer_names]]
            for m in models
        ]
        cache[codecs] = pack(entries)
    return cache[codecs], models
