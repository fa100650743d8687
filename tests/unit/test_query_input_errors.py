"""Whatever a caller passes to filter/exclude/order_by/slicing, building the query raises
a typed ``RepocketError`` or nothing: never a builtin AttributeError, TypeError or
OverflowError (and no I/O happens while building)."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repocket import ActiveRecord, attributes, configure, errors
from tests.functional.hypothesis_support import profile

PROFILE = profile("query-input", ci={"max_examples": 300}, soak={"max_examples": 10_000})


class QTarget(ActiveRecord):
    class Meta:
        namespace = "unit.qinput"

    name = attributes.Unicode(index=True)


class QAll(ActiveRecord):
    class Meta:
        namespace = "unit.qinput"

    name = attributes.Unicode(index=True)
    count = attributes.Integer()
    ratio = attributes.Float(index=True)
    price = attributes.Decimal()
    at = attributes.DateTime(null=True)
    day = attributes.Date(null=True)
    flag = attributes.Boolean()
    data = attributes.JSON()
    ref = attributes.UUID()
    target = attributes.Pointer(QTarget, null=True)
    log = attributes.ByteStream()


@pytest.fixture(autouse=True)
def no_io(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse() -> None:
        raise AssertionError("building a query talked to Redis")

    monkeypatch.setattr(configure, "get_connection", refuse)
    yield


NAMES = st.sampled_from(["name", "count", "ratio", "price", "at", "day", "flag", "data", "ref",
                         "target", "log", "id", "pk", "bogus", "", "target__id", "target__name"])
LOOKUPS = st.sampled_from(["", "__in", "__range", "__lt", "__gte", "__startswith", "__isnull",
                           "__bogus", "__in__in", "__"])
VALUES = (st.none() | st.booleans() | st.integers() | st.sampled_from([2**64, 10**5000])
          | st.floats() | st.decimals() | st.text(max_size=5) | st.binary(max_size=5)
          | st.uuids() | st.dates() | st.datetimes()
          | st.lists(st.integers() | st.text(max_size=3), max_size=3).map(tuple)
          | st.sampled_from([[], {}, object(), QTarget(name="t"), QAll(), [[]] * 3, "\ud800"]))


@PROFILE
@given(name=NAMES, lookup=LOOKUPS, value=VALUES, negate=st.booleans())
def test_filter_and_exclude_raise_only_typed_errors(name: str, lookup: str, value: Any,
                                                    negate: bool) -> None:
    method = QAll.objects.exclude if negate else QAll.objects.filter
    with contextlib.suppress(errors.RepocketError):  # anything else fails the test
        method(**{name + lookup: value})


@pytest.mark.parametrize("spec", [5, None, b"name", ["name"], "", "-", "bogus",
                                  "data", "log"])
def test_order_by_a_non_field_is_invalid_query(spec: Any) -> None:
    with pytest.raises((errors.InvalidQuery, errors.UnknownField)):
        QAll.objects.order_by(spec)


@pytest.mark.parametrize("index", [
    -1, 2**200, 2**53 + 1, True, "x", b"x", 1.0, None, decimal.Decimal(1),
    slice("x", None), slice(None, "y"), slice(2**200, None), slice(0, 2**64), slice(-1, 5),
    slice(0, 5, 2), slice(1.5, None), slice(dt.date.today(), None), slice(uuid.uuid4(), None),
])
def test_bad_indexes_and_slices_are_invalid_query(index: Any) -> None:
    with pytest.raises(errors.InvalidQuery):
        QAll.objects.all()[index]


@pytest.mark.parametrize("depth", [-1, 17, pytest.param(10**5000, id="10e5000"), "1",
                                   1.0, True])
def test_a_bad_pointer_depth_is_invalid_query(depth: Any) -> None:
    with pytest.raises(errors.InvalidQuery) as raised:
        QAll.objects.filter(pointer_depth=depth)
    assert len(str(raised.value)) < 200
