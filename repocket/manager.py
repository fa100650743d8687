"""``Model.objects``: reads (get, filter, all) and the list-like ``ResultSet``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, SupportsIndex, overload

from . import operations
from .attributes import AutoUUID, Pointer, parse_uuid
from .connections import configure
from .errors import InvalidId, MultipleObjectsReturned, UnknownField, ValidationError
from .scripts import execute

if TYPE_CHECKING:
    from .model import ActiveRecord


class ResultSet(list):  # type: ignore[type-arg]
    """A list of records with ``order_by``: ``order_by('name')``, ``order_by('-started_at', 'id')``.

    Values are compared as their types (numbers numerically, datetimes
    chronologically, naive ones taken as UTC); ``None`` sorts first.
    """

    def __init__(self, model: type[ActiveRecord], records: Iterable[ActiveRecord] = ()):
        super().__init__(records)
        self.model = model

    def order_by(self, *fields: str) -> ResultSet:
        ordered = list(self)
        for spec in reversed(fields):  # stable sorts, least significant key first
            name = spec.lstrip("-")
            attribute = _field(self.model, name)

            def key(record: ActiveRecord, name: str = name, attribute: Any = attribute) -> Any:
                value = record._values[name]
                return (0, 0) if value is None else (1, attribute.sort_key(value))

            ordered.sort(key=key, reverse=spec.startswith("-"))
        return ResultSet(self.model, ordered)

    @overload
    def __getitem__(self, index: SupportsIndex) -> ActiveRecord: ...
    @overload
    def __getitem__(self, index: slice) -> ResultSet: ...
    def __getitem__(self, index: Any) -> Any:
        result = super().__getitem__(index)
        return ResultSet(self.model, result) if isinstance(index, slice) else result


def _field(model: type[ActiveRecord], name: str, value: Any = None) -> Any:
    try:
        return model._meta.fields[name]
    except KeyError:
        raise UnknownField(f"{model._meta.name} has no field {name!r}; its fields are "
                           f"{list(model._meta.fields)}", model=model._meta.name,
                           field=name, value=value) from None


class Manager:
    """Reads of one model. Each read is one round trip to Redis."""

    def __init__(self, model: type[ActiveRecord]):
        self.model = model

    def create(self, **kwargs: Any) -> ActiveRecord:
        return self.model.create(**kwargs)

    def get(self, *, pointer_depth: int = 1, **lookups: Any) -> ActiveRecord | None:
        """The record with the given id (``id=``, ``pk=``), or None when there is none.

        Pointers are loaded ``pointer_depth`` levels deep in the same round trip; deeper
        ones load on first access. Other lookups run a filter and raise
        MultipleObjectsReturned when more than one record matches.
        """
        meta = self.model._meta
        if len(lookups) == 1 and next(iter(lookups)) in ("pk", meta.pk_name):
            record_id = self._parse_id(next(iter(lookups.values())))
            call = operations.compile_get(self.model, record_id, pointer_depth)
            return execute(configure.get_connection(), call)  # type: ignore[no-any-return]
        results = self.filter(pointer_depth=pointer_depth, **lookups)
        if len(results) > 1:
            raise MultipleObjectsReturned(
                f"{meta.name}.objects.get({lookups}) matched {len(results)} records")
        return results[0] if results else None

    def filter(self, *, pointer_depth: int = 1, **lookups: Any) -> ResultSet:
        """Records whose fields equal every given value, in one round trip (a server-side scan
        of the model's id set). Pointer fields take an instance or an id."""
        meta = self.model._meta
        if "pk" in lookups:
            lookups[meta.pk_name] = lookups.pop("pk")
        expected = {name: self._lookup_value(name, value) for name, value in lookups.items()}
        conditions = []
        for name, value in expected.items():
            attribute = meta.fields[name]
            if attribute.is_stream:
                continue  # streams are not in the hash: compared in Python below
            accepted = [None] if value is None else attribute.comparable_values(value)
            if accepted is not None and None not in accepted:
                conditions.append((name, [meta.codec.encode(attribute, v) for v in accepted]))
        call = operations.compile_filter(self.model, conditions, pointer_depth)
        records = execute(configure.get_connection(), call)
        return ResultSet(self.model, (r for r in records if r.matches(expected)))

    def all(self, *, pointer_depth: int = 1) -> ResultSet:
        return self.filter(pointer_depth=pointer_depth)

    def _parse_id(self, value: Any) -> Any:
        meta = self.model._meta
        try:
            return parse_uuid(value)
        except (TypeError, ValueError) as exc:
            raise InvalidId(f"{meta.name}.{meta.pk_name}: {exc}", model=meta.name,
                            field=meta.pk_name, value=value) from None

    def _lookup_value(self, name: str, value: Any) -> Any:
        attribute = _field(self.model, name, value)
        if value is None:
            return None
        if isinstance(attribute, AutoUUID):
            return self._parse_id(value)
        if isinstance(attribute, Pointer):
            try:
                return attribute.lookup_id(value)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"{self.model._meta.name}.{name}: {exc}",
                                      model=self.model._meta.name, field=name,
                                      value=value) from None
        return attribute.clean(value, self.model._meta.name)
