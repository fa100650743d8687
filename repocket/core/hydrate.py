"""Hydration: instances from the records a read script returned. No I/O here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..attributes import mark_dangling, uuid_from_ascii, uuid_text
from ..errors import StoredDataError
from .codecs import CorruptValue
from .keys import VERSION_FIELD

VERSION_BYTES = VERSION_FIELD.encode()

if TYPE_CHECKING:
    from ..api.model import ActiveRecord


def hydrate(models: list[type[ActiveRecord]], records: list[Any], roots: int = 0,
            root_fields: set[str] | None = None) -> list[ActiveRecord | None]:
    """Instances from the records a read script returned, Pointers linked.

    A Pointer whose target was read is set to that instance (``None`` if the
    target is missing); one beyond the read's depth keeps the target id, which
    the attribute loads on first access. The first ``roots`` records were read
    with only ``root_fields`` (None: all); their other fields load on access."""
    loaded: dict[tuple[int, bytes], ActiveRecord | None] = {}
    result: list[ActiveRecord | None] = []
    for position, (model_index, record_id, flat, streams) in enumerate(records):
        model = models[model_index - 1]
        fields = root_fields if position < roots else None
        instance = from_redis(model, record_id, flat, streams, fields) if flat else None
        loaded[(model_index, record_id)] = instance
        result.append(instance)
    index = models[0]._meta.model_numbers
    for instance in result:
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
    return result


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
