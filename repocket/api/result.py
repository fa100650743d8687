"""``ResultSet``: the list of records repocket 0.1 returned from ``filter()``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

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
        from ..core.query import parse_order

        ordered = list(self)
        for spec in reversed(fields):  # stable sorts, least significant key first
            attribute, descending = parse_order(self.model, spec)

            def key(record: ActiveRecord, attribute: Any = attribute) -> Any:
                name = attribute.name  # a deferred field loads; a loaded one is used as it is
                value = record._values[name] if name in record._values else getattr(record, name)
                return (0, 0) if value is None else (1, attribute.sort_key(value))

            ordered.sort(key=key, reverse=descending)
        return ResultSet(self.model, ordered)

    def __getitem__(self, index: Any) -> Any:
        result = super().__getitem__(index)
        return ResultSet(self.model, result) if isinstance(index, slice) else result
