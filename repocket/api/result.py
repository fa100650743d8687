"""``ResultSet``: the list of records repocket 0.1 returned from ``filter()``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from .model import ActiveRecord


_R = TypeVar("_R", bound="ActiveRecord")


class ResultSet(list[_R], Generic[_R]):
    """A list of records with ``order_by``: ``order_by('name')``, ``order_by('-started_at', 'id')``.

    Values are compared as their types (numbers numerically, datetimes
    chronologically, naive ones taken as UTC); ``None`` sorts first.
    """

    def __init__(self, model: type[_R], records: Iterable[_R] = ()):
        super().__init__(records)
        self.model = model

    def order_by(self, *fields: str) -> ResultSet[_R]:
        from ..core.query import parse_order

        ordered = list(self)
        for spec in reversed(fields):  # stable sorts, least significant key first
            attribute, descending = parse_order(self.model, spec)

            def key(record: _R, attribute: Any = attribute) -> Any:
                name = attribute.name  # a deferred field loads; a loaded one is used as it is
                value = record._values[name] if name in record._values else getattr(record, name)
                return (0, 0) if value is None else (1, attribute.sort_key(value))

            ordered.sort(key=key, reverse=descending)
        return ResultSet(self.model, ordered)

    @overload  # type: ignore[override]
    def __getitem__(self, index: slice) -> ResultSet[_R]: ...
    @overload
    def __getitem__(self, index: Any) -> _R: ...

    def __getitem__(self, index: Any) -> Any:
        result = super().__getitem__(index)
        return ResultSet(self.model, result) if isinstance(index, slice) else result
