"""Boolean, Date and Enum against the real server, in both codecs: round trips, lookups
with and without an index (each against Python's evaluation), ordering, unique values,
and a clean check()."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from repocket import ActiveRecord, attributes, errors
from tests.conftest import snapshot


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Level(enum.IntEnum):
    NEGATIVE = -5
    LOW = 2
    HIGH = 10  # orders after LOW as a number, before it as text
    HUGE = 2**64


class Task(ActiveRecord):
    class Meta:
        namespace = "tests.types"

    done = attributes.Boolean(index=True)
    done_plain = attributes.Boolean(null=True)
    due = attributes.Date(index=True, null=True)
    due_plain = attributes.Date(null=True)
    color = attributes.Enum(Color, index=True, null=True)
    color_plain = attributes.Enum(Color, null=True)
    level = attributes.Enum(Level, index=True, null=True)
    level_plain = attributes.Enum(Level, null=True)
    ticket = attributes.Enum(Level, unique=True, null=True)


class CompactTask(Task):
    class Meta:
        namespace = "tests.types"
        codec = "compact"


DAYS = [dt.date(2026, 1, 2), dt.date(2025, 12, 31), dt.date(1999, 1, 1), dt.date(2026, 1, 30),
        None, dt.date(33, 2, 3)]
ROWS = [
    {"done": i % 2 == 0, "done_plain": [True, False, None][i % 3], "due": DAYS[i % 6],
     "due_plain": DAYS[(i + 1) % 6], "color": [*Color, None][i % 4],
     "color_plain": [*Color, None][(i + 1) % 4], "level": [*Level, None][i % 5],
     "level_plain": [*Level, None][(i + 2) % 5]}
    for i in range(24)
]


@pytest.fixture(params=[Task, CompactTask], ids=["envelope", "compact"])
def tasks(request: pytest.FixtureRequest, client: redis.Redis) -> tuple[type[Task], list[Task]]:
    model: type[Task] = request.param
    return model, [model.create(**row) for row in ROWS]


def test_values_round_trip(tasks: tuple[type[Task], list[Task]]) -> None:
    model, records = tasks
    for record, row in zip(records, ROWS, strict=True):
        loaded = model.objects.get(id=record.id)
        assert loaded is not None
        for name, value in row.items():
            got = getattr(loaded, name)
            assert got == value and type(got) is type(value), (name, got, value)


def _holds(op: str, value: Any, probe: Any) -> bool:
    if value is None:
        return False
    key: Callable[[Any], Any] = (lambda v: v.value) if isinstance(value, enum.Enum) else (
        lambda v: v)
    a, b = key(value), key(probe)
    return {"": a == b, "__lt": a < b, "__lte": a <= b, "__gt": a > b, "__gte": a >= b}[op]


PROBES: dict[str, list[Any]] = {
    "done": [True, False], "done_plain": [True, False],
    "due": [dt.date(2026, 1, 2), dt.date(2000, 1, 1), dt.date(34, 1, 1)],
    "due_plain": [dt.date(2026, 1, 2), dt.date(2000, 1, 1)],
    "level": list(Level), "level_plain": [Level.LOW, Level.HIGH],
}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_comparisons_match_python(tasks: tuple[type[Task], list[Task]], name: str) -> None:
    model, records = tasks
    for probe in PROBES[name]:
        for op in ("", "__lt", "__lte", "__gt", "__gte"):
            expected = {r.id for r in records if _holds(op, getattr(r, name), probe)}
            got = set(model.objects.filter(**{name + op: probe}).ids())
            assert got == expected, (name + op, probe)
            assert model.objects.filter(**{name + op: probe}).count() == len(expected)


@pytest.mark.parametrize("name", ["color", "color_plain", "level", "level_plain"])
def test_enum_equality_in_and_isnull(tasks: tuple[type[Task], list[Task]], name: str) -> None:
    model, records = tasks
    members = list(Color) if name.startswith("color") else list(Level)
    for member in members:
        expected = {r.id for r in records if getattr(r, name) is member}
        assert set(model.objects.filter(**{name: member}).ids()) == expected
        assert set(model.objects.filter(**{name: member.value}).ids()) == expected
        assert set(model.objects.exclude(**{name: member}).ids()) == {
            r.id for r in records} - expected
    wanted = members[:2]
    assert set(model.objects.filter(**{f"{name}__in": wanted}).ids()) == {
        r.id for r in records if getattr(r, name) in wanted}
    assert set(model.objects.filter(**{f"{name}__isnull": True}).ids()) == {
        r.id for r in records if getattr(r, name) is None}


def test_date_startswith_is_a_month(tasks: tuple[type[Task], list[Task]]) -> None:
    model, records = tasks
    january = {r.id for r in records if r.due and (r.due.year, r.due.month) == (2026, 1)}
    assert set(model.objects.filter(due__startswith="2026-01").ids()) == january
    assert set(model.objects.filter(due__startswith="2026-01-").ids()) == january
    in_2026 = {r.id for r in records if r.due and r.due.year == 2026}
    assert set(model.objects.filter(due__startswith="2026").ids()) == in_2026
    day = dt.date(2026, 1, 2)
    assert set(model.objects.filter(due__startswith=day).ids()) == {
        r.id for r in records if r.due == day}
    for bad in ("26-01", "2026-01-02T00", "x", 2026):
        with pytest.raises(errors.ValidationError):
            model.objects.filter(due__startswith=bad)


def _sorted_ids(records: list[Task], name: str, descending: bool) -> list[uuid.UUID]:
    def key(record: Task) -> Any:
        value = getattr(record, name)
        if value is None:
            return (0, 0)
        return (1, value.value if isinstance(value, enum.Enum) else value)

    ordered = sorted(records, key=lambda r: (key(r), r.id), reverse=descending)
    return [r.id for r in ordered]


@pytest.mark.parametrize("name", ["done", "due", "due_plain", "color", "level", "level_plain"])
def test_ordering_matches_python(tasks: tuple[type[Task], list[Task]], name: str) -> None:
    model, records = tasks
    for descending in (False, True):
        got = model.objects.order_by(("-" if descending else "") + name, "-id" if descending
                                     else "id").ids()
        assert got == _sorted_ids(records, name, descending), (name, descending)


def test_unique_enum_values(client: redis.Redis) -> None:
    Task.create(ticket=Level.LOW)
    Task.create()  # None claims nothing
    Task.create()
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:
        Task.create(ticket=2)
    assert raised.value.field == "ticket"
    assert snapshot(client) == before


def test_check_finds_nothing_wrong(tasks: tuple[type[Task], list[Task]]) -> None:
    model, _records = tasks
    report = model.objects.check()
    assert report.ok, report.problems


def test_stored_junk_is_a_stored_data_error(client: redis.Redis) -> None:
    record = CompactTask.create(color=Color.RED)
    client.hset(record._key(), "color", "purple")
    with pytest.raises(errors.StoredDataError) as raised:
        CompactTask.objects.get(id=record.id)
    assert (raised.value.model, raised.value.field) == ("CompactTask", "color")
