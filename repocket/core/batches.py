"""Operations of several calls, as plans (see ``plan.Plan``): written once, run by the
sync executor (``repocket.exec.plans``) and the asyncio one (``repocket.exec.aio``)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..attributes import uuid_text
from ..errors import InvalidQuery, RepocketError, ValidationError
from . import ops as operations
from .plan import Emit, Plan
from .query import DELETE_BATCH, Condition, QueryState, compile_query

if TYPE_CHECKING:
    from ..api.model import ActiveRecord


def bulk_records(model: type[ActiveRecord], records: Iterable[ActiveRecord],
                 batch_size: int) -> list[ActiveRecord]:
    """The records of a bulk_create, checked before anything is sent."""
    if batch_size < 1:
        raise InvalidQuery("batch_size must be positive")
    records = list(records)
    seen: set[uuid.UUID] = set()
    for record in records:
        if not isinstance(record, model):
            raise RepocketError(f"bulk_create of {model.__name__} got a "
                                f"{type(record).__name__}")
        if record.pk in seen:
            raise ValidationError(f"bulk_create got two {model.__name__} records "
                                  f"with the id {record.pk}", model=model.__name__,
                                  field=model._meta.pk_name, value=record.pk)
        seen.add(record.pk)
    return records


def bulk_create_plan(model: type[ActiveRecord], records: list[ActiveRecord],
                     batch_size: int, ttl: operations.TTLArg = operations.TTL.DEFAULT) -> Plan:
    """One atomic call per batch (a batch's save blocks are built when it is sent)."""
    operations.ttl_op(model, ttl)  # a bad ttl is refused before the first batch is sent
    for start in range(0, len(records), batch_size):
        yield operations.compile_bulk_create(model, records[start:start + batch_size], ttl)
    return records


def delete_plan(state: QueryState) -> Plan:
    """The matching ids, then atomic deletes of DELETE_BATCH ids; the number deleted."""
    ids = yield compile_query(state, "ids")
    deleted = 0
    for start in range(0, len(ids), DELETE_BATCH):
        records, _keys = yield operations.compile_delete_many(
            state.model, ids[start:start + DELETE_BATCH])
        deleted += records
    return deleted


def iterator_plan(state: QueryState, chunk_size: int) -> Plan:
    """The matching ids, then their records ``chunk_size`` at a time (emitted per chunk)
    in the query's order, with its only()/defer()."""
    if chunk_size < 1:
        raise InvalidQuery("chunk_size must be positive")
    ids = yield compile_query(state, "ids")
    pk = state.model._meta.pk_name
    for start in range(0, len(ids), chunk_size):
        chunk = tuple(uuid_text(i).encode("ascii") for i in ids[start:start + chunk_size])
        # loaded in the given (the query's) order: nothing left to check or sort, so the
        # script takes the ids as they are and loads them, one call per chunk
        page = dataclasses.replace(state, groups=((False, (Condition(pk, "in", chunk),)),),
                                   order=(), offset=0, limit=None,
                                   budget=max(state.budget, chunk_size))
        records: list[Any] = yield compile_query(page, "records")
        yield Emit(records)
