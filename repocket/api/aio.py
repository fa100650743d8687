"""The asyncio API, Django's names: ``await Model.objects.acreate(...)``, ``aget``,
``await record.asave()``, ``async for record in queryset``...

Mixins that ActiveRecord, Manager and QuerySet inherit. Every method here runs
the op, Call or plan its sync twin builds (``_get_op``, ``_count_op``,
``batches.delete_plan``...) on the running loop's ``redis.asyncio`` client
through ``repocket.exec.aio``: no operation is written twice, only awaited.
Building a queryset is shared too (``filter``, ``order_by``, slicing do no I/O).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..attributes import Pointer
from ..connections import configure
from ..core import batches
from ..core import changes as feed
from ..core import ops as operations
from ..core.ops import TTL, TTLArg
from ..core.plan import Plan
from ..errors import DoesNotExist, StaleRecord
from ..exec.aio import aexecute, arun_plan, astream_plan
from ..tools import check

if TYPE_CHECKING:
    from ..core.changes import Change
    from ..tools.check import CheckReport
    from .changes import ChangeGroup
    from .manager import Manager
    from .model import ActiveRecord
    from .queryset import QuerySet


_R = TypeVar("_R", bound="ActiveRecord")
_Rec = TypeVar("_Rec", bound="AsyncRecordMixin")


async def _arun(op: Any) -> Any:
    """Run an op (a Call chain, or a result the cache already had) on this loop's client."""
    return await aexecute(configure.get_async_connection(), op)


async def _arun_plan(plan: Plan) -> Any:
    return await arun_plan(configure.get_async_connection(), plan)


def async_appender(stream: str) -> Any:
    async def aappend(self: ActiveRecord, data: bytes | str) -> int:
        return await _arun(self._append_call(stream, data))  # type: ignore[no-any-return]

    aappend.__name__ = f"aappend_{stream}"
    aappend.__doc__ = f"``append_{stream}``, awaited."
    return aappend


class AsyncRecordMixin:
    """``acreate``, ``asave``, ``adelete``, ``afetch`` (and the generated
    ``aappend_<stream>``)."""

    @classmethod
    async def acreate(cls: type[_Rec], **kwargs: Any) -> _Rec:
        """``create``, awaited: build an instance, save it (``ttl=`` as for ``save``),
        return it."""
        ttl = kwargs.pop("ttl", TTL.DEFAULT)
        instance = cls(**kwargs)
        await instance.asave(ttl=ttl)  # type: ignore[misc]
        return instance

    async def asave(self: ActiveRecord,  # type: ignore[misc]
                    force_insert: bool = False, ttl: TTLArg = TTL.DEFAULT) -> dict[str, Any]:
        """``save()``, awaited: one atomic round trip (``DoesNotExist`` when the record
        was deleted since it was loaded, unless ``force_insert``). Cancelled, it ran whole
        or not at all; this instance then knows nothing was synced, so the next save
        writes it whole."""
        return await _arun(  # type: ignore[no-any-return]
            operations.compile_save(self, whole=force_insert, ttl=ttl))

    async def attl(self: ActiveRecord) -> float | None:  # type: ignore[misc]
        """``ttl()``, awaited: seconds left before the record's deadline, None without one."""
        return await _arun(operations.compile_ttl(self))  # type: ignore[no-any-return]

    async def apersist(self: ActiveRecord) -> bool:  # type: ignore[misc]
        """``persist()``, awaited: clear the record's deadline; whether it had one."""
        return await _arun(operations.compile_persist(self))  # type: ignore[no-any-return]

    async def adelete(self: ActiveRecord) -> int:  # type: ignore[misc]
        """``delete()``, awaited: the number of keys deleted."""
        return await _arun(operations.compile_delete(self))  # type: ignore[no-any-return]

    async def arefresh_from_db(self: ActiveRecord,  # type: ignore[misc]
                               fields: Iterable[str] | None = None, *,
                               pointer_depth: int = 1) -> None:
        """``refresh_from_db()``, awaited: one round trip."""
        self._apply_fresh(await _arun(self._refresh_op(fields, pointer_depth)),
                          whole=fields is None)

    async def afetch(self: ActiveRecord, name: str) -> Any:  # type: ignore[misc]
        """Load what reading ``name`` would load synchronously (a Pointer beyond
        ``pointer_depth``, a field left out by only()/defer()) and return its value;
        reading the attribute afterwards does no I/O. A loaded field is returned as is."""
        self._check_field(name)
        if name not in self._values:
            fresh = await self._deferred_query(name).alist()
            self._apply_deferred(name, fresh)
        attribute = self._meta.fields[name]
        value = self._values[name]
        if isinstance(attribute, Pointer) and value is not None and not hasattr(value, "_meta"):
            target = await attribute.to_model.objects.aget(id=value)
            return attribute.take_target(self, target)
        return value


class AsyncManagerMixin(Generic[_R]):
    """``acreate``, ``aget``, ``aget_many``, ``abulk_create``, ``acheck``, ``areindex``;
    the queryset methods (``acount``, ``afirst``...) are reached as in sync code."""

    model: type[_R]

    async def acreate(self, **kwargs: Any) -> _R:
        return await self.model.acreate(**kwargs)

    async def aget(self: Manager[_R], *, pointer_depth: int = 1,  # type: ignore[misc]
                   **lookups: Any) -> _R | None:
        """The record with these lookups, None when there is none (as ``get``)."""
        return await _arun(self._get_op(pointer_depth, lookups))  # type: ignore[no-any-return]

    async def aget_many(self: Manager[_R], ids: Sequence[Any], *,  # type: ignore[misc]
                        pointer_depth: int = 1) -> list[_R | None]:
        return await _arun(self._get_many_op(ids, pointer_depth))  # type: ignore[no-any-return]

    async def aget_or_create(self: Manager[_R],  # type: ignore[misc]
                             defaults: dict[str, Any] | None = None,
                             **lookups: Any) -> tuple[_R, bool]:
        """``get_or_create``, awaited (atomic, one round trip, on a unique lookup)."""
        plan = self._get_or_create_plan(defaults, lookups)
        try:
            step = next(plan)
            while True:
                step = plan.send(await _arun(step))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def aupdate_or_create(self: Manager[_R],  # type: ignore[misc]
                                defaults: dict[str, Any] | None = None,
                                **lookups: Any) -> tuple[_R, bool]:
        """``update_or_create``, awaited."""
        while True:
            record, created = await self.aget_or_create(defaults, **lookups)
            if created or not defaults:
                return record, created
            for name, value in defaults.items():
                setattr(record, name, value)
            try:
                await record.asave()
            except (DoesNotExist, StaleRecord):
                continue  # deleted or written since found: find or create it again
            return record, False

    async def abulk_create(self, records: Iterable[_R], batch_size: int = 500,
                           ttl: TTLArg = TTL.DEFAULT) -> list[_R]:
        """``bulk_create``, awaited: one atomic round trip per batch."""
        checked = batches.bulk_records(self.model, records, batch_size)
        return await _arun_plan(  # type: ignore[no-any-return]
            batches.bulk_create_plan(self.model, checked, batch_size, ttl))

    async def achanges(self, since: str | Change | None = None, block: int | None = None,
                       count: int = 100) -> AsyncIterator[Change]:
        """``changes``, awaited: ``async for change in Model.objects.achanges(...)``."""
        feed.feed_key(self.model, count, block)
        async for change in astream_plan(configure.get_async_connection(),
                                         feed.changes_plan(self.model, since, block, count)):
            yield change

    async def achange_group(self, name: str, start: str = "0") -> ChangeGroup:
        """``change_group``, awaited (the group created now unless it exists)."""
        from .changes import ChangeGroup  # api.changes imports this module

        group = ChangeGroup(self.model, name, start)
        await group.acreate()
        return group

    async def acheck(self, repair: bool = False, batch_size: int = 1000) -> CheckReport:
        return await _arun_plan(  # type: ignore[no-any-return]
            check.check_plan(self.model, repair, batch_size))

    async def areindex(self, batch_size: int = 1000) -> CheckReport:
        return await _arun_plan(  # type: ignore[no-any-return]
            check.check_plan(self.model, True, batch_size, keyspace_pass=False))


class AsyncQuerySetMixin(Generic[_R]):
    """``async for``, ``alist``, ``acount``, ``aexists``, ``afirst``, ``alast``, ``aget``,
    ``aids``, ``aiterator``, ``avalues``, ``avalues_list``, ``adelete``, ``aupdate``,
    ``aexplain``."""

    def __aiter__(self: QuerySet[_R]) -> AsyncIterator[_R]:  # type: ignore[misc]
        return self._aiterate()

    async def _aiterate(self: QuerySet[_R]) -> AsyncIterator[_R]:  # type: ignore[misc]
        for record in await self.alist():
            yield record

    async def alist(self: QuerySet[_R]) -> list[_R]:  # type: ignore[misc]
        """The records (one round trip unless the scan pages); the queryset caches them."""
        return await _arun(self._records_op())  # type: ignore[no-any-return]

    async def acount(self: QuerySet[_R]) -> int:  # type: ignore[misc]
        return await _arun(self._count_op())  # type: ignore[no-any-return]

    async def aexists(self: QuerySet[_R]) -> bool:  # type: ignore[misc]
        return await _arun(self._exists_op())  # type: ignore[no-any-return]

    async def aget(self: QuerySet[_R], **lookups: Any) -> _R | None:  # type: ignore[misc]
        return await _arun(self._get_op(lookups))  # type: ignore[no-any-return]

    async def afirst(self: QuerySet[_R]) -> _R | None:  # type: ignore[misc]
        return await _arun(self._first_op())  # type: ignore[no-any-return]

    async def alast(self: QuerySet[_R]) -> _R | None:  # type: ignore[misc]
        return await _arun(self._last_op())  # type: ignore[no-any-return]

    async def aids(self: QuerySet[_R]) -> list[Any]:  # type: ignore[misc]
        from ..core.query import compile_query

        return await _arun(compile_query(self.state, "ids"))  # type: ignore[no-any-return]

    async def aiterator(self: QuerySet[_R],  # type: ignore[misc]
                        chunk_size: int = 1000) -> AsyncIterator[_R]:
        """``iterator``: the records ``chunk_size`` at a time, one round trip per chunk."""
        async for record in astream_plan(configure.get_async_connection(),
                                         batches.iterator_plan(self.state, chunk_size)):
            yield record

    async def avalues(self: QuerySet[_R], *fields: str) -> list[dict[str, Any]]:  # type: ignore[misc]
        return await _arun(self._values_op(fields))  # type: ignore[no-any-return]

    async def avalues_list(self: QuerySet[_R], *fields: str,  # type: ignore[misc]
                           flat: bool = False) -> list[Any]:
        return await _arun(self._values_list_op(fields, flat))  # type: ignore[no-any-return]

    async def adelete(self: QuerySet[_R]) -> int:  # type: ignore[misc]
        """``delete``: every matching record, in atomic batches; how many were deleted."""
        return await _arun_plan(self._delete_plan())  # type: ignore[no-any-return]

    async def aupdate(self: QuerySet[_R], **values: Any) -> int:  # type: ignore[misc]
        """``update``: one atomic call per page of matches; how many were updated."""
        return await _arun_plan(self._update_plan(values))  # type: ignore[no-any-return]

    async def aexplain(self: QuerySet[_R]) -> dict[str, Any]:  # type: ignore[misc]
        return await _arun(self._explain_op())  # type: ignore[no-any-return]
