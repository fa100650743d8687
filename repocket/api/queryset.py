"""Querysets: immutable, lazy, Django-style. Building one does no I/O; evaluating it
runs the calls that ``repocket.core.query`` compiles."""

from __future__ import annotations

import functools
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..connections import configure
from ..core import batches
from ..core import ops as operations
from ..core import update as updates
from ..core.plan import Call, Gather, Plan, then
from ..core.query import (
    QueryState,
    _field,
    _Keys,
    _sources,
    compile_query,
    describe_source,
    id_lookup,
    parse_lookup,
    parse_order,
)
from ..errors import InvalidQuery, MultipleObjectsReturned
from ..exec.guard import in_event_loop
from ..exec.plans import run_plan, stream_plan
from ..exec.sync import execute
from .aio import AsyncQuerySetMixin
from .result import ResultSet

if TYPE_CHECKING:
    from .model import ActiveRecord


_R = TypeVar("_R", bound="ActiveRecord")

REPR_OUTPUT_SIZE = 20  # records a queryset's repr shows (Django's number)


def _is_position(value: Any) -> bool:
    """An index or slice bound a query can send: the scripts count in doubles."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**53


_EMPTY: weakref.WeakKeyDictionary[type[Any], QueryState] = weakref.WeakKeyDictionary()


def _empty_state(model: type[Any]) -> QueryState:
    """The state of ``Model.objects`` itself, made once per model (it is immutable): every
    query starts from it."""
    state = _EMPTY.get(model)
    if state is None:
        state = _EMPTY[model] = QueryState(model)
    return state


def _run(op: Call | Any) -> Any:
    """Run an op: a Call (chain), or a result the cache already had."""
    return execute(configure.get_connection(), op)


class QuerySet(AsyncQuerySetMixin[_R], ResultSet[_R]):
    """A lazy, immutable query; a list of records once evaluated (iteration, ``len``,
    indexing, comparison). Every method that refines it returns a new QuerySet."""

    def __init__(self, model: type[_R], state: QueryState | None = None):
        super().__init__(model)
        self.state = state or _empty_state(model)
        self._cache: list[_R] | None = None

    def _clone(self, **changes: Any) -> QuerySet[_R]:
        return QuerySet(self.model, self.state.evolve(**changes))

    # -- refining ------------------------------------------------------------------------
    def filter(self, *, pointer_depth: int | None = None, **lookups: Any) -> QuerySet[_R]:
        return self._where(False, lookups, pointer_depth)

    def exclude(self, **lookups: Any) -> QuerySet[_R]:
        return self._where(True, lookups, None)

    def _where(self, negated: bool, lookups: dict[str, Any], depth: int | None) -> QuerySet[_R]:
        self._check_unsliced()
        if depth is not None:
            operations.check_depth(depth)
        conditions = tuple(parse_lookup(self.model, k, v) for k, v in lookups.items())
        groups = (*self.state.groups, (negated, conditions)) if conditions else self.state.groups
        return self._clone(groups=groups, depth=self.state.depth if depth is None else depth)

    def all(self) -> QuerySet[_R]:
        return self._clone()

    def none(self) -> QuerySet[_R]:
        """A queryset matching nothing (as Django's): every evaluation of it, and of any
        queryset refined from it, returns empty without a round trip."""
        return self._clone(empty=True)

    def order_by(self, *fields: str) -> ResultSet[_R]:
        """Order on the server; a sliced queryset (a page) is fetched and its records
        reordered in memory, as repocket 0.1's ResultSet did."""
        for spec in fields:
            parse_order(self.model, spec)
        if self._is_sliced():
            return ResultSet(self.model, self._fetch()).order_by(*fields)
        return self._clone(order=tuple(fields))

    def only(self, *fields: str) -> QuerySet[_R]:
        return self._clone(only=tuple(_field(self.model, f).name for f in fields), defer=())

    def defer(self, *fields: str) -> QuerySet[_R]:
        return self._clone(defer=self.state.defer + tuple(_field(self.model, f).name
                                                          for f in fields))

    def _is_sliced(self) -> bool:
        return bool(self.state.offset) or self.state.limit is not None

    def _check_unsliced(self) -> None:
        if self._is_sliced():
            raise InvalidQuery("cannot filter a query once it is sliced")

    # -- evaluating ------------------------------------------------------------------------
    # Each evaluation is compiled into an op (a Call chain whose result is the method's,
    # or the result itself when the cache answers) that the sync methods below and the
    # async ones (api/aio.py) run: its logic is written once.
    def _fetch(self) -> list[_R]:
        return _run(self._records_op())  # type: ignore[no-any-return]

    def _records_op(self) -> Any:
        if self._cache is not None:
            return self._cache
        return then(compile_query(self.state, "records"), self._fill)

    def _fill(self, records: list[_R]) -> list[_R]:
        self._cache = records
        list.clear(self)
        list.extend(self, records)
        return records

    def __iter__(self) -> Iterator[_R]:
        return iter(self._fetch())

    def __len__(self) -> int:
        return len(self._fetch())

    def __bool__(self) -> bool:
        return bool(self._fetch())

    def __contains__(self, item: object) -> bool:
        return item in self._fetch()

    def __eq__(self, other: object) -> bool:
        return self._fetch() == (list(other) if isinstance(other, Sequence) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """At most REPR_OUTPUT_SIZE records, as Django shows them: an unevaluated queryset
        reads only those (plus one, to know whether to say more remain). Inside a running
        event loop an unevaluated queryset is not read (a repr in a log line must not
        block the loop, nor raise)."""
        if self._cache is None and in_event_loop():
            return f"<QuerySet {self.model._meta.name} (not evaluated: await .alist())>"
        shown: list[Any] = list(self._cache if self._cache is not None
                                else self[:REPR_OUTPUT_SIZE + 1]._fetch())
        if len(shown) > REPR_OUTPUT_SIZE:
            shown[REPR_OUTPUT_SIZE:] = ["...(remaining elements truncated)..."]
        return f"<QuerySet {shown!r}>"

    @overload  # type: ignore[override]
    def __getitem__(self, index: slice) -> QuerySet[_R]: ...
    @overload
    def __getitem__(self, index: Any) -> _R: ...

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            if (index.step not in (None, 1) or not _is_position(index.start or 0)
                    or (index.stop is not None and not _is_position(index.stop))):
                raise InvalidQuery("querysets take slices [start:stop] of integers from 0 to "
                                   "2**53, with no step")
            start = self.state.offset + (index.start or 0)
            stop = None if index.stop is None else self.state.offset + index.stop
            if self.state.limit is not None:
                end = self.state.offset + self.state.limit
                stop = end if stop is None else min(stop, end)
            limit = None if stop is None else max(0, stop - start)
            return self._clone(offset=start, limit=limit)
        if not _is_position(index):
            raise InvalidQuery("querysets take integer indexes from 0 to 2**53")
        if self._cache is not None:
            return self._cache[index]
        found = self[index:index + 1]._fetch()
        if not found:
            raise IndexError("queryset index out of range")
        return found[0]

    def count(self) -> int:  # type: ignore[override]  # list.count(x) has no meaning here
        return _run(self._count_op())  # type: ignore[no-any-return]

    def _count_op(self) -> Any:
        if self._cache is not None:
            return len(self._cache)
        return then(compile_query(self.state, "count"), int)

    def exists(self) -> bool:
        return _run(self._exists_op())  # type: ignore[no-any-return]

    def _exists_op(self) -> Any:
        return then(compile_query(self[:1].state, "ids"), bool)

    def get(self, **lookups: Any) -> _R | None:
        """The one matching record, None when there is none; MultipleObjectsReturned
        when there are several. ``get(id=...)`` alone is one EVALSHA of get.lua."""
        return _run(self._get_op(lookups))  # type: ignore[no-any-return]

    def _get_op(self, lookups: dict[str, Any]) -> Any:
        meta = self.model._meta
        plain = (not self.state.groups and self.state.only is None and not self.state.defer
                 and not self.state.empty)
        record_id = id_lookup(self.model, lookups) if plain else None
        if record_id is not None:
            return operations.compile_get(self.model, record_id, self.state.depth)

        def one(found: list[_R]) -> _R | None:
            if len(found) > 1:
                raise MultipleObjectsReturned(f"{meta.name}.objects.get({lookups}) matched "
                                              "more than one record")
            return found[0] if found else None

        return then(self.filter(**lookups)[:2]._records_op(), one)

    def first(self) -> _R | None:
        return _run(self._first_op())  # type: ignore[no-any-return]

    def _first_op(self) -> Any:
        if self._is_sliced():
            return then(self._records_op(), _first_of)
        ordered = self if self.state.order else self._clone(order=("pk",))
        return then(ordered[:1]._records_op(), _first_of)

    def last(self) -> _R | None:
        return _run(self._last_op())  # type: ignore[no-any-return]

    def _last_op(self) -> Any:
        if self._is_sliced():
            return then(self._records_op(), lambda page: page[-1] if page else None)
        order = self.state.order or ("pk",)
        flipped = tuple(spec[1:] if spec.startswith("-") else f"-{spec}" for spec in order)
        return then(self._clone(order=flipped)[:1]._records_op(), _first_of)

    def ids(self) -> list[uuid.UUID]:
        """The matching ids, in order (one round trip unless the scan pages)."""
        return _run(compile_query(self.state, "ids"))  # type: ignore[no-any-return]

    def iterator(self, chunk_size: int = 1000) -> Iterator[_R]:
        """The records, loaded ``chunk_size`` at a time (one round trip per chunk)."""
        return stream_plan(configure.get_connection(),
                           batches.iterator_plan(self.state, chunk_size))

    def values(self, *fields: str) -> list[dict[str, Any]]:
        return _run(self._values_op(fields))  # type: ignore[no-any-return]

    def _values_op(self, fields: Sequence[str]) -> Any:
        names = self._value_fields(fields)
        return then(self._value_rows_op(names),
                    lambda rows: [dict(zip(names, row)) for row in rows])

    def values_list(self, *fields: str, flat: bool = False) -> list[Any]:
        return _run(self._values_list_op(fields, flat))  # type: ignore[no-any-return]

    def _values_list_op(self, fields: Sequence[str], flat: bool) -> Any:
        names = self._value_fields(fields)
        if flat and len(names) != 1:
            raise InvalidQuery("values_list(flat=True) takes exactly one field")
        return then(self._value_rows_op(names), lambda rows: [row[0] for row in rows] if flat
                    else [tuple(row) for row in rows])

    def _value_fields(self, fields: Sequence[str]) -> list[str]:
        return [_field(self.model, f).name for f in fields] or list(self.model._meta.fields)

    def _value_rows_op(self, names: list[str]) -> Any:
        meta = self.model._meta

        pointers = {n: meta.fields[n] for n in names if n in meta.pointer_names}

        def rows(records: list[ActiveRecord]) -> list[list[Any]]:
            return [[_target_id(pointers[n], record._values[n]) if n in pointers
                     else record._values[n] for n in names] for record in records]

        return then(self._clone(only=tuple(names), defer=(), depth=0)._records_op(), rows)

    def delete(self) -> int:
        """Delete every matching record (in atomic batches); return how many were deleted."""
        deleted: int = run_plan(configure.get_connection(), self._delete_plan())
        return deleted

    def _delete_plan(self) -> Plan:
        if self._is_sliced():
            raise InvalidQuery("cannot delete a sliced queryset (as in Django): filter it")
        self._cache = None
        return batches.delete_plan(self.state)

    def update(self, **values: Any) -> int:
        """Set fields of every matching record on the server, literals or ``F``
        expressions (``update(n=F("n") + 1, status="done")``), with their indexes and
        unique claims: one atomic call per page of matches, each record checked against
        the filter as it is updated. Returns how many records were updated."""
        self._cache = None
        op = updates.update_op(self.state, values)
        if isinstance(op, int):
            return op
        # a filter by id (or any filter, on a cluster: calls per shard) is a chain of
        # calls: run directly, no plan to drive
        connection = configure.get_connection()
        updated: int = execute(connection, op) if isinstance(op, (Call, Gather)) else \
            run_plan(connection, op)
        return updated

    def _update_plan(self, values: dict[str, Any]) -> Plan:
        self._cache = None
        return updates.update_plan(self.state, values)

    def work(self, mode: str = "records") -> list[dict[str, int]]:
        """Evaluates the query (``mode``: 'records', 'ids' or 'count') and returns the work
        of each script call it took: candidates examined and commands run (records
        loaded not included). The bound every call keeps: examined <= 10 x budget."""
        if mode not in ("records", "ids", "count"):
            raise InvalidQuery("work() takes mode 'records', 'ids' or 'count'")
        spent: list[dict[str, int]] = []
        _run(compile_query(self.state, mode, work=spent))
        return spent

    def explain(self) -> dict[str, Any]:
        """Which candidate sets the query can start from, which one the server chose
        (the smallest) and how it orders: 'gather' (examine, then sort) or 'stream'
        (walk the order field's index)."""
        return _run(self._explain_op())  # type: ignore[no-any-return]

    def _explain_op(self) -> Any:
        if self.state.empty:
            return {"candidates": [], "chosen": "none (a none() query asks Redis nothing)",
                    "examined at most": 0, "strategy": "none", "scans": False,
                    "conditions": []}
        keys = _Keys(self.model._meta.ids_key)
        sources = _sources(self.state, keys)

        def describe(reply: list[Any]) -> dict[str, Any]:
            source_at, size, strategy = reply
            described = [describe_source(source, keys.keys) for source in sources]
            chosen = (described[source_at - 1] if source_at
                      else "scan of the id set (no usable index)")
            return {"candidates": described, "chosen": chosen, "examined at most": int(size),
                    "strategy": strategy.decode(), "scans": source_at == 0,
                    "conditions": [f"{'NOT ' if negated else ''}"
                                   + " AND ".join(f"{c.field} {c.op}" for c in conditions)
                                   for negated, conditions in self.state.groups]}

        return then(compile_query(self.state, "explain"), describe)


def _first_of(records: list[_R]) -> _R | None:
    return records[0] if records else None


def _target_id(pointer: Any, value: Any) -> Any:
    """A Pointer's value as values() gives it: the target's id (None stays None)."""
    return None if value is None else pointer.target_id(value)


def _evaluating(name: str) -> Callable[..., Any]:
    """A list method that first evaluates the queryset (its records fill the list)."""
    method = getattr(list, name)

    @functools.wraps(method)
    def evaluated(self: QuerySet[Any], *args: Any) -> Any:
        for queryset in (self, *args):
            if isinstance(queryset, QuerySet):
                queryset._fetch()
        return method(self, *args)

    return evaluated


for _name in ("__reversed__", "index", "__add__", "__mul__", "__rmul__", "copy", "__lt__",
              "__le__", "__gt__", "__ge__", "__ne__", "__iadd__", "__imul__", "__setitem__",
              "__delitem__", "append", "extend", "insert", "pop", "remove", "clear", "sort",
              "reverse"):
    setattr(QuerySet, _name, _evaluating(_name))
