"""Querysets: immutable, lazy, Django-style. Building one does no I/O; evaluating it
runs the calls that ``repocket.core.query`` compiles."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..attributes import uuid_text
from ..connections import configure
from ..core import ops as operations
from ..core.plan import Call
from ..core.query import (
    DELETE_BATCH,
    Condition,
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
from ..exec.scripts import execute
from .result import ResultSet

if TYPE_CHECKING:
    from .model import ActiveRecord


REPR_OUTPUT_SIZE = 20  # records a queryset's repr shows (Django's number)


def _run(call: Call) -> Any:
    return execute(configure.get_connection(), call)


class QuerySet(ResultSet):
    """A lazy, immutable query; a list of records once evaluated (iteration, ``len``,
    indexing, comparison). Every method that refines it returns a new QuerySet."""

    def __init__(self, model: type[ActiveRecord], state: QueryState | None = None):
        super().__init__(model)
        self.state = state or QueryState(model)
        self._cache: list[ActiveRecord] | None = None

    def _clone(self, **changes: Any) -> QuerySet:
        return QuerySet(self.model, dataclasses.replace(self.state, **changes))

    # -- refining ------------------------------------------------------------------------
    def filter(self, *, pointer_depth: int | None = None, **lookups: Any) -> QuerySet:
        return self._where(False, lookups, pointer_depth)

    def exclude(self, **lookups: Any) -> QuerySet:
        return self._where(True, lookups, None)

    def _where(self, negated: bool, lookups: dict[str, Any], depth: int | None) -> QuerySet:
        self._check_unsliced()
        if depth is not None:
            operations.check_depth(depth)
        conditions = tuple(parse_lookup(self.model, k, v) for k, v in lookups.items())
        groups = (*self.state.groups, (negated, conditions)) if conditions else self.state.groups
        return self._clone(groups=groups, depth=self.state.depth if depth is None else depth)

    def all(self) -> QuerySet:
        return self._clone()

    def order_by(self, *fields: str) -> ResultSet:
        """Order on the server; a sliced queryset (a page) is fetched and its records
        reordered in memory, as repocket 0.1's ResultSet did."""
        for spec in fields:
            parse_order(self.model, spec)
        if self._is_sliced():
            return ResultSet(self.model, self._fetch()).order_by(*fields)
        return self._clone(order=tuple(fields))

    def only(self, *fields: str) -> QuerySet:
        return self._clone(only=tuple(_field(self.model, f).name for f in fields), defer=())

    def defer(self, *fields: str) -> QuerySet:
        return self._clone(defer=self.state.defer + tuple(_field(self.model, f).name
                                                          for f in fields))

    def _is_sliced(self) -> bool:
        return bool(self.state.offset) or self.state.limit is not None

    def _check_unsliced(self) -> None:
        if self._is_sliced():
            raise InvalidQuery("cannot filter a query once it is sliced")

    # -- evaluating ------------------------------------------------------------------------
    def _fetch(self) -> list[ActiveRecord]:
        if self._cache is None:
            self._cache = _run(compile_query(self.state, "records"))
            list.clear(self)
            list.extend(self, self._cache)
        return self._cache

    def __iter__(self) -> Iterator[ActiveRecord]:
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
        reads only those (plus one, to know whether to say more remain)."""
        shown: list[Any] = list(self._cache if self._cache is not None
                                else self[:REPR_OUTPUT_SIZE + 1]._fetch())
        if len(shown) > REPR_OUTPUT_SIZE:
            shown[REPR_OUTPUT_SIZE:] = ["...(remaining elements truncated)..."]
        return f"<QuerySet {shown!r}>"

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            if (index.step not in (None, 1) or (index.start or 0) < 0
                    or (index.stop is not None and index.stop < 0)):
                raise InvalidQuery("querysets take slices [start:stop] with no step and no "
                                   "negative bound")
            start = self.state.offset + (index.start or 0)
            stop = None if index.stop is None else self.state.offset + index.stop
            if self.state.limit is not None:
                end = self.state.offset + self.state.limit
                stop = end if stop is None else min(stop, end)
            limit = None if stop is None else max(0, stop - start)
            return self._clone(offset=start, limit=limit)
        if not isinstance(index, int) or index < 0:
            raise InvalidQuery("querysets take non-negative integer indexes")
        if self._cache is not None:
            return self._cache[index]
        found = self[index:index + 1]._fetch()
        if not found:
            raise IndexError("queryset index out of range")
        return found[0]

    def count(self) -> int:  # type: ignore[override]  # list.count(x) has no meaning here
        if self._cache is not None:
            return len(self._cache)
        return int(_run(compile_query(self.state, "count")))

    def exists(self) -> bool:
        return bool(_run(compile_query(self[:1].state, "ids")))

    def get(self, **lookups: Any) -> ActiveRecord | None:
        """The one matching record, None when there is none; MultipleObjectsReturned
        when there are several. ``get(id=...)`` alone is one EVALSHA of get.lua."""
        meta = self.model._meta
        plain = not self.state.groups and self.state.only is None and not self.state.defer
        record_id = id_lookup(self.model, lookups) if plain else None
        if record_id is not None:
            return _run(operations.compile_get(self.model, record_id,  # type: ignore[no-any-return]
                                               self.state.depth))
        found = self.filter(**lookups)[:2]._fetch()
        if len(found) > 1:
            raise MultipleObjectsReturned(f"{meta.name}.objects.get({lookups}) matched more "
                                          "than one record")
        return found[0] if found else None

    def first(self) -> ActiveRecord | None:
        if self._is_sliced():
            page = self._fetch()
            return page[0] if page else None
        ordered = self if self.state.order else self._clone(order=("pk",))
        found = ordered[:1]._fetch()
        return found[0] if found else None

    def last(self) -> ActiveRecord | None:
        if self._is_sliced():
            page = self._fetch()
            return page[-1] if page else None
        order = self.state.order or ("pk",)
        flipped = tuple(spec[1:] if spec.startswith("-") else f"-{spec}" for spec in order)
        found = self._clone(order=flipped)[:1]._fetch()
        return found[0] if found else None

    def ids(self) -> list[uuid.UUID]:
        """The matching ids, in order (one round trip unless the scan pages)."""
        return _run(compile_query(self.state, "ids"))  # type: ignore[no-any-return]

    def iterator(self, chunk_size: int = 1000) -> Iterator[ActiveRecord]:
        """The records, loaded ``chunk_size`` at a time (one round trip per chunk)."""
        if chunk_size < 1:
            raise InvalidQuery("chunk_size must be positive")
        ids = self.ids()
        pk = self.model._meta.pk_name
        for start in range(0, len(ids), chunk_size):
            chunk = [uuid_text(i).encode("ascii") for i in ids[start:start + chunk_size]]
            # the chunk's records, in the query's order, with its only()/defer()
            page = dataclasses.replace(self.state, groups=((False, (
                Condition(pk, "in", tuple(chunk)),)),), offset=0, limit=None)
            yield from QuerySet(self.model, page)._fetch()

    def values(self, *fields: str) -> list[dict[str, Any]]:
        names = self._value_fields(fields)
        return [dict(zip(names, row)) for row in self._value_rows(names)]

    def values_list(self, *fields: str, flat: bool = False) -> list[Any]:
        names = self._value_fields(fields)
        if flat and len(names) != 1:
            raise InvalidQuery("values_list(flat=True) takes exactly one field")
        rows = self._value_rows(names)
        return [row[0] for row in rows] if flat else [tuple(row) for row in rows]

    def _value_fields(self, fields: Sequence[str]) -> list[str]:
        return [_field(self.model, f).name for f in fields] or list(self.model._meta.fields)

    def _value_rows(self, names: list[str]) -> list[list[Any]]:
        records = self._clone(only=tuple(names), defer=(), depth=0)._fetch()
        meta = self.model._meta
        return [[record._values[n] if n not in meta.pointer_names else record.to_dict()[n]
                 for n in names] for record in records]

    def delete(self) -> int:
        """Delete every matching record (in atomic batches); return how many were deleted."""
        if self._is_sliced():
            raise InvalidQuery("cannot delete a sliced queryset (as in Django): filter it")
        ids = self.ids()
        deleted = 0
        for start in range(0, len(ids), DELETE_BATCH):
            batch = ids[start:start + DELETE_BATCH]
            records, _keys = _run(operations.compile_delete_many(self.model, batch))
            deleted += records
        self._cache = None
        return deleted

    def explain(self) -> dict[str, Any]:
        """Which candidate sets the query can start from, which one the server chose
        (the smallest) and how it orders: 'gather' (examine, then sort) or 'stream'
        (walk the order field's index)."""
        keys = _Keys(self.model._meta.ids_key)
        sources = _sources(self.state, keys)
        source_at, size, strategy = _run(compile_query(self.state, "explain"))
        described = [describe_source(source, keys.keys) for source in sources]
        chosen = described[source_at - 1] if source_at else "scan of the id set (no usable index)"
        return {"candidates": described, "chosen": chosen, "examined at most": int(size),
                "strategy": strategy.decode(), "scans": source_at == 0,
                "conditions": [f"{'NOT ' if negated else ''}"
                               + " AND ".join(f"{c.field} {c.op}" for c in conditions)
                               for negated, conditions in self.state.groups]}


def _evaluating(name: str) -> Callable[..., Any]:
    """A list method that first evaluates the queryset (its records fill the list)."""
    method = getattr(list, name)

    @functools.wraps(method)
    def evaluated(self: QuerySet, *args: Any) -> Any:
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
