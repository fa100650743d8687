"""A query on a Redis Cluster: the same query.lua call once per shard, merged here. No I/O.

Each shard holds its records, their ids and their index entries (``keys.py``), so a
shard answers the query for its records alone; shards hold disjoint records, so:

- ``count``: the sum of the shards' counts (then the query's slice applied to it);
- unordered rows: any rows will do, each shard asked for at most ``offset + limit``;
- ordered rows: each shard asked for its first ``offset + limit`` records in the query's
  order, merged in that order (``merge.merge_rows``), then sliced;
- a query pinned to ids (``id=``, ``id__in=``) asks only the shards holding them.

The shards' calls form one ``plan.Gather``: the cluster executor sends each node's calls in
one pipeline, the nodes in parallel.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..attributes import uuid_text
from . import merge
from .deref import follow
from .plan import gather

if TYPE_CHECKING:
    from ..api.model import ActiveRecord
    from .query import QueryState, Work


def compile_on_shards(state: QueryState, mode: str, work: Work | None) -> Any:
    """The query's result from one query.lua call per shard concerned (see the module)."""
    from .query import compile_query, parse_order

    prefixes = shards_concerned(state)
    if mode == "explain":
        calls = [compile_query(state, "explain", work=work, prefix=p) for p in prefixes]
        return gather(calls, _explained)
    # Pointers: each shard loads its records alone; their targets follow, level by level
    depth = state.depth if state.model._meta.pointer_names and mode == "records" else 0
    asked = state.evolve(depth=0) if depth else state
    if mode == "count":
        whole = state.evolve(offset=0, limit=None)
        counts = [compile_query(whole, "count", work=work, prefix=p) for p in prefixes]
        return gather(counts, lambda parts: _sliced_count(state, merge.merge_counts(parts)))
    window = None if state.limit is None else state.offset + state.limit
    per_shard = asked.evolve(offset=0, limit=window)
    order = [parse_order(state.model, spec) for spec in state.order]
    if not order:
        calls = [compile_query(per_shard, mode, work=work, prefix=p) for p in prefixes]
        return gather(calls, lambda parts: follow(
            state.model, _concatenated(state, mode, parts), depth))
    # ordered: the shards' records (with their order fields loaded) merged in order
    names = [attribute.name for attribute, _ in order]
    per_shard = _loading(per_shard, names)
    calls = [compile_query(per_shard, "records", work=work, prefix=p) for p in prefixes]
    return gather(calls, lambda parts: follow(
        state.model, _merged(state, mode, order, parts), depth))


def shards_concerned(state: QueryState) -> list[str]:
    """The prefixes of the shards that may hold a match: those of the ids when the query
    is pinned to ids (one group, not negated, with an ``id``/``id__in`` condition), else
    every shard of the model."""
    meta = state.model._meta
    pinned = _pinned_ids(state)
    if pinned is None:
        return meta.shard_prefixes()
    return list(dict.fromkeys(meta.prefix_of(text) for text in pinned))


def _pinned_ids(state: QueryState) -> list[str] | None:
    pk = state.model._meta.pk_name
    if len(state.groups) != 1 or state.groups[0][0]:
        return None
    for condition in state.groups[0][1]:
        if condition.field == pk and condition.op in ("eq", "in"):
            return [value.decode("ascii") if isinstance(value, bytes) else str(value)
                    for value in condition.values]
    return None


def _explained(replies: Sequence[list[Any]]) -> list[Any]:
    """One explain reply for all shards: the source most shards chose, the candidates they
    examine at most (summed), the first shard's strategy."""
    chosen = Counter(int(reply[0]) for reply in replies).most_common(1)[0][0]
    return [chosen, sum(int(reply[1]) for reply in replies), replies[0][2]]


def _sliced_count(state: QueryState, total: int) -> int:
    left = max(total - state.offset, 0)
    return left if state.limit is None else min(left, state.limit)


def _loading(state: QueryState, names: list[str]) -> QueryState:
    """``state`` loading the fields the merge orders by (only()/defer() may leave them out)."""
    only = state.only if state.only is None else tuple(dict.fromkeys((*state.only, *names)))
    return state.evolve(only=only, defer=tuple(f for f in state.defer if f not in names))


def _concatenated(state: QueryState, mode: str, parts: Sequence[list[Any]]) -> list[Any]:
    """Unordered rows: the shards' rows one shard after the other; for a query pinned to
    ids, in the order of the ids given (as one server answers it)."""
    rows = [row for part in parts for row in part]
    pinned = _pinned_ids(state)
    if pinned is not None:
        position = {text: i for i, text in enumerate(dict.fromkeys(pinned))}
        rows.sort(key=lambda row: position.get(_id_text(row, mode), len(position)))
    stop = None if state.limit is None else state.offset + state.limit
    return rows[state.offset:stop]


def _id_text(row: Any, mode: str) -> str:
    return uuid_text(row if mode == "ids" else row.pk)


def _merged(state: QueryState, mode: str, order: list[tuple[Any, bool]],
            parts: Sequence[list[ActiveRecord]]) -> list[Any]:
    key = record_order(order)
    rows = [[(uuid_text(record.pk), record) for record in part] for part in parts]
    selected = merge.merge_rows(rows, lambda row: key(row[1]), offset=state.offset,
                                limit=state.limit, presorted=True)
    if mode == "ids":
        return [record.pk for _, record in selected]
    return [record for _, record in selected]


def record_order(order: list[tuple[Any, bool]]) -> Callable[[ActiveRecord], Any]:
    """The sort key of records in a query's order, as query.lua orders rows (and as
    ``query.row_key`` does): typed values, None first, each field in its direction,
    ties by id in the first field's direction."""
    def typed(attribute: Any, record: ActiveRecord) -> Any:
        value = record._values.get(attribute.name)
        return None if value is None else attribute.sort_key(value)

    def compare(a: ActiveRecord, b: ActiveRecord) -> int:
        for attribute, descending in order:
            x, y = typed(attribute, a), typed(attribute, b)
            if x != y:
                smaller = y is not None and (x is None or x < y)
                return (1 if smaller else -1) if descending else (-1 if smaller else 1)
        first, second = uuid_text(a.pk), uuid_text(b.pk)
        if first == second:
            return 0
        first_descending = bool(order) and order[0][1]
        return (1 if first < second else -1) if first_descending else \
            (-1 if first < second else 1)

    return functools.cmp_to_key(compare)
