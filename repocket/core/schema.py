"""A model's schema (``_meta``): fields, key names, indexes, unique constraints, codec.

Computed once when the model class is created. No I/O here.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..attributes import Attribute, AutoUUID, Pointer, uuid_text
from ..errors import RepocketActiveRecordDefinitionError
from . import keys as keyspace
from . import layout
from .codecs import CODECS, Codec, envelope_decoder, envelope_encoder, get_codec
from .plan import pack

if TYPE_CHECKING:
    from ..api.manager import Manager
    from ..api.model import ActiveRecord


DEFAULT_CHANGES_MAXLEN = 100_000  # entries a change feed keeps (trimmed approximately)


CODEC_CHANGES = 0  # how often a model's codec was changed after its class was made


class Options:
    """A model's ``_meta``: its fields, keys and codec, computed once at class creation."""

    def __init__(self, model: type[ActiveRecord], fields: dict[str, Attribute], meta: Any):
        self.model = model
        self.name = model.__name__
        self.namespace: str = getattr(meta, "namespace", None) or model.__module__
        self._codec_name: str | None = getattr(meta, "codec", None)
        self.fields = fields
        self.pk_name = next(name for name, f in fields.items() if isinstance(f, AutoUUID))
        self.stream_names = tuple(name for name, f in fields.items() if f.is_stream)
        self.pointer_names = tuple(name for name, f in fields.items() if isinstance(f, Pointer))
        self.hash_fields = tuple((name, f) for name, f in fields.items() if not f.is_stream)
        self.prefix = keyspace.model_prefix(self.namespace, self.name)
        self.ids_key = keyspace.ids_key(self.prefix)
        self.indexed = tuple(name for name, f in fields.items() if f.index)
        self.unique_together: tuple[tuple[str, ...], ...] = tuple(
            (name,) for name, f in fields.items() if f.unique
        ) + tuple(tuple(group) for group in getattr(meta, "unique_together", ()))
        # Keys every write script receives after the id set: per indexed field its
        # sorted set (and null set, if it can hold None), then one hash per unique
        # constraint; `key_position` gives each one's KEYS index.
        self.model_keys = self._model_keys(self.prefix)
        self.key_position = {key: i + 2 for i, key in enumerate(self.model_keys)}
        self.shard_count = _shard_count(self.name, meta)
        self._write_keys: dict[str, tuple[str, ...]] = {}
        # Meta.optimistic_lock: a version counter in each record hash (keys.VERSION_FIELD)
        self.optimistic_lock = bool(getattr(meta, "optimistic_lock", False))
        # Meta.changes: every write appends an entry to the model's stream, which the
        # write scripts receive after the model keys (`write_keys`)
        self.changes = bool(getattr(meta, "changes", False))
        self.changes_maxlen: int = getattr(meta, "changes_maxlen", DEFAULT_CHANGES_MAXLEN)
        self.changes_key = keyspace.changes_key(self.prefix)
        if self.changes:
            self.key_position[self.changes_key] = 2 + len(self.model_keys)
        # The expiry bookkeeping (see core/keys.py), after the model keys in every write
        # script's KEYS (write_keys): the deadlines, and the values an expiring record's
        # entries hold.
        self.deadlines_key = keyspace.deadlines_key(self.prefix)
        self.expiry_keys = (self.deadlines_key, keyspace.expiry_entries_key(self.prefix))
        # Meta.ttl: seconds every save gives the record to live (None: records live on)
        self.ttl: float | None = getattr(meta, "ttl", None)
        # where the expiry keys are in a write script's KEYS (after the change feed)
        self.expiry_position = 2 + len(self.model_keys) + int(self.changes)
        self.schema_cache: dict[Any, bytes] = {}
        self.script_cache: dict[Any, Any] = {}  # codecs (or the default) -> luagen.ModelScripts
        self.decoder_cache: dict[str, list[tuple[str, bytes, Callable[[bytes], Any],
                                                  Attribute]]] = {}
        self.encoder_cache: dict[str, list[tuple[str, Callable[[Any], bytes], Attribute]]] = {}
        self.reader_cache: dict[str, Callable[..., Any]] = {}  # codec -> core.hydrate reader
        self.manager: Manager[Any]  # set by the model's metaclass (the API layer)

    def _model_keys(self, prefix: str) -> tuple[str, ...]:
        keys = []
        for name in self.indexed:
            keys.append(keyspace.index_key(prefix, name))
            if self.fields[name].nullable:
                keys.append(keyspace.null_key(prefix, name))
        keys += [keyspace.unique_key(prefix, group) for group in self.unique_together]
        return tuple(keys)

    # -- the layout: one prefix on one server, one per shard on a cluster ---------------------
    def prefix_of(self, record_id: str) -> str:
        """The prefix of the keys of the record ``record_id`` (its shard's on a cluster)."""
        if not layout.CURRENT.cluster:
            return self.prefix
        return keyspace.shard_prefix(self.prefix, keyspace.shard_of(record_id, self.shard_count))

    def shard_prefixes(self) -> list[str]:
        """Every prefix the model's keys start with: ``prefix``, or each shard's."""
        if not layout.CURRENT.cluster:
            return [self.prefix]
        return [keyspace.shard_prefix(self.prefix, shard) for shard in range(self.shard_count)]

    def write_keys(self, prefix: str) -> tuple[str, ...]:
        """What every write script gets first: the id set, then ``model_keys`` (and the
        change feed, with Meta.changes), then the expiry keys, under ``prefix`` (the
        model's, or one shard's): the same positions for every shard."""
        found = self._write_keys.get(prefix)
        if found is None:
            feed = (keyspace.changes_key(prefix),) if self.changes else ()
            found = self._write_keys[prefix] = (keyspace.ids_key(prefix),
                                                *self._model_keys(prefix), *feed,
                                                *self.expiry_keys_of(prefix))
        return found

    def expiry_keys_of(self, prefix: str) -> tuple[str, str]:
        """The deadlines and the kept values of the records under ``prefix``."""
        return keyspace.deadlines_key(prefix), keyspace.expiry_entries_key(prefix)

    def refuse_on_cluster(self, operation: str) -> None:
        """Raise errors.Unsupported for what the cluster layout cannot run yet for this
        model: nothing is left (the change feed is one stream per shard); kept for the
        checker, which asks."""

    @property
    def codec_name(self) -> str | None:
        """``Meta.codec``, or None (the configured default)."""
        return self._codec_name

    @codec_name.setter
    def codec_name(self, name: str | None) -> None:
        # scripts cached by the default codec alone (luagen.scripts_for) are made again:
        # this model's, and those of every model whose Pointers reach it
        global CODEC_CHANGES
        self._codec_name = name
        CODEC_CHANGES += 1

    @property
    def codec(self) -> Codec:
        # A model without Meta.codec follows the configured default, which may change.
        if self.codec_name:
            return CODECS[self.codec_name]  # checked when the class was defined
        from ..connections import configure

        return get_codec(configure.default_codec())

    def write_schema(self) -> bytes:
        """The msgpack schema of lua/_index.lua: codec, indexes and unique constraints (and,
        for a model with optimistic_lock or changes, those)."""
        is_envelope = self.codec.is_envelope
        cache_key = ("write", is_envelope)
        if cache_key not in self.schema_cache:
            position = self.key_position
            indexes = [[name, self.fields[name].family, self.fields[name].index_kind,
                        position[keyspace.index_key(self.prefix, name)],
                        position.get(keyspace.null_key(self.prefix, name), 0)]
                       for name in self.indexed]
            uniques = [[list(group), position[keyspace.unique_key(self.prefix, group)],
                        [self.fields[f].family for f in group]]
                       for group in self.unique_together]
            tracked = set(self.indexed).union(*self.unique_together)
            absent = {name: value for name, value in self.absent_values().items()
                      if name in tracked}
            schema: list[Any] = [int(is_envelope), indexes, uniques, absent]
            if self.optimistic_lock or self.changes:
                feed = ([position[self.changes_key], self.changes_maxlen, self.feed_fields,
                         list(self.stream_names)] if self.changes else 0)
                schema += [int(self.optimistic_lock), feed]
            self.schema_cache[cache_key] = pack(schema)
        return self.schema_cache[cache_key]

    @property
    def feed_fields(self) -> list[str]:
        """The fields a change entry may name (all but the id), in declaration order."""
        return [name for name in self.fields if name != self.pk_name]

    def absent_value(self, name: str) -> Any:
        """What a record whose hash lacks ``name`` reads (a field added to the model after
        the record was saved, or a None): None for a ``null=True`` field, else the field's
        declared default (its type's empty value without one)."""
        attribute = self.fields[name]
        return None if attribute.null else attribute.initial_value()

    def absent_values(self) -> dict[str, bytes]:
        """Per hash field, the canonical form (``Attribute.encode``, no codec framing) of
        :meth:`absent_value`, where it is not None. The Lua scripts use it in place of an
        absent field once they have unwrapped the codec (``canonical`` in _values.lua), so
        the server sees exactly what Python reads. A callable default (a new value on each
        read) has no fixed form: such a field reads as absent (None) on the server."""
        return self._absent_values

    @functools.cached_property
    def _absent_values(self) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for name, attribute in self.hash_fields:
            if name == self.pk_name or callable(attribute.default):
                continue
            value = self.absent_value(name)
            if value is not None:
                found[name] = attribute.encode(attribute.clean(value, self.name))
        return found

    @functools.cached_property
    def pre_savers(self) -> tuple[Attribute, ...]:
        """The fields whose ``pre_save`` hook does something (``DateTime(auto_now=True)``)."""
        return tuple(f for f in self.fields.values()
                     if type(f).pre_save is not Attribute.pre_save)

    def encoders(self, codec: Codec) -> list[tuple[str, Callable[[Any], bytes], Attribute]]:
        """Per hash field: name, the codec's encoder, the field."""
        key = "encode:" + codec.name
        if key not in self.encoder_cache:
            self.encoder_cache[key] = [
                (name, attribute.encode if not codec.is_envelope
                 else envelope_encoder(attribute), attribute)
                for name, attribute in self.hash_fields]
        return self.encoder_cache[key]

    def decoders(self, codec: Codec) -> list[tuple[str, bytes, Callable[[bytes], Any], Attribute]]:
        """Per hash field but the id: name, name as bytes, the codec's decoder, the field."""
        if codec.name not in self.decoder_cache:
            self.decoder_cache[codec.name] = [
                (name, name.encode(), attribute.decode if not codec.is_envelope
                 else envelope_decoder(attribute), attribute)
                for name, attribute in self.hash_fields if name != self.pk_name]
        return self.decoder_cache[codec.name]

    def record_key(self, record_id: Any) -> str:
        text = uuid_text(record_id) if isinstance(record_id, uuid.UUID) else str(record_id)
        return keyspace.record_key(self.prefix_of(text), text)

    @functools.cached_property
    def reachable_models(self) -> list[type[ActiveRecord]]:
        """This model, then every model its Pointers reach, each once (breadth first)."""
        found: list[type[ActiveRecord]] = [self.model]
        for model in found:
            for name in model._meta.pointer_names:
                target = model._meta.fields[name].to_model  # type: ignore[attr-defined]
                if target not in found:
                    found.append(target)
        return found

    @functools.cached_property
    def model_numbers(self) -> dict[type[ActiveRecord], int]:
        """Each reachable model's index in the read schema (1 for this model)."""
        return {model: i + 1 for i, model in enumerate(self.reachable_models)}


def _shard_count(model: str, meta: Any) -> int:
    """``Meta.shards``: how many shards the model is split into on a cluster."""
    shards = getattr(meta, "shards", None)
    if shards is None:
        return keyspace.DEFAULT_SHARDS
    if isinstance(shards, bool) or not isinstance(shards, int) \
            or not 1 <= shards <= keyspace.MAX_SHARDS:
        raise RepocketActiveRecordDefinitionError(
            f"{model}.Meta.shards must be an integer from 1 to {keyspace.MAX_SHARDS}, "
            f"not {shards!r}")
    return shards
