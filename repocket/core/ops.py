"""Model operations compiled into script calls, and their replies decoded. No I/O here.

``compile_*`` turns an operation into a :class:`Call` (script name, KEYS, ARGV
and a ``decode`` for the reply). ``decode`` returns the result, or another
``Call`` to run next (a save that found its record deleted meanwhile). The
executors in ``repocket.exec`` run calls; an async or pipelined executor runs
the same calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..attributes import short_repr, uuid_text
from ..errors import InvalidQuery, UnsavedPointer, ValidationError
from . import keys as keyspace
from .hydrate import hydrate
from .lua import SCRIPTS
from .plan import Call, pack

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

MAX_DEPTH = 16


# -- save ---------------------------------------------------------------------------
@dataclass
class _SaveBlock:
    """One record's part of a save call, and what its instance becomes once written."""

    keys: list[str]
    args: list[Any]
    pointer_keys: dict[str, str]
    apply: Callable[[], None]


def _save_block(record: ActiveRecord, whole: bool) -> _SaveBlock:
    meta = type(record)._meta
    for attribute in meta.pre_savers:
        attribute.pre_save(record)
    partial = record._persisted and not whole
    values, stored, codec = record._values, record._stored, meta.codec
    to_set: list[Any] = []
    to_delete: list[str] = []
    new_stored: dict[str, bytes | None] = {}
    pointer_keys: dict[str, str] = {}
    dangling = record.__dict__.get("_dangling", ())
    for name, encode, _attribute in meta.encoders(codec):
        if name not in values or (partial and name in dangling):
            continue  # deferred and never loaded, or a Pointer to a gone record: as stored
        value = values[name]
        if value is None:
            new_stored[name] = None
            if not partial or stored.get(name) is not None:
                to_delete.append(name)
            continue
        try:
            raw = encode(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ValidationError(f"{meta.name}.{name}: cannot encode {short_repr(value)}: {exc}",
                                  model=meta.name, field=name, value=value) from None
        new_stored[name] = raw
        if not partial or stored.get(name) != raw:
            to_set += (name, raw)
            if name in meta.pointer_names:
                pointer_keys[_pointer_target_key(record, name, value)] = name
    hash_key = record._key()
    stream_ops: list[Any] = []
    synced = {} if whole else record._synced_streams  # a whole save rewrites every stream
    for name in meta.stream_names:
        if name in values:
            stream_ops += _stream_op(values[name], synced.get(name), meta.fields[name].null,
                                     known=name in synced)
        else:
            stream_ops += (b"", b"")  # deferred: untouched

    def apply() -> None:
        record._stored.update(new_stored)
        record._synced_streams = {name: values[name] for name in meta.stream_names
                                  if name in values}
        record._persisted = True

    return _SaveBlock(
        [hash_key, *(keyspace.stream_key(hash_key, name) for name in meta.stream_names),
         *pointer_keys],
        [uuid_text(record.pk), b"1" if partial else b"0", len(to_set) // 2, len(to_delete),
         len(pointer_keys), *to_set, *to_delete, *stream_ops],
        pointer_keys, apply)


def _save_call(model: type[ActiveRecord], blocks: Sequence[_SaveBlock],
               decode: Callable[[Any], Any]) -> Call:
    meta = model._meta
    keys: list[str] = [meta.ids_key, *meta.model_keys]
    args: list[Any] = [meta.write_schema(), len(meta.model_keys), len(blocks),
                       len(meta.stream_names)]
    key_fields: dict[str, str] = {}
    for block in blocks:
        keys += block.keys
        args += block.args
        key_fields.update(block.pointer_keys)
    return Call(SCRIPTS["save"], tuple(keys), tuple(args), decode, meta.name, key_fields)


def compile_save(record: ActiveRecord, whole: bool = False) -> Call:
    """The save of ``record``: changed fields only when it was loaded from Redis."""
    meta = type(record)._meta
    block = _save_block(record, whole)

    def decode(reply: bytes) -> Any:
        if reply == b"gone":
            return compile_save(record, whole=True)
        block.apply()
        return {"hash": block.keys[0],
                "strings": dict(zip(meta.stream_names, block.keys[1:], strict=False))}

    return _save_call(type(record), [block], decode)


def compile_bulk_create(model: type[ActiveRecord], records: Sequence[ActiveRecord]) -> Call:
    """One atomic save of new records: all written, or none (a unique violation, a
    missing Pointer target)."""
    blocks = [_save_block(record, whole=True) for record in records]

    def decode(reply: bytes) -> list[ActiveRecord]:
        for block in blocks:
            block.apply()
        return list(records)

    return _save_call(model, blocks, decode)


def _pointer_target_key(record: ActiveRecord, name: str, value: Any) -> str:
    meta = type(record)._meta
    pointer = meta.fields[name]
    if hasattr(value, "_meta") and not value._persisted:
        state = "a deleted" if value.__dict__.get("_deleted") else "an unsaved"
        raise UnsavedPointer(
            f"{meta.name}.{name} points at {state} {type(value).__name__} ({value.pk}); "
            "save it first", model=meta.name, field=name, value=value)
    target_model = pointer.to_model  # type: ignore[attr-defined]
    return target_model._meta.record_key(pointer.target_id(value))  # type: ignore


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
                        on_deleted: Callable[[], None] = lambda: None) -> Call:
    """One atomic delete of records by id; decodes to (records deleted, keys deleted)."""
    meta = model._meta
    keys: list[str] = [meta.ids_key, *meta.model_keys]
    for record_id in record_ids:
        hash_key = meta.record_key(record_id)
        keys += (hash_key, *(keyspace.stream_key(hash_key, name) for name in meta.stream_names))

    def decode(reply: list[int]) -> tuple[int, int]:
        on_deleted()
        return int(reply[0]), int(reply[1])

    return Call(SCRIPTS["delete"], tuple(keys),
                (meta.write_schema(), len(meta.model_keys), len(meta.stream_names),
                 *(str(record_id) for record_id in record_ids)),
                decode, meta.name)


def compile_delete(record: ActiveRecord) -> Call:
    def forget() -> None:
        record._persisted = False
        record._stored = {}
        record._synced_streams = {}

    call = compile_delete_many(type(record), [record.pk], forget)
    return replace(call, decode=lambda reply: call.decode(reply)[1])  # keys, as 0.1 did


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

    return Call(SCRIPTS["append"], (hash_key, stream_key), (data,), decode, meta.name,
                {stream_key: name})


# -- reads: get and filter --------------------------------------------------------------
def compile_get(model: type[ActiveRecord], record_id: uuid.UUID, depth: int = 1) -> Call:
    """One record by id (None when missing), its Pointers loaded ``depth`` levels deep."""
    meta = model._meta
    schema, models = read_schema(model)
    text = uuid_text(record_id)

    def decode(reply: list[Any]) -> ActiveRecord | None:
        return hydrate(models, reply)[0]

    return Call(SCRIPTS["get"], (keyspace.record_key(meta.prefix, text),),
                (schema, check_depth(depth), text), decode, meta.name)


def compile_get_many(model: type[ActiveRecord], record_ids: Sequence[uuid.UUID],
                     depth: int = 1) -> Call:
    """Records by id, in order, None for each missing one."""
    meta = model._meta
    schema, models = read_schema(model)
    ids = [str(record_id) for record_id in record_ids]

    def decode(reply: list[Any]) -> list[ActiveRecord | None]:
        return hydrate(models, reply)[:len(ids)]

    return Call(SCRIPTS["get"], tuple(keyspace.record_key(meta.prefix, i) for i in ids),
                (schema, check_depth(depth), *ids), decode, meta.name)


GET_CHUNK = 500  # records one get call reads: a bounded script, a bounded reply


def compile_get_chunked(model: type[ActiveRecord], record_ids: Sequence[uuid.UUID],
                        depth: int = 1, found: tuple[ActiveRecord | None, ...] = ()) -> Call:
    """``compile_get_many`` in calls of at most GET_CHUNK ids, one after the other."""
    chunk, rest = record_ids[:GET_CHUNK], record_ids[GET_CHUNK:]
    call = compile_get_many(model, chunk, depth)

    def decode(reply: list[Any]) -> Any:
        records = found + tuple(call.decode(reply))
        return compile_get_chunked(model, rest, depth, records) if rest else list(records)

    return replace(call, decode=decode)


def check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidQuery(f"pointer_depth must be an integer from 0 to {MAX_DEPTH}, not {depth!r}")
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
