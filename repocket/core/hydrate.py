"""Hydration: instances from the records a read script returned. No I/O here.

Each (model, codec) gets a reader generated from its fields on first use
(:func:`reader_for`): straight-line Python that decodes every field of one record
with no loop over field descriptors, the study's "positional hydrator". Any
exception on that path (a stored value its field cannot decode) sends the record
through :func:`from_redis`, the general path, which raises the typed
StoredDataError naming model, field, key and value: both paths give the same
instance or the same error, the generated one just sooner.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..attributes import mark_dangling, uuid_from_ascii, uuid_text
from ..errors import StoredDataError
from .codecs import CorruptValue, envelope_plain
from .keys import VERSION_FIELD

VERSION_BYTES = VERSION_FIELD.encode()

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

Reader = Callable[[bytes, list[bytes], list[Any]], "ActiveRecord"]


def hydrate(models: list[type[ActiveRecord]], records: list[Any], roots: int = 0,
            root_fields: set[str] | None = None) -> list[ActiveRecord | None]:
    """Instances from the records a read script returned, Pointers linked.

    A Pointer whose target was read is set to that instance (``None`` if the
    target is missing); one beyond the read's depth keeps the target id, which
    the attribute loads on first access. The first ``roots`` records were read
    with only ``root_fields`` (None: all); their other fields load on access."""
    readers = [reader_for(model) for model in models]
    loaded: dict[tuple[int, bytes], ActiveRecord | None] = {}
    result: list[ActiveRecord | None] = []
    partial = roots if root_fields is not None else 0
    for position, record in enumerate(records):
        instance: ActiveRecord | None
        if record[0].__class__ is not int:  # by position (the id's value first, never None)
            model_index, record_id = record[-1], record[-2]
            instance = reader_for(models[model_index - 1], True)(record_id, record, [])
            loaded[(model_index, record_id)] = instance
            result.append(instance)
            continue
        model_index, record_id, flat, streams = record
        if not flat:
            instance = None
        elif position < partial:
            instance = from_redis(models[model_index - 1], record_id, flat, streams, root_fields)
        else:
            instance = readers[model_index - 1](record_id, flat, streams)
        loaded[(model_index, record_id)] = instance
        result.append(instance)
    if any(model._meta.pointer_names for model in models):
        _link_pointers(models[0]._meta.model_numbers, result, loaded)
    return result


def _link_pointers(index: dict[type[ActiveRecord], int], instances: list[ActiveRecord | None],
                   loaded: dict[tuple[int, bytes], ActiveRecord | None]) -> None:
    for instance in instances:
        if instance is None:
            continue
        meta = type(instance)._meta
        for name in meta.pointer_names:
            target_id = instance._values.get(name)
            if target_id is None:
                continue
            target_model = meta.fields[name].to_model  # type: ignore[attr-defined]
            target_key = (index[target_model], uuid_text(target_id).encode("ascii"))
            if target_key in loaded:
                instance._values[name] = loaded[target_key]
                if loaded[target_key] is None:
                    mark_dangling(instance, name)


def from_redis(model: type[ActiveRecord], record_id: bytes, flat: list[bytes],
               streams: list[bytes | None], fields: set[str] | None = None) -> ActiveRecord:
    """An instance from a record's HGETALL reply and stream values; with ``fields``,
    only those were read (the others are deferred: absent from ``_values``)."""
    meta = model._meta
    codec = meta.codec
    stored_by_name = dict(zip(flat[::2], flat[1::2], strict=True))
    # the key, not the stored id field, says which record this is
    values: dict[str, Any] = {meta.pk_name: uuid_from_ascii(record_id)}
    stored: dict[str, bytes | None] = {meta.pk_name: stored_by_name.get(meta.pk_name.encode())}
    for name, name_bytes, decode, attribute in meta.decoders(codec):
        if fields is not None and name not in fields:
            continue
        raw = stored_by_name.get(name_bytes)
        stored[name] = raw
        if raw is None:
            values[name] = meta.absent_value(name)  # the rule the Lua scripts follow too
            continue
        try:
            values[name] = decode(raw)
        except (CorruptValue, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            key = meta.record_key(record_id.decode("ascii"))
            raise StoredDataError(
                f"{meta.name}.{name} at {key!r} holds {raw[:80]!r}, which is not a "
                f"{type(attribute).__name__} in the {codec.name} codec: {exc}",
                model=meta.name, field=name, key=key, value=raw) from None
    synced: dict[str, bytes | None] = {}
    for name, raw in zip(meta.stream_names, streams, strict=True):
        if fields is None or name in fields:
            value = raw if raw is not None else (None if meta.fields[name].null else b"")
            values[name] = synced[name] = value
    instance = model.__new__(model)
    # the version counter of Meta.optimistic_lock (absent: saved before it was on, or never)
    version = stored_by_name.get(VERSION_BYTES)
    instance.__dict__.update(_values=values, _stored=stored, _synced_streams=synced,
                             _persisted=True, _version=_version(version))
    return instance


def _version(raw: bytes | None) -> int:
    """A stored version (0 when the record has none); a corrupt one reads as -1, which no
    save expects: saving the instance then reports the stored value."""
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        return -1


# -- the generated reader --------------------------------------------------------------------
_ROW_FIELDS: weakref.WeakKeyDictionary[type[ActiveRecord], list[str]] = \
    weakref.WeakKeyDictionary()


def row_fields(model: type[ActiveRecord]) -> list[str]:
    """The hash fields a record is read as by position (HMGET, no names): the id, every
    other field in declaration order, then the version of an optimistic_lock model: all
    that ``from_redis`` reads of a hash. Fixed per model (made once; do not modify)."""
    names = _ROW_FIELDS.get(model)
    if names is None:
        meta = model._meta
        names = [meta.pk_name] + [name for name, _ in meta.hash_fields if name != meta.pk_name]
        if meta.optimistic_lock:
            names.append(VERSION_FIELD)
        _ROW_FIELDS[model] = names
    return names


def reader_for(model: type[ActiveRecord], positional: bool = False) -> Reader:
    """The model's reader for the codec in force (made on first use, cached on ``_meta``):
    ``reader(record_id, flat, streams)`` is ``from_redis(model, record_id, flat, streams)``;
    the ``positional`` one reads ``flat`` as the values of ``row_fields(model)`` followed
    by the stream values (and ignores ``streams``)."""
    meta = model._meta
    name = meta.codec.name + (":positional" if positional else "")
    reader = meta.reader_cache.get(name)
    if reader is None:
        reader = meta.reader_cache[name] = _make_reader(model, positional)
    return reader


def _named(names: list[bytes]) -> Callable[[list[Any]], list[bytes]]:
    """Values read by position as the flat list HGETALL gives (absent fields left out)."""
    def flat(values: list[Any]) -> list[bytes]:
        return [item for name, value in zip(names, values, strict=True) if value is not None
                for item in (name, value)]
    return flat


def _make_reader(model: type[ActiveRecord], positional: bool = False) -> Reader:
    """Straight-line Python for one (model, codec): one local per field, read from the
    record's fields by name (hash order is Redis' own), or ``positional``ly (the values
    of ``row_fields(model)``), decoded with the codec's decoder of that field; an absent
    field reads as ``absent_value`` (called: a default may be a fresh mutable value).
    Field names are Python identifiers, so their reprs are safe literals; everything else
    arrives through the namespace, never as text."""
    meta = model._meta
    decoders = meta.decoders(meta.codec)
    n, k = len(row_fields(model)), len(meta.stream_names)  # values, then streams (positional)
    namespace: dict[str, Any] = {"model": model, "new": model.__new__, "absent": meta.absent_value,
                                 "key_id": uuid_from_ascii, "general": from_redis,
                                 "version_of": _version,
                                 "named": _named([n.encode() for n in row_fields(model)])}
    if positional:
        lines = ["def read(record_id, flat, streams):", "    try:"]
        stored = [f"{meta.pk_name!r}: flat[0]"]
        version = f"flat[{len(decoders) + 1}]"
    else:
        lines = ["def read(record_id, flat, streams):", "    try:", "        pairs = iter(flat)",
                 "        get = dict(zip(pairs, pairs)).get"]
        stored = [f"{meta.pk_name!r}: get({meta.pk_name.encode()!r})"]
        version = f"get({VERSION_BYTES!r})"
    values = [f"{meta.pk_name!r}: key_id(record_id)"]
    for i, (name, name_bytes, decode, attribute) in enumerate(decoders):
        namespace[f"decode_{i}"] = decode
        lines.append(f"        raw_{i} = flat[{i + 1}]" if positional
                     else f"        raw_{i} = get({name_bytes!r})")
        decoded = f"decode_{i}(raw_{i})"
        if meta.codec.is_envelope:  # the envelope repocket writes, unwrapped here: no call
            plain, start, end = envelope_plain(attribute)
            namespace.update({f"plain_{i}": plain, f"field_{i}": attribute.decode})
            decoded = (f"(field_{i}(raw_{i}[{start}:{end}]) if plain_{i}(raw_{i}) "
                       f"else decode_{i}(raw_{i}))")
        values.append(f"{name!r}: absent({name!r}) if raw_{i} is None else {decoded}")
        stored.append(f"{name!r}: raw_{i}")
    synced = []
    for i, name in enumerate(meta.stream_names):
        empty = "None" if meta.fields[name].null else "b''"
        at = f"flat[{n + i}]" if positional else f"streams[{i}]"
        lines.append(f"        stream_{i} = {at}")
        lines.append(f"        if stream_{i} is None: stream_{i} = {empty}")
        values.append(f"{name!r}: stream_{i}")
        synced.append(f"{name!r}: stream_{i}")
    lines += ["        values = {" + ", ".join(values) + "}",
              "        stored = {" + ", ".join(stored) + "}",
              "        synced = {" + ", ".join(synced) + "}",
              # the version counter matters only to an optimistic_lock model (0 otherwise,
              # as a new instance has: plain models pay nothing for it)
              f"        version = version_of({version})" if meta.optimistic_lock
              else "        version = 0",
              "    except Exception:  # a value its field cannot decode: the general path says",
              f"        return general(model, record_id, named(flat[:{n}]), flat[{n}:{n + k}])"
              if positional else "        return general(model, record_id, flat, streams)",
              "    instance = new(model)",
              "    instance.__dict__.update(",
              "        _values=values, _stored=stored, _synced_streams=synced, _persisted=True,",
              "        _version=version)",
              "    return instance"]
    exec("\n".join(lines), namespace)  # generated from the schema alone (see above)
    reader: Reader = namespace["read"]
    return reader
