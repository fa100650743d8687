"""``Model.objects``: the entry point of querysets, plus bulk operations."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..connections import configure
from ..core import batches
from ..core import ops as operations
from ..core.query import canonical, id_lookup
from ..exec.plans import run_plan
from ..exec.scripts import execute
from ..tools import check
from ..tools.check import CheckReport
from .aio import AsyncManagerMixin
from .queryset import QuerySet

if TYPE_CHECKING:
    from .model import ActiveRecord


class Manager(AsyncManagerMixin):
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
        """The record with these lookups, None when there is none. ``get(id=...)`` is one
        EVALSHA of get.lua, its Pointers loaded ``pointer_depth`` levels deep."""
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       self._get_op(pointer_depth, lookups))

    def _get_op(self, pointer_depth: int, lookups: dict[str, Any]) -> Any:
        record_id = id_lookup(self.model, lookups)
        if record_id is not None:  # the hot path: no queryset to build
            return operations.compile_get(self.model, record_id, pointer_depth)
        return self.get_queryset().filter(pointer_depth=pointer_depth)._get_op(lookups)

    def filter(self, *, pointer_depth: int = 1, **lookups: Any) -> QuerySet:
        return self.get_queryset().filter(pointer_depth=pointer_depth, **lookups)

    def all(self, *, pointer_depth: int = 1) -> QuerySet:
        return self.get_queryset().filter(pointer_depth=pointer_depth)

    def none(self) -> QuerySet:
        """A queryset matching nothing: evaluating it makes no round trip."""
        return self.get_queryset().none()

    def create(self, **kwargs: Any) -> ActiveRecord:
        return self.model.create(**kwargs)

    def bulk_create(self, records: Iterable[ActiveRecord],
                    batch_size: int = 500) -> list[ActiveRecord]:
        """Save new records, one round trip per batch; each batch is atomic (all written or,
        on a unique violation or a missing Pointer target, none)."""
        records = batches.bulk_records(self.model, records, batch_size)
        return run_plan(configure.get_connection(),  # type: ignore[no-any-return]
                        batches.bulk_create_plan(self.model, records, batch_size))

    def get_many(self, ids: Sequence[Any], *,
                 pointer_depth: int = 1) -> list[ActiveRecord | None]:
        """Records by id, in order, None for each missing one: one round trip per 500."""
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       self._get_many_op(ids, pointer_depth))

    def _get_many_op(self, ids: Sequence[Any], pointer_depth: int) -> Any:
        pk = self.model._meta.fields[self.model._meta.pk_name]
        parsed = [uuid.UUID(canonical(self.model, pk, value).decode()) for value in ids]
        if not parsed:
            return []
        return operations.compile_get_chunked(self.model, parsed, pointer_depth)

    def reindex(self, batch_size: int = 1000) -> CheckReport:
        """Build the index entries and unique claims of records saved before they were
        declared, and remove entries that no longer match their record (written by code
        that did not maintain them), in batches: no script blocks Redis for long, and it
        is safe while the application writes. Unique values held by two records are
        reported in ``.conflicts``, never guessed at."""
        return check.run(self.model, repair=True, batch_size=batch_size, keyspace_pass=False)

    def check(self, repair: bool = False, batch_size: int = 1000) -> CheckReport:
        """Verify the model's data: every id has its record, every record is in the id set
        and its indexes, every index entry matches its record, unique values are held
        once, no ByteStream outlives its record. ``.problems`` lists what was found;
        with ``repair=True`` what can be fixed is fixed (``.ok`` then says nothing
        unfixable remains)."""
        return check.run(self.model, repair=repair, batch_size=batch_size)
