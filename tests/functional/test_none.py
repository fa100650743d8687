"""``Model.objects.none()``: a queryset matching nothing, evaluated without a round trip,
however it is refined or read (sync and async)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from repocket import ActiveRecord, attributes, configure
from tests.conftest import RoundTrips


class Crate(ActiveRecord):
    class Meta:
        namespace = "none"

    label = attributes.Unicode(index=True)
    weight = attributes.Integer(index=True)


@pytest.fixture
def crate(client: redis.Redis) -> Crate:
    return Crate.create(label="a", weight=1)


EVALUATIONS: dict[str, Any] = {
    "list": lambda qs: list(qs),
    "len": len,
    "bool": bool,
    "count": lambda qs: qs.count(),
    "exists": lambda qs: qs.exists(),
    "first": lambda qs: qs.first(),
    "last": lambda qs: qs.last(),
    "get": lambda qs: qs.get(label="a"),
    "ids": lambda qs: qs.ids(),
    "iterator": lambda qs: list(qs.iterator()),
    "values": lambda qs: qs.values(),
    "values_list": lambda qs: qs.values_list("label", flat=True),
    "delete": lambda qs: qs.delete(),
    "filtered": lambda qs: list(qs.filter(weight__gte=0).exclude(label="b")),
    "ordered": lambda qs: list(qs.order_by("-weight")),
    "sliced": lambda qs: list(qs[0:5]),
    "repr": repr,
}
EMPTY = {"count": 0, "len": 0, "bool": False, "exists": False, "first": None, "last": None,
         "get": None, "delete": 0, "repr": "<QuerySet []>"}


@pytest.mark.parametrize("name", list(EVALUATIONS))
def test_none_evaluates_empty_without_a_round_trip(
        crate: Crate, roundtrips: RoundTrips, name: str) -> None:
    roundtrips.reset()
    result = EVALUATIONS[name](Crate.objects.none())
    assert roundtrips.count == 0
    assert result == EMPTY.get(name, [])
    assert Crate.objects.get(id=crate.id) == crate  # delete() on none() deleted nothing


def test_none_of_a_filtered_queryset_and_get_by_id(crate: Crate,
                                                   roundtrips: RoundTrips) -> None:
    roundtrips.reset()
    assert Crate.objects.filter(label="a").none().get(id=crate.id) is None
    assert Crate.objects.all().none().explain()["examined at most"] == 0
    assert roundtrips.count == 0


def test_async_evaluations_of_none_make_no_round_trip(crate: Crate,
                                                      roundtrips: RoundTrips) -> None:
    async def evaluate() -> list[Any]:
        qs = Crate.objects.none()
        results = [await qs.alist(), await qs.acount(), await qs.aexists(),
                   await qs.afirst(), await qs.aget(label="a"), [c async for c in qs]]
        await configure.aclose()
        return results

    roundtrips.reset()
    assert asyncio.run(evaluate()) == [[], 0, False, None, None, []]
    assert roundtrips.count == 0  # counts the sync client's only: the hook counts both


def test_none_reports_no_script_call_to_the_hook(crate: Crate) -> None:
    seen: list[Any] = []
    configure.instrument(seen.append)

    async def evaluate() -> None:
        await Crate.objects.none().alist()
        await configure.aclose()

    list(Crate.objects.none())
    asyncio.run(evaluate())
    assert seen == []
