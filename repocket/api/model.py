"""``ActiveRecord``: a metaclass that collects fields into ``_meta``, and the instance API."""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..attributes import Attribute, AutoUUID, Bytes, Pointer
from ..connections import configure
from ..core import keys as keyspace
from ..core import ops as operations
from ..core.codecs import get_codec
from ..core.ops import TTL, TTLArg
from ..core.plan import then
from ..core.schema import Options
from ..errors import (
    DoesNotExist,
    ModelRedefined,
    RepocketActiveRecordDefinitionError,
    UnknownField,
)
from ..exec.guard import refuse_in_event_loop
from ..exec.sync import execute
from .aio import AsyncRecordMixin, async_appender
from .manager import Manager
from .result import ResultSet

__all__ = ["ActiveRecord", "ResultSet"]

_Record = TypeVar("_Record", bound="ActiveRecord")


class _ManagerDescriptor:
    """``Model.objects``: a ``Manager[Model]`` to type checkers, so querysets and the
    records they give are typed as the model."""

    def __get__(self, instance: None, owner: type[_Record]) -> Manager[_Record]:
        if instance is not None:
            raise AttributeError("objects is reached through the model class, not an instance")
        return owner._meta.manager


def _definition_error(model: str, message: str) -> RepocketActiveRecordDefinitionError:
    return RepocketActiveRecordDefinitionError(f"{model}: {message}")


class ModelBase(type):
    """Collects the declared (and inherited) attributes and builds ``_meta``; nothing else."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> ModelBase:
        cls = super().__new__(mcs, name, bases, namespace)
        if not any(isinstance(base, ModelBase) for base in bases):
            return cls  # ActiveRecord itself
        model: type[ActiveRecord] = cls  # type: ignore[assignment]
        fields = _collect_fields(model, namespace)
        meta = getattr(model, "Meta", None)
        _check_definition(model, fields, meta)
        model._meta = Options(model, fields, meta)
        _claim_keys(model)
        model._meta.manager = Manager(model)
        for stream in model._meta.stream_names:
            setattr(model, f"append_{stream}", _appender(stream))
            setattr(model, f"aappend_{stream}", async_appender(stream))
        return cls


# The model each key prefix belongs to, by where it was defined: (module, qualname).
_key_owners: dict[str, tuple[str, str]] = {}
_key_owners_lock = threading.Lock()


def _claim_keys(model: type[ActiveRecord]) -> None:
    """Refuse a second model on the keys of another (same namespace and class name): they
    would share records and rewrite each other's indexes. The same model defined again
    (a reload in a REPL, ``importlib.reload``) takes the keys over, with a warning."""
    prefix = model._meta.prefix
    origin = (model.__module__, model.__qualname__)
    with _key_owners_lock:
        owner = _key_owners.get(prefix)
        if owner is None:
            _key_owners[prefix] = origin
    if owner is not None and owner != origin:
        raise _definition_error(
            model.__name__, f"its keys {prefix}:* already belong to the model "
            f"{owner[0]}.{owner[1]} (same namespace {model._meta.namespace!r} and class "
            "name): two models would share records and indexes; give one of them another "
            "Meta.namespace")
    if owner == origin:
        warnings.warn(ModelRedefined(
            f"{origin[0]}.{origin[1]} is defined again (a reload?): the new class now "
            f"reads and writes the keys {prefix}:*; instances of the old one keep its "
            "old fields"), stacklevel=3)  # the class statement


def _collect_fields(model: type[ActiveRecord], namespace: dict[str, Any]) -> dict[str, Attribute]:
    fields: dict[str, Attribute] = {}
    for base in reversed(model.__mro__[1:]):
        if "_meta" in vars(base):
            fields.update(vars(base)["_meta"].fields)
    own = {k: v for k, v in namespace.items() if isinstance(v, Attribute)}
    for attribute in own.values():
        if isinstance(attribute, Pointer) and attribute.to_model == "self":
            attribute.to_model = model
    fields.update(own)
    autos = [name for name, f in fields.items() if isinstance(f, AutoUUID)]
    if len(autos) > 1:
        raise _definition_error(model.__name__, f"more than one AutoUUID: {autos}")
    if not autos:
        if "id" in fields:
            raise _definition_error(model.__name__, "'id' is not an AutoUUID, and there is no "
                                    "AutoUUID to be the record's id")
        implicit = AutoUUID()
        implicit.__set_name__(model, "id")
        model.id = implicit
        fields = {"id": implicit, **fields}
    return fields


def _check_definition(model: type[ActiveRecord], fields: dict[str, Attribute], meta: Any) -> None:
    reserved = set(dir(ActiveRecord)) | {"pk", "objects", "Meta", "pointer_depth"}
    appenders = {f"{prefix}append_{name}" for name, f in fields.items() if f.is_stream
                 for prefix in ("", "a")}
    for name, attribute in fields.items():
        if not name.isidentifier() or not keyspace.is_valid_name_part(name):
            raise _definition_error(model.__name__, f"the field name {name!r} must be a Python "
                                    "identifier (it becomes part of key names)")
        if name.startswith("_") or name in reserved or name in appenders:
            raise _definition_error(model.__name__,
                                    f"the field name {name!r} collides with the model's API")
        if attribute.index and getattr(attribute, "allow_nan", False):
            raise _definition_error(model.__name__, f"Float field {name!r} cannot be indexed "
                                    "with allow_nan=True: NaN has no place in an order")
        if attribute.index and attribute.index_kind is None:
            raise _definition_error(model.__name__, f"{type(attribute).__name__} field {name!r} "
                                    "cannot be indexed or unique")
        if isinstance(attribute, Pointer):
            target = attribute.to_model
            if not (isinstance(target, type) and issubclass(target, ActiveRecord)
                    and target is not ActiveRecord):
                raise _definition_error(model.__name__, f"Pointer {name!r} must point at an "
                                        f"ActiveRecord model, not {target!r}")
    namespace_name = getattr(meta, "namespace", None) or model.__module__
    for part, text in (("namespace", namespace_name), ("class name", model.__name__)):
        if not keyspace.is_valid_name_part(text):
            raise _definition_error(model.__name__, f"the {part} {text!r} may hold only "
                                    "letters, digits, '_', '.' and '-'")
    for group in getattr(meta, "unique_together", ()):
        if isinstance(group, str) or not group or any(
                name not in fields or fields[name].index_kind is None for name in group):
            raise _definition_error(model.__name__, f"unique_together entry {group!r} must be a "
                                    "tuple of indexable field names")
    for option in ("optimistic_lock", "changes"):
        if not isinstance(getattr(meta, option, False), bool):
            raise _definition_error(model.__name__, f"Meta.{option} must be True or False, not "
                                    f"{getattr(meta, option)!r}")
    maxlen = getattr(meta, "changes_maxlen", 1)
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
        raise _definition_error(model.__name__, "Meta.changes_maxlen must be a positive "
                                f"integer, not {maxlen!r}")
    ttl = getattr(meta, "ttl", None)
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                            or not 0 < ttl <= operations.MAX_TTL):
        raise _definition_error(model.__name__, f"Meta.ttl must be a positive number of "
                                f"seconds (at most {operations.MAX_TTL}) or None, not {ttl!r}")
    codec = getattr(meta, "codec", None)
    if codec is not None:
        try:
            get_codec(codec)
        except ValueError as exc:
            raise _definition_error(model.__name__, str(exc)) from None


def _appender(stream: str) -> Any:
    def append(self: ActiveRecord, data: bytes | str) -> int:
        return self._append(stream, data)

    append.__name__ = f"append_{stream}"
    append.__doc__ = (f"Append bytes to ``{stream}`` in one atomic round trip (Redis APPEND) "
                      "and return its new length. An unsaved instance keeps them for save().")
    return append


class ActiveRecord(AsyncRecordMixin, metaclass=ModelBase):
    """Base model class: declare attributes on a subclass, Django-style.

    ``Meta`` may set ``namespace`` (replaces the module in key names) and
    ``codec`` (``"envelope"``, the default, or ``"compact"``).
    """

    _meta: ClassVar[Options]
    objects = _ManagerDescriptor()
    if TYPE_CHECKING:  # every model has an id: an AutoUUID, declared or added by ModelBase
        id: AutoUUID
    _values: dict[str, Any]
    _stored: dict[str, bytes | None]
    _synced_streams: dict[str, bytes | None]
    _persisted: bool
    _version: int

    def __init__(self, *args: Any, **kw: Any):
        if args:
            raise TypeError(f"{type(self).__name__}() takes keyword arguments only")
        meta = self._meta
        fields = meta.fields
        if not kw.keys() <= fields.keys():
            unknown = sorted(set(kw) - set(fields))
            raise UnknownField(
                f"{meta.name} has no field {unknown[0]!r}; its fields are {list(fields)}",
                model=meta.name, field=unknown[0], value=kw[unknown[0]])
        values: dict[str, Any] = {}
        state = self.__dict__
        state["_values"] = values
        state["_stored"] = {}
        state["_synced_streams"] = {}  # nothing known: the first save sets the streams
        state["_persisted"] = False
        state["_version"] = 0  # Meta.optimistic_lock: the version last read or written
        name = meta.name
        for field, attribute in fields.items():
            value = kw[field] if field in kw else attribute.initial_value()
            values[field] = attribute.clean(value, name)

    # -- persistence -----------------------------------------------------------------------
    @classmethod
    def create(cls: type[_Record], **kwargs: Any) -> _Record:
        """Build an instance from keyword arguments, save it (``ttl=`` as for ``save``),
        and return it."""
        ttl = kwargs.pop("ttl", TTL.DEFAULT)
        instance = cls(**kwargs)
        instance.save(ttl=ttl)
        return instance

    def save(self, force_insert: bool = False, ttl: TTLArg = TTL.DEFAULT) -> dict[str, Any]:
        """Persist the record in one atomic round trip.

        An instance loaded from Redis writes its changed fields; if its record was
        deleted meanwhile, nothing is written and ``DoesNotExist`` is raised.
        ``force_insert=True`` writes the whole record whatever Redis holds (creating
        a deleted record again). ``ttl``: seconds until the record expires (from the
        server's clock), None for no deadline, ``KEEP_TTL`` to keep its deadline; by
        default ``Meta.ttl`` when the model declares one (refreshed by every save), else
        the record's deadline is kept. Returns ``{'hash': key, 'strings': {stream field:
        key}}``."""
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       operations.compile_save(self, whole=force_insert, ttl=ttl))

    def ttl(self) -> float | None:
        """Seconds left before the record's deadline, None when it has none (one round
        trip); ``DoesNotExist`` when the record is gone (deleted, or past its deadline)."""
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       operations.compile_ttl(self))

    def persist(self) -> bool:
        """Clear the record's deadline (it lives until deleted) in one round trip; whether
        it had one. ``DoesNotExist`` (nothing written) when the record is gone."""
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       operations.compile_persist(self))

    def delete(self) -> int:
        """Delete the record's hash and ByteStreams; return the number of keys deleted."""
        deleted: int = execute(configure.get_connection(), operations.compile_delete(self))
        self.__dict__["_deleted"] = True  # a Pointer to it then says "deleted", not "unsaved"
        return deleted

    def refresh_from_db(self, fields: Iterable[str] | None = None, *,
                        pointer_depth: int = 1) -> None:
        """Reload the record's fields (or only ``fields``) from Redis in one round trip,
        as Django's: values changed in memory and not saved are replaced. DoesNotExist
        when the record is gone (or was never saved)."""
        self._apply_fresh(execute(configure.get_connection(),
                                  self._refresh_op(fields, pointer_depth)), whole=fields is None)

    def _refresh_op(self, fields: Iterable[str] | None, pointer_depth: int) -> Any:
        """The load refresh_from_db runs: the whole record (get.lua), or the given fields
        (only()); its result is a list of zero or one record."""
        if fields is None:
            return then(operations.compile_get(type(self), self.pk, pointer_depth),
                        lambda record: [] if record is None else [record])
        if isinstance(fields, str):
            raise TypeError("refresh_from_db(fields=...) takes a list of field names")
        names = list(fields)
        for name in names:
            self._check_field(name)
        return self._meta.manager.filter(pointer_depth=pointer_depth, pk=self.pk).only(
            *names)[:1]._records_op() if names else []

    def _apply_fresh(self, found: list[ActiveRecord], whole: bool) -> None:
        """The instance as ``found[0]``; only a ``whole`` reload makes its version
        (optimistic_lock) the stored one: fields not reloaded may still be stale."""
        meta = self._meta
        if not found:
            raise DoesNotExist(f"{meta.name} {self.pk} does not exist (deleted, or never "
                               "saved): nothing to refresh from", model=meta.name,
                               value=self.pk)
        fresh = found[0]
        for name, value in fresh._values.items():
            self._values[name] = value
            for state in ("_stored", "_synced_streams"):
                mine, theirs = getattr(self, state), getattr(fresh, state)
                if name in theirs:
                    mine[name] = theirs[name]
                else:
                    mine.pop(name, None)
        if whole:
            self._version = fresh._version
        self._persisted = True

    def _append(self, stream: str, data: bytes | str) -> int:
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       self._append_call(stream, data))

    def _append_call(self, stream: str, data: bytes | str) -> Any:
        """The append, as a Call; or its result when the instance is unsaved (the bytes
        wait in memory for save())."""
        attribute = self._meta.fields[stream]
        chunk: bytes = attribute.clean(data, self._meta.name)
        if not self._persisted:
            self._values[stream] = (self._values[stream] or b"") + chunk
            return len(self._values[stream])
        return operations.compile_append(self, stream, chunk)

    def _refuse_lazy_load(self, name: str) -> None:
        refuse_in_event_loop(f"reading {self._meta.name}.{name}, which is not loaded, loads "
                             f"it: that", f"await record.afetch({name!r}) first")

    def _deferred_query(self, name: str) -> Any:
        """The query that loads a field left out by only()/defer() (or not yet known)."""
        return self._meta.manager.filter(pointer_depth=0, pk=self.pk).only(name)[:1]

    def _load_deferred(self, name: str) -> Any:
        """Load a field left out by only()/defer(), in one round trip."""
        self._refuse_lazy_load(name)
        return self._apply_deferred(name, list(self._deferred_query(name)))

    def _apply_deferred(self, name: str, fresh: list[ActiveRecord]) -> Any:
        meta = self._meta
        if not fresh:
            raise DoesNotExist(f"{meta.name} {self.pk} no longer exists; cannot load {name!r}",
                               model=meta.name, field=name, value=self.pk)
        record = fresh[0]
        self._values[name] = record._values[name]
        if name in record._stored:
            self._stored[name] = record._stored[name]
        if name in record._synced_streams:
            self._synced_streams[name] = record._synced_streams[name]
        return self._values[name]

    # -- in-memory access ---------------------------------------------------------------------
    @property
    def lock_version(self) -> int | None:
        """With ``Meta.optimistic_lock``: the record's version as this instance last read
        or wrote it (0 before its first save); a save or delete expects Redis to hold it.
        None for a model without optimistic_lock."""
        return self._version if self._meta.optimistic_lock else None

    @property
    def pk(self) -> uuid.UUID:
        return self._values[self._meta.pk_name]  # type: ignore[no-any-return]

    def _key(self) -> str:
        return self._meta.record_key(self.pk)

    def _check_field(self, name: str) -> None:
        if name not in self._meta.fields:
            raise UnknownField(f"{self._meta.name} has no field {name!r}; its fields are "
                               f"{list(self._meta.fields)}", model=self._meta.name, field=name)

    def __getitem__(self, name: str) -> Any:
        if name not in self._meta.fields:
            raise KeyError(f"{self._meta.name} has no field {name!r}; its fields are "
                           f"{list(self._meta.fields)}")
        return getattr(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in self._meta.fields:
            raise KeyError(f"{self._meta.name} has no field {name!r}; its fields are "
                           f"{list(self._meta.fields)}")
        setattr(self, name, value)

    def matches(self, kw: dict[str, Any]) -> bool:
        """True when every given field equals the given value (Pointers compare by id)."""
        for name, expected in kw.items():
            self._check_field(name)
            attribute = self._meta.fields[name]
            # a loaded value as it is (a Pointer not yet fetched is its id); a deferred one loads
            actual = self._values[name] if name in self._values else getattr(self, name)
            if isinstance(attribute, Pointer):
                actual = None if actual is None else attribute.target_id(actual)
                expected = None if expected is None else attribute.target_id(expected)
            if actual != expected:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The field values by name; a Pointer gives its target's id."""
        result = dict(self._values)
        for name in self._meta.pointer_names:
            value = result[name]
            if value is not None:
                result[name] = self._meta.fields[name].target_id(value)  # type: ignore[attr-defined]
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActiveRecord):
            return NotImplemented
        return type(self) is type(other) and self.pk == other.pk

    def __hash__(self) -> int:
        return hash((type(self), self.pk))

    def __repr__(self) -> str:
        fields = self._meta.fields
        shown = [f"{name}={_shown_value(fields[name], value)}"
                 for name, value in self.to_dict().items()]
        return f"<{self._meta.name} {' '.join(shown)}>"


REPR_VALUE_LIMIT = 60  # characters of one value in a record's repr


def _shown_value(attribute: Attribute, value: Any) -> str:
    """A value as a record's repr shows it: bytes (passwords, tokens, logs) by their
    length only, anything else cut at REPR_VALUE_LIMIT characters."""
    if isinstance(value, bytes) and isinstance(attribute, Bytes):
        return f"<{len(value)} bytes>"
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # deeply nested JSON; an int of 5,000 digits
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= REPR_VALUE_LIMIT else text[:REPR_VALUE_LIMIT - 3] + "..."
