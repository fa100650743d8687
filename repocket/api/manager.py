"""``Model.objects``: the entry point of querysets, plus bulk operations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..connections import configure
from ..core import batches
from ..core import ops as operations
from ..core.ops import TTL, TTLArg
from ..core.query import canonical, id_lookup
from ..errors import DoesNotExist, StaleRecord, UniqueViolation
from ..exec.plans import run_plan
from ..exec.sync import execute
from ..tools import check
from ..tools.check import CheckReport
from .aio import AsyncManagerMixin
from .changes import Change, ChangeGroup, read_changes
from .queryset import QuerySet
from .result import ResultSet

if TYPE_CHECKING:
    from .model import ActiveRecord


_R = TypeVar("_R", bound="ActiveRecord")


class Manager(AsyncManagerMixin[_R], Generic[_R]):
    """``Model.objects``: every QuerySet method starts here (``filter``, ``exclude``,
    ``all``, ``get``, ``order_by``, ``count``...), plus ``create``, ``bulk_create``,
    ``get_many`` and ``reindex``."""

    def __init__(self, model: type[_R]):
        self.model = model

    def get_queryset(self) -> QuerySet[_R]:
        return QuerySet(self.model)

    if not TYPE_CHECKING:  # every other QuerySet method, typed for checkers below
        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self.get_queryset(), name)

    # The QuerySet methods, typed (a checker then refuses a misspelt one).
    def exclude(self, **lookups: Any) -> QuerySet[_R]:
        return self.get_queryset().exclude(**lookups)

    def order_by(self, *fields: str) -> ResultSet[_R]:
        return self.get_queryset().order_by(*fields)

    def only(self, *fields: str) -> QuerySet[_R]:
        return self.get_queryset().only(*fields)

    def defer(self, *fields: str) -> QuerySet[_R]:
        return self.get_queryset().defer(*fields)

    def count(self) -> int:
        return self.get_queryset().count()

    def exists(self) -> bool:
        return self.get_queryset().exists()

    def first(self) -> _R | None:
        return self.get_queryset().first()

    def last(self) -> _R | None:
        return self.get_queryset().last()

    def ids(self) -> list[uuid.UUID]:
        return self.get_queryset().ids()

    def iterator(self, chunk_size: int = 1000) -> Iterator[_R]:
        return self.get_queryset().iterator(chunk_size)

    def values(self, *fields: str) -> list[dict[str, Any]]:
        return self.get_queryset().values(*fields)

    def values_list(self, *fields: str, flat: bool = False) -> list[Any]:
        return self.get_queryset().values_list(*fields, flat=flat)

    def delete(self) -> int:
        return self.get_queryset().delete()

    def explain(self) -> dict[str, Any]:
        return self.get_queryset().explain()

    def update(self, **values: Any) -> int:
        return self.get_queryset().update(**values)

    async def aupdate(self, **values: Any) -> int:
        return await self.get_queryset().aupdate(**values)

    def work(self, mode: str = "records") -> list[dict[str, int]]:
        return self.get_queryset().work(mode)

    def __aiter__(self) -> AsyncIterator[_R]:
        return self.get_queryset().__aiter__()

    async def alist(self) -> list[_R]:
        return await self.get_queryset().alist()

    async def acount(self) -> int:
        return await self.get_queryset().acount()

    async def aexists(self) -> bool:
        return await self.get_queryset().aexists()

    async def afirst(self) -> _R | None:
        return await self.get_queryset().afirst()

    async def alast(self) -> _R | None:
        return await self.get_queryset().alast()

    async def aids(self) -> list[Any]:
        return await self.get_queryset().aids()

    def aiterator(self, chunk_size: int = 1000) -> AsyncIterator[_R]:
        return self.get_queryset().aiterator(chunk_size)

    async def avalues(self, *fields: str) -> list[dict[str, Any]]:
        return await self.get_queryset().avalues(*fields)

    async def avalues_list(self, *fields: str, flat: bool = False) -> list[Any]:
        return await self.get_queryset().avalues_list(*fields, flat=flat)

    async def adelete(self) -> int:
        return await self.get_queryset().adelete()

    async def aexplain(self) -> dict[str, Any]:
        return await self.get_queryset().aexplain()

    def get(self, *, pointer_depth: int = 1, **lookups: Any) -> _R | None:
        """The record with these lookups, None when there is none. ``get(id=...)`` is one
        EVALSHA of get.lua, its Pointers loaded ``pointer_depth`` levels deep."""
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       self._get_op(pointer_depth, lookups))

    def _get_op(self, pointer_depth: int, lookups: dict[str, Any]) -> Any:
        record_id = id_lookup(self.model, lookups)
        if record_id is not None:  # the hot path: no queryset to build
            return operations.compile_get(self.model, record_id, pointer_depth)
        return self.get_queryset().filter(pointer_depth=pointer_depth)._get_op(lookups)

    def filter(self, *, pointer_depth: int = 1, **lookups: Any) -> QuerySet[_R]:
        return self.get_queryset().filter(pointer_depth=pointer_depth, **lookups)

    def all(self, *, pointer_depth: int = 1) -> QuerySet[_R]:
        return self.get_queryset().filter(pointer_depth=pointer_depth)

    def none(self) -> QuerySet[_R]:
        """A queryset matching nothing: evaluating it makes no round trip."""
        return self.get_queryset().none()

    def create(self, **kwargs: Any) -> _R:
        """``Model.create``: keyword arguments are fields, and ``ttl`` as for ``save``."""
        return self.model.create(**kwargs)

    def get_or_create(self, defaults: dict[str, Any] | None = None,
                      **lookups: Any) -> tuple[_R, bool]:
        """``(record, created)``, as Django: the record these lookups find, or else one
        created from the lookups and ``defaults``. When the lookups name a unique field
        or a ``unique_together`` group (plain equalities), it is one atomic script, one
        round trip: under any race exactly one caller creates the record and every
        caller gets it. Otherwise it queries, then creates: two callers racing may
        both create (as in Django without a unique constraint)."""
        plan = self._get_or_create_plan(defaults, lookups)
        try:
            step = next(plan)
            while True:
                step = plan.send(execute(configure.get_connection(), step))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _get_or_create_plan(self, defaults: dict[str, Any] | None,
                            lookups: dict[str, Any]) -> Any:
        """get_or_create as a generator of ops (each run by the sync or async executor)."""
        group = operations.unique_lookup(self.model, lookups)
        if group is not None and _defaults_move(self.model, group, lookups, defaults):
            group = None  # finding and creating claim different values: query, then create
        if group is not None:
            record = self.model(**{**lookups, **(defaults or {})})  # defaults win, as Django
            found, created = yield operations.compile_get_or_create(record, group)
            # compared with the values as the fields cleaned them ("5" is 5 for an Integer)
            wanted = {name: record._values[name] for name in lookups}
            if not created and not found.matches(wanted):
                raise _unique_taken(self.model, group, lookups, found)
            return found, created
        found = yield self._get_op(1, lookups)
        if found is not None:
            return found, False
        plain = {name: value for name, value in lookups.items() if "__" not in name}
        record = self.model(**{**plain, **(defaults or {})})
        yield operations.compile_save(record)
        return record, True

    def update_or_create(self, defaults: dict[str, Any] | None = None,
                         **lookups: Any) -> tuple[_R, bool]:
        """``(record, created)``, as Django: get_or_create, then, when the record was
        found, ``defaults`` assigned to it and saved (changed fields only). Creating is
        atomic as in get_or_create; updating a found record is a second round trip
        (last writer wins per field); a record deleted in between is looked up again."""
        while True:
            record, created = self.get_or_create(defaults, **lookups)
            if created or not defaults:
                return record, created
            for name, value in defaults.items():
                setattr(record, name, value)
            try:
                record.save()
            except (DoesNotExist, StaleRecord):
                continue  # deleted or written since found: find or create it again
            return record, False

    def bulk_create(self, records: Iterable[_R], batch_size: int = 500,
                    ttl: TTLArg = TTL.DEFAULT) -> list[_R]:
        """Save new records, one round trip per batch; each batch is atomic (all written or,
        on a unique violation or a missing Pointer target, none). ``ttl`` as for ``save``."""
        checked = batches.bulk_records(self.model, records, batch_size)
        return run_plan(configure.get_connection(),  # type: ignore[no-any-return]
                        batches.bulk_create_plan(self.model, checked, batch_size, ttl))

    def get_many(self, ids: Sequence[Any], *,
                 pointer_depth: int = 1) -> list[_R | None]:
        """Records by id, in order, None for each missing one: one round trip per 500."""
        return execute(configure.get_connection(),  # type: ignore[no-any-return]
                       self._get_many_op(ids, pointer_depth))

    def _get_many_op(self, ids: Sequence[Any], pointer_depth: int) -> Any:
        pk = self.model._meta.fields[self.model._meta.pk_name]
        # a uuid.UUID is its own canonical form (the ids of instances): no text round trip
        parsed = [value if value.__class__ is uuid.UUID
                  else uuid.UUID(canonical(self.model, pk, value).decode()) for value in ids]
        if not parsed:
            return []
        return operations.compile_get_chunked(self.model, parsed, pointer_depth)

    def changes(self, since: str | Change | None = None, block: int | None = None,
                count: int = 100) -> Iterator[Change]:
        """The change feed (``Meta.changes``): one :class:`Change` per committed write
        after the entry id ``since`` (None: from the oldest entry kept; ``'$'``: only
        writes from now on), in order, ``count`` per round trip. Without ``block`` it ends
        when the feed has no more; with ``block`` (ms) it waits that long for new entries
        whenever it runs out, and ends when a wait brings none. Resume from the last
        ``change.id`` seen."""
        return read_changes(self.model, since, block, count)

    def change_group(self, name: str, start: str = "0") -> ChangeGroup:
        """A consumer group of the change feed, for at-least-once processing across
        workers (see :class:`ChangeGroup`), created in Redis now (one round trip) unless
        it exists: at ``start``, ``'0'`` every entry kept, ``'$'`` only entries to come."""
        group = ChangeGroup(self.model, name, start)
        group.create()
        return group

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


def _defaults_move(model: type[ActiveRecord], group: tuple[str, ...], lookups: dict[str, Any],
                   defaults: dict[str, Any] | None) -> bool:
    """Whether ``defaults`` give a field of the unique ``group`` another value than the
    lookups (as the fields clean them): the atomic script finds and creates by one claim,
    while Django finds by the lookups and creates with the defaults."""
    moved = [name for name in group if name in (defaults or {})]
    if not moved:
        return False
    assert defaults is not None
    looked_up = model(**{name: lookups[name] for name in moved})
    created = model(**{name: defaults[name] for name in moved})
    return any(looked_up._values[name] != created._values[name] for name in moved)


def _unique_taken(model: type[ActiveRecord], group: tuple[str, ...], lookups: dict[str, Any],
                  found: ActiveRecord) -> UniqueViolation:
    """What get_or_create raises when the record holding the unique claim differs from
    the other lookups (Django's IntegrityError): creating one would violate the claim."""
    values = [lookups[name] for name in group]
    return UniqueViolation(
        f"{model._meta.name}: {'+'.join(group)} = {values!r} is held by {found.pk}, which "
        f"does not match the other lookups {lookups!r}; nothing was written",
        model=model._meta.name, field=",".join(group),
        value=values[0] if len(values) == 1 else values, owner=str(found.pk))
