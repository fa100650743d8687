"""``Model.objects``: the entry point of querysets, plus bulk operations."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import operations
from .connections import configure
from .errors import InvalidQuery, RepocketError
from .query import QuerySet, canonical
from .scripts import execute

if TYPE_CHECKING:
    from .model import ActiveRecord


class ReindexReport:
    """What ``reindex()`` did: records indexed, and unique values held by two records."""

    def __init__(self) -> None:
        self.indexed = 0
        self.pruned = 0
        self.conflicts: list[tuple[list[str], bytes, str, str]] = []

    def __repr__(self) -> str:
        return (f"<ReindexReport indexed={self.indexed} pruned={self.pruned} "
                f"conflicts={len(self.conflicts)}>")


class Manager:
    """``Model.objects``: every QuerySet method starts here (``filter``, ``exclude``,
    ``all``, ``get``, ``order_by``, ``count``...), plus ``create``, ``bulk_create``,
    ``get_many`` and ``reindex``."""

    def __init__(self, model: type[ActiveRecord]):
        self.model = model

    def get_queryset(self) -> QuerySet:
        return QuerySet(self.model)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get_queryset(), name)

    def get(self, *, pointer_depth: int = 1, **lookups: Any) -> ActiveRecord | None:
        return self.get_queryset().filter(pointer_depth=pointer_depth).get(**lookups)

    def filter(self, *, pointer_depth: int = 1, **lookups: Any) -> QuerySet:
        return self.get_queryset().filter(pointer_depth=pointer_depth, **lookups)

    def all(self, *, pointer_depth: int = 1) -> QuerySet:
        return self.get_queryset().filter(pointer_depth=pointer_depth)

    def create(self, **kwargs: Any) -> ActiveRecord:
        return self.model.create(**kwargs)

    def bulk_create(self, records: Iterable[ActiveRecord],
                    batch_size: int = 500) -> list[ActiveRecord]:
        """Save new records, one round trip per batch; each batch is atomic (all written or,
        on a unique violation or a missing Pointer target, none)."""
        if batch_size < 1:
            raise InvalidQuery("batch_size must be positive")
        records = list(records)
        for record in records:
            if not isinstance(record, self.model):
                raise RepocketError(f"bulk_create of {self.model.__name__} got a "
                                    f"{type(record).__name__}")
        client = configure.get_connection()
        for start in range(0, len(records), batch_size):
            batch = records[start:start + batch_size]
            execute(client, operations.compile_bulk_create(self.model, batch))
        return records

    def get_many(self, ids: Sequence[Any], *,
                 pointer_depth: int = 1) -> list[ActiveRecord | None]:
        """Records by id in one round trip, in order, None for each missing one."""
        pk = self.model._meta.fields[self.model._meta.pk_name]
        parsed = [uuid.UUID(canonical(self.model, pk, value).decode()) for value in ids]
        call = operations.compile_get_many(self.model, parsed, pointer_depth)
        return execute(configure.get_connection(), call)  # type: ignore[no-any-return]

    def reindex(self, batch_size: int = 1000) -> ReindexReport:
        """Build the indexes and unique claims of records saved before they were declared,
        then remove entries that no longer match their record (written by code that did
        not maintain them), in batches: no script blocks Redis for long, and it is safe
        while the application writes."""
        report = ReindexReport()
        client = configure.get_connection()
        cursor: Any = b"0"
        while True:
            call = operations.compile_reindex(self.model, cursor, batch_size)
            cursor, indexed, conflicts = execute(client, call)
            report.indexed += indexed
            report.conflicts += conflicts
            if cursor == b"0":
                break
        for key_index in range(2, 2 + len(self.model._meta.model_keys)):
            cursor = b"0"
            while True:
                call = operations.compile_prune(self.model, key_index, cursor, batch_size)
                cursor, pruned = execute(client, call)
                report.pruned += pruned
                if cursor == b"0":
                    break
        return report
