"""Combining partial query results: pages of one scan, or the replies of several shards.

A row is ``(id, order values...)`` as a query script returns it. Each input
sequence is put in order (a shard's reply already is), then they are merged,
as a Redis Cluster executor will merge the per-shard replies of one query.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Row = Sequence[Any]
SortKey = Callable[[Row], Any]


def merge_rows(parts: Iterable[Sequence[Row]], key: SortKey | None, reverse: bool = False,
               offset: int = 0, limit: int | None = None, presorted: bool = False) -> list[Row]:
    """The rows of all parts in order, without duplicate ids, sliced ``[offset:offset+limit]``.

    ``key`` orders rows (None keeps each part's order and concatenates); parts
    are sorted first unless ``presorted``.
    """
    if key is None:
        merged: Iterable[Row] = itertools.chain.from_iterable(parts)
    else:
        ordered = [part if presorted else sorted(part, key=key, reverse=reverse) for part in parts]
        merged = heapq.merge(*ordered, key=key, reverse=reverse)
    stop = None if limit is None else offset + limit
    return list(itertools.islice(_first_of_each_id(merged), offset, stop))


def _first_of_each_id(rows: Iterable[Row]) -> Iterable[Row]:
    seen: set[Any] = set()
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            yield row


def merge_counts(counts: Iterable[int]) -> int:
    """The count of a query from the counts of its parts (shards hold disjoint records)."""
    return sum(counts)
