"""QuerySet.update() and F (issue 12 item 1): server-side updates, one atomic script call
per page of matches, indexes and unique claims kept, exact Integer and Decimal arithmetic,
stored bytes and index scores identical to a Python save of the same values."""

from __future__ import annotations

import decimal
import threading
from typing import Any

import hypothesis.strategies as st
import pytest
import redis
import redis.asyncio
from hypothesis import given

from repocket import ActiveRecord, F, attributes, configure, errors
from repocket.core import keys
from repocket.core import update as updates
from repocket.exec.sync import execute
from tests.conftest import RoundTrips, snapshot

from .hypothesis_support import profile

D = decimal.Decimal


class Owner(ActiveRecord):
    class Meta:
        namespace = "tests.update"

    name = attributes.Unicode()


class Task(ActiveRecord):
    class Meta:
        namespace = "tests.update"
        unique_together = (("queue", "rank"),)

    queue = attributes.Unicode(index=True)
    status = attributes.Unicode(index=True)
    code = attributes.Unicode(unique=True, null=True)
    n = attributes.Integer(index=True)
    rank = attributes.Integer(null=True)
    price = attributes.Decimal(index=True)
    ratio = attributes.Float(index=True)
    maybe = attributes.Integer(null=True)
    owner = attributes.Pointer(Owner, null=True, index=True)
    log = attributes.ByteStream()


class CompactTask(Task):
    class Meta:
        namespace = "tests.update"
        codec = "compact"
        unique_together = (("queue", "rank"),)


def make(model: type[Task] = Task, count: int = 3, **values: Any) -> list[Task]:
    records = [model(queue="q", status="new", n=i, rank=i, price=D("1.10"), ratio=0.1,
                     **values) for i in range(count)]
    model.objects.bulk_create(records)
    return records


# -- literal assignments ------------------------------------------------------------------------
def test_update_sets_literals_and_keeps_indexes(client: redis.Redis) -> None:
    records = make(count=4)
    assert Task.objects.filter(n__gte=2).update(status="done", price=D("2.50")) == 2
    assert sorted(t.n for t in Task.objects.filter(status="done")) == [2, 3]
    assert sorted(t.n for t in Task.objects.filter(status="new")) == [0, 1]
    assert Task.objects.filter(price=D("2.5")).count() == 2
    records[3].refresh_from_db()
    assert (records[3].status, records[3].price) == ("done", D("2.50"))
    assert Task.objects.check().ok


def test_manager_and_all_update_every_record(client: redis.Redis) -> None:
    make(count=3)
    assert Task.objects.update(status="a") == 3
    assert Task.objects.all().update(status="b") == 3
    assert Task.objects.filter(status="b").count() == 3
    assert Task.objects.exclude(n=1).update(status="c") == 2
    assert Task.objects.filter(status="c").count() == 2
    assert Task.objects.none().update(status="d") == 0
    assert Task.objects.filter(status="nothing").update(status="d") == 0


def test_none_clears_a_field_and_its_index_entry(client: redis.Redis) -> None:
    owner = Owner.create(name="o")
    make(count=2, owner=owner)
    assert Task.objects.filter(owner=owner).update(owner=None, code=None) == 2
    assert Task.objects.filter(owner__isnull=True).count() == 2
    assert Task.objects.filter(owner=owner).count() == 0
    assert Task.objects.check().ok


def test_pointer_literals(client: redis.Redis) -> None:
    owner = Owner.create(name="o")
    make(count=2)
    assert Task.objects.update(owner=owner) == 2
    assert Task.objects.filter(owner=owner).count() == 2
    assert Task.objects.update(owner=str(owner.pk)) == 2
    assert Task.objects.first().owner.name == "o"  # type: ignore[union-attr]


# -- round trips and pages ----------------------------------------------------------------------
def test_one_round_trip_when_the_matches_fit_one_page(client: redis.Redis,
                                                      roundtrips: RoundTrips) -> None:
    make(count=20)
    Task.objects.filter(n=0).update(status="warm")  # the script is loaded
    roundtrips.reset()
    assert Task.objects.filter(queue="q").update(n=F("n") + 1, status="done") == 20
    assert roundtrips.count == 1


def test_a_round_trip_per_page_when_the_matches_do_not_fit(
        client: redis.Redis, roundtrips: RoundTrips, monkeypatch: pytest.MonkeyPatch) -> None:
    make(count=25)
    Task.objects.filter(n=0).update(status="warm")
    monkeypatch.setattr(updates, "PAGE", 10)
    assert updates.page_size(Task) == 10
    roundtrips.reset()
    assert Task.objects.filter(queue="q").update(n=F("n") + 100) == 25
    # the first call finds more candidates than a page (writes nothing), the ids are
    # listed (one query call), then one call per page of 10
    assert roundtrips.count == 1 + 1 + 3
    assert sorted(t.n for t in Task.objects.all()) == list(range(100, 125))
    assert Task.objects.filter(n__gte=100).count() == 25
    assert Task.objects.check().ok


def test_a_call_takes_no_more_records_once_its_arithmetic_budget_is_spent(
        client: redis.Redis, roundtrips: RoundTrips, monkeypatch: pytest.MonkeyPatch) -> None:
    """Numbers of many digits: each call takes records until the arithmetic has spent
    ARITH_BUDGET steps, and hands the rest back; every record is updated once."""
    records = make(count=5)
    for i, record in enumerate(records):
        record.n = 10**40 + i
        record.save()
    Task.objects.filter(n=0).update(status="warm")
    monkeypatch.setattr(updates, "ARITH_BUDGET", 1)  # one record per call
    roundtrips.reset()
    assert Task.objects.filter(queue="q").update(n=F("n") * 3 + 1) == 5
    assert roundtrips.count == 5
    assert sorted(t.n for t in Task.objects.all()) == [(10**40 + i) * 3 + 1 for i in range(5)]
    monkeypatch.setattr(updates, "PAGE", 2)  # with pages of listed ids too
    assert Task.objects.filter(queue="q").update(n=F("n") - 1) == 5
    assert sorted(t.n for t in Task.objects.all()) == [(10**40 + i) * 3 for i in range(5)]
    assert Task.objects.check().ok


def test_page_size_keeps_a_call_within_the_write_budget() -> None:
    per_record = 4 + 3 * len(Task._meta.model_keys)
    assert updates.page_size(Task) * per_record <= updates.WRITE_BUDGET


def test_a_record_changed_after_listing_is_updated_only_if_it_still_matches(
        client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    records = make(count=6)
    monkeypatch.setattr(updates, "PAGE", 2)
    queryset = Task.objects.filter(status="new")
    plan = updates.update_plan(queryset.state, {"n": F("n") + 10})
    connection = configure.get_connection()
    step = next(plan)
    step = plan.send(execute(connection, step))  # too many candidates: list the ids
    ids = execute(connection, step)
    assert len(ids) == 6
    # between listing and updating, another client moves one record out of the filter
    # and deletes another
    records[0].status = "taken"
    records[0].save()
    records[1].delete()
    total = None
    try:
        step = plan.send(ids)
        while True:
            step = plan.send(execute(connection, step))
    except StopIteration as done:
        total = done.value
    assert total == 4
    records[0].refresh_from_db()
    assert records[0].n == 0  # no longer matched: untouched
    assert sorted(t.n for t in Task.objects.filter(status="new")) == [12, 13, 14, 15]


def test_eight_threads_of_increments_lose_nothing(client: redis.Redis) -> None:
    record = Task.create(queue="q", status="new", n=0, price=D(0), ratio=0.0)
    errors_seen: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(100):
                Task.objects.filter(id=record.pk).update(n=F("n") + 1)
        except BaseException as exc:  # reported by the assertion below
            errors_seen.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors_seen == []
    record.refresh_from_db()
    assert record.n == 800
    assert [t.pk for t in Task.objects.filter(n=800)] == [record.pk]
    assert Task.objects.filter(n__lt=800).count() == 0
    assert Task.objects.check().ok


# -- unique constraints -------------------------------------------------------------------------
def test_a_unique_value_given_to_two_records_writes_nothing(client: redis.Redis) -> None:
    make(count=3)
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:
        Task.objects.filter(n__lte=1).update(code="same", status="x")
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Task", "code", "same")
    assert snapshot(client) == before


def test_a_unique_value_held_by_another_record_writes_nothing(client: redis.Redis) -> None:
    records = make(count=3)
    records[2].code = "mine"
    records[2].save()
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:
        Task.objects.filter(n=0).update(code="mine")
    assert raised.value.owner == str(records[2].pk)
    assert snapshot(client) == before
    # unique_together: (q, 1) is held by a record the update does not move
    with pytest.raises(errors.UniqueViolation) as raised:
        Task.objects.filter(n=0).update(rank=F("rank") + 1)
    assert raised.value.field == "queue,rank"
    assert snapshot(client) == before


def test_claims_are_checked_as_they_stand_after_the_whole_page(client: redis.Redis) -> None:
    """Ranks 0, 1, 2 all shift by one: each new claim is given up by the record before."""
    make(count=3)
    assert Task.objects.filter(queue="q").update(rank=F("rank") + 1) == 3
    assert sorted(t.rank for t in Task.objects.all()) == [1, 2, 3]  # type: ignore[type-var]
    assert Task.objects.update(code=None) == 3
    assert Task.objects.check().ok


# -- refused before anything is written ----------------------------------------------------------
@pytest.mark.parametrize("values, error, field", [
    ({"nope": 1}, errors.UnknownField, "nope"),
    ({"n": "x"}, errors.ValidationError, "n"),
    ({"n": 1.5}, errors.ValidationError, "n"),
    ({"status": F("status") + 1}, errors.InvalidQuery, "status"),
    ({"n": F("missing") + 1}, errors.UnknownField, "missing"),
    ({"n": F("price") + 1}, errors.InvalidQuery, "n"),
    ({"n": F("n") + 1.5}, errors.InvalidQuery, "n"),
    ({"n": F("n") + "1"}, errors.InvalidQuery, "n"),
    ({"n": F("n") / 0}, errors.ValidationError, "n"),
    ({"price": F("price") / 2}, errors.InvalidQuery, "price"),
    ({"ratio": F("ratio") // 2}, errors.InvalidQuery, "ratio"),
    ({"id": "0f0f0f0f-0000-1000-8000-000000000000"}, errors.ValidationError, "id"),
    ({"pk": "0f0f0f0f-0000-1000-8000-000000000000"}, errors.ValidationError, "id"),
    ({"log": b"x"}, errors.ValidationError, "log"),
    ({"queue": None}, errors.ValidationError, "queue"),
])
def test_bad_updates_are_refused_before_any_write(client: redis.Redis, values: dict[str, Any],
                                                  error: type[Exception], field: str) -> None:
    make(count=2)
    before = snapshot(client)
    with pytest.raises(error) as raised:
        Task.objects.filter(queue="q").update(**values)
    assert getattr(raised.value, "model", None) == "Task"
    assert getattr(raised.value, "field", None) == field
    assert snapshot(client) == before


def test_an_update_with_nothing_to_set_is_refused(client: redis.Redis) -> None:
    with pytest.raises(errors.InvalidQuery):
        Task.objects.update()


def test_a_sliced_queryset_cannot_be_updated(client: redis.Redis) -> None:
    make(count=2)
    with pytest.raises(errors.InvalidQuery):
        Task.objects.all()[:1].update(status="x")


def test_a_pointer_to_a_missing_or_unsaved_target_is_refused(client: redis.Redis) -> None:
    make(count=2)
    before = snapshot(client)
    with pytest.raises(errors.PointerTargetMissing) as missing:
        Task.objects.update(owner="0f0f0f0f-0000-1000-8000-000000000000")
    assert (missing.value.model, missing.value.field) == ("Task", "owner")
    with pytest.raises(errors.UnsavedPointer) as unsaved:
        Task.objects.update(owner=Owner(name="never saved"))
    assert (unsaved.value.model, unsaved.value.field) == ("Task", "owner")
    assert snapshot(client) == before


def test_a_division_by_a_stored_zero_writes_nothing(client: redis.Redis) -> None:
    records = make(count=3)  # n is 0, 1, 2: the first record divides by zero
    before = snapshot(client)
    with pytest.raises(errors.ValidationError) as raised:
        Task.objects.update(rank=F("rank") / F("n"))
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Task", "rank", str(records[0].pk))
    assert "division by zero" in str(raised.value)
    assert snapshot(client) == before


def test_an_integer_past_pythons_digit_limit_is_refused(client: redis.Redis) -> None:
    make(count=1)
    Task.objects.update(n=10 ** (updates.MAX_DIGITS - 1))
    before = snapshot(client)
    with pytest.raises(errors.ValidationError) as raised:
        Task.objects.update(n=F("n") * 10)
    assert "too many digits" in str(raised.value)
    assert snapshot(client) == before


# -- exact values: what a Python save of the same value stores ----------------------------------
def _stored(client: redis.Redis, record: ActiveRecord, field: str) -> tuple[Any, Any]:
    """The stored bytes of a field and its index score (None: no score index)."""
    meta = type(record)._meta
    raw = client.hget(record._key(), field)
    score = None
    if field in meta.indexed:
        score = client.zscore(f"{meta.prefix}:idx:{field}", str(record.pk))
    return raw, score


CASES = [
    ("n", 2**64 + 1, F("n") * (2**70) - 3, lambda v: v * 2**70 - 3),
    ("n", -(10**40) - 7, F("n") // 3, lambda v: v // 3),
    ("n", 10**30 + 1, F("n") // -(10**15), lambda v: v // -(10**15)),
    ("n", 2**53 + 1, F("n") + 2, lambda v: v + 2),
    ("n", 5, F("n") * F("n") - F("n"), lambda v: v * v - v),
    ("n", 0, F("n") - 9007199254740993, lambda v: v - 9007199254740993),
    ("price", D("1.10"), F("price") + D("2.205"), lambda v: v + D("2.205")),
    ("price", D("-0.00"), F("price") * 5, lambda v: v * 5),
    ("price", D("-1"), F("price") + 1, lambda v: v + 1),
    ("price", D("1E+3"), F("price") + 1, lambda v: v + 1),
    ("price", D("1E+3"), F("price") * D("2.0"), lambda v: v * D("2.0")),
    ("price", D("0.1"), F("price") * D("0.1") * D("0.001"), lambda v: v * D("0.1") * D("0.001")),
    ("price", D("123456789012345678901234567890.123456789"), F("price") * F("price"),
     lambda v: v * v),
    ("price", D("9007199254740993.5"), F("price") - D("0.5"), lambda v: v - D("0.5")),
    ("price", D("1.5"), F("price") + 0.25, lambda v: v + D("0.25")),
    ("price", D("7"), F("price") + F("n"), lambda v: v + 3),
    ("ratio", 0.1, F("ratio") + 0.2, lambda v: v + 0.2),
    ("ratio", 1e16, F("ratio") * 10, lambda v: v * 10),
    ("ratio", 1e-5, F("ratio") / 3, lambda v: v / 3),
    ("ratio", 2.0, F("ratio") - 2.0, lambda v: v - 2.0),
    ("ratio", -0.0, F("ratio") * 1.0, lambda v: v * 1.0),
    ("ratio", 1e308, F("ratio") * 10, lambda v: v * 10),
    ("ratio", 123456.789, F("ratio") + F("n"), lambda v: v + 3),
    ("ratio", 0.5, F("n"), lambda v: 3.0),  # an Integer read into a Float
    ("price", D("0.5"), F("n"), lambda v: D(3)),
    ("price", D("0.5"), F("price"), lambda v: v),
    ("n", 1, F("n"), lambda v: v),
]


@pytest.mark.parametrize("model", [Task, CompactTask], ids=["envelope", "compact"])
@pytest.mark.parametrize("field, start, expression, python", CASES)
def test_arithmetic_stores_what_a_python_save_stores(
        client: redis.Redis, model: type[Task], field: str, start: Any, expression: Any,
        python: Any) -> None:
    values = {"n": 3, "price": D(0), "ratio": 0.0, field: start}
    updated = model.create(queue="u", status="s", **values)
    saved = model.create(queue="s", status="s", **values)
    with decimal.localcontext(decimal.Context(prec=1000)):
        expected = python(start)
    assert model.objects.filter(queue="u").update(**{field: expression}) == 1
    setattr(saved, field, expected)
    saved.save()
    assert _stored(client, updated, field) == _stored(client, saved, field)
    updated.refresh_from_db()
    assert repr(getattr(updated, field)) == repr(expected)
    assert model.objects.check().ok


FUZZ = profile("repocket-update", ci={"max_examples": 60}, soak={"max_examples": 10_000})
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a / b, "//": lambda a, b: a // b}
BIG_INTS = st.integers(-(10**60), 10**60) | st.integers(-(2**63), 2**63)
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 40 and len(d.as_tuple().digits) < 60)
FLOATS = st.floats(allow_nan=False)
NUMERIC = st.one_of(
    st.tuples(st.just("n"), BIG_INTS, st.sampled_from(["+", "-", "*", "//"]), BIG_INTS),
    st.tuples(st.just("price"), DECIMALS, st.sampled_from(["+", "-", "*"]), DECIMALS | BIG_INTS),
    st.tuples(st.just("ratio"), FLOATS, st.sampled_from(["+", "-", "*", "/"]),
              FLOATS | st.integers(-(2**60), 2**60)))


@FUZZ
@given(case=NUMERIC, compact=st.booleans())
def test_fuzz_arithmetic_matches_python_byte_for_byte(client: redis.Redis,
                                                      case: tuple[str, Any, str, Any],
                                                      compact: bool) -> None:
    """Random operands of every numeric kind: the update stores what Python computes and
    saves (or both refuse: a division by zero, a NaN the field does not allow)."""
    field, start, op, operand = case
    model = CompactTask if compact else Task
    values = {"n": 3, "price": D(0), "ratio": 0.0, field: start}
    model.objects.delete()
    updated = model.create(queue="u", status="s", **values)
    try:
        with decimal.localcontext(decimal.Context(prec=1000)):
            expected = _OPS[op](D(start) if field == "price" else start,
                                D(operand) if field == "price" else operand)
        if isinstance(expected, float) and expected != expected:
            raise ValueError("NaN")
    except (ZeroDivisionError, ValueError, OverflowError):
        before = snapshot(client)
        with pytest.raises(errors.ValidationError):
            model.objects.filter(queue="u").update(**{field: _OPS[op](F(field), operand)})
        assert snapshot(client) == before
        return
    assert model.objects.filter(queue="u").update(**{field: _OPS[op](F(field), operand)}) == 1
    saved = model.create(queue="s", status="s", **{**values, field: expected})
    assert _stored(client, updated, field) == _stored(client, saved, field)


def test_none_in_an_expression_gives_none(client: redis.Redis) -> None:
    """As SQL's NULL (and Django's F): arithmetic on a None gives None."""
    record = make(count=1)[0]
    assert Task.objects.update(maybe=F("maybe") + 1) == 1
    record.refresh_from_db()
    assert record.maybe is None
    Task.objects.update(maybe=4)
    Task.objects.update(maybe=F("maybe") * 2 + F("n"))
    record.refresh_from_db()
    assert record.maybe == 8


def test_none_computed_for_a_field_that_cannot_be_none_writes_nothing(
        client: redis.Redis) -> None:
    make(count=2)
    before = snapshot(client)
    with pytest.raises(errors.ValidationError) as raised:
        Task.objects.update(n=F("maybe") + 1)
    assert (raised.value.model, raised.value.field) == ("Task", "n")
    assert "cannot be None" in str(raised.value)
    assert snapshot(client) == before


def test_expressions_read_the_values_before_the_update(client: redis.Redis) -> None:
    record = make(count=1)[0]
    Task.objects.update(n=5, rank=7)
    Task.objects.update(n=F("rank"), rank=F("n"))
    record.refresh_from_db()
    assert (record.n, record.rank) == (7, 5)


def test_an_absent_field_computes_from_its_default(client: redis.Redis) -> None:
    record = make(count=1)[0]
    client.hdel(record._key(), "n")  # as a record saved before the field existed
    assert Task.objects.filter(id=record.pk).update(n=F("n") + 2) == 1
    record.refresh_from_db()
    assert record.n == 2
    assert Task.objects.filter(n=2).count() == 1


# -- asyncio ------------------------------------------------------------------------------------


async def test_aupdate_is_the_same_operation_awaited(aclient: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    records = [Task(queue="q", status="new", n=i, price=D("1.10"), ratio=0.5)
               for i in range(5)]
    await Task.objects.abulk_create(records)
    assert await Task.objects.filter(n__gte=1).aupdate(n=F("n") * 10, status="done") == 4
    assert await Task.objects.aupdate(price=F("price") + D("0.01")) == 5
    monkeypatch.setattr(updates, "PAGE", 2)  # the paged plan, awaited
    assert await Task.objects.all().aupdate(ratio=F("ratio") / 2) == 5
    await records[2].arefresh_from_db()
    assert (records[2].n, records[2].status, records[2].price, records[2].ratio) == (
        20, "done", D("1.11"), 0.25)
    with pytest.raises(errors.UniqueViolation):
        await Task.objects.aupdate(code="same")
    assert await Task.objects.filter(status="done").acount() == 4
    assert (await Task.objects.acheck()).ok


# -- a filter by id: the update-by-id script ------------------------------------------------------
def _dump(client: redis.Redis) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}  # type: ignore[misc]


def _restore(client: redis.Redis, dumped: dict[bytes, bytes]) -> None:
    client.flushdb()
    for key, payload in dumped.items():
        client.restore(key, 0, payload)


def _outcome(client: redis.Redis, run: Any) -> tuple[Any, Any]:
    """What an update did: its result (or its error's type, model, field and value), and
    the keyspace after it."""
    try:
        result: Any = run()
    except errors.RepocketError as exc:
        result = (type(exc), getattr(exc, "model", None), getattr(exc, "field", None),
                  getattr(exc, "value", None))
    return result, snapshot(client)


_BY_ID_CASES = [
    ({"status": "done"}, (0,)),
    ({"n": F("n") + 1}, (0,)),
    ({"n": F("n") * 2, "price": F("price") + D("0.5"), "ratio": F("ratio") / 3}, (0, 2)),
    ({"code": "c1"}, (1,)),
    ({"code": "c1"}, (0, 1)),  # one unique value for two records: refused
    ({"code": None, "status": "x"}, (0, 1, 2)),
    ({"rank": F("rank") + 1}, (0,)),  # (q, 1) is held by record 1: refused
    ({"rank": F("rank") + 1}, (2, 1, 0)),  # every claim moves up: allowed
    ({"maybe": F("maybe") + 1, "n": F("maybe")}, (0,)),  # None in, None out: refused for n
    ({"maybe": F("n") + 5}, (1,)),
    ({"n": F("n") / F("rank")}, (1, 0)),  # record 0 divides by zero: refused
    ({"queue": "other", "rank": 7}, (0, "missing")),
]


@pytest.mark.parametrize("values, which", _BY_ID_CASES)
@pytest.mark.parametrize("absent", [None, "status"])
def test_an_update_by_id_does_what_the_query_update_does(
        client: redis.Redis, monkeypatch: pytest.MonkeyPatch, values: dict[str, Any],
        which: tuple[Any, ...], absent: str | None) -> None:
    """Differential: the same update, from the same keyspace, through the update-by-id
    script and through the query update script: the same result, the same keyspace.
    With ``absent``, record 0's hash lacks that field (saved before it was declared):
    its entries are not trusted, every one is rewritten."""
    owner = Owner.create(name="o")
    records = make(count=3, owner=owner)
    records[2].code = "c2"
    records[2].save()
    records[0].code = "c0"
    records[0].save()
    if absent:
        client.hdel(records[0]._key(), absent)
    ids = [records[i].pk if i != "missing" else "0f0f0f0f-0000-1000-8000-000000000000"
           for i in which]
    saved, dumped = snapshot(client), _dump(client)

    def by_ids() -> Any:
        return Task.objects.filter(id__in=ids).update(**values)

    assert updates.pinned_ids(Task.objects.filter(id__in=ids).state) is not None
    fast = _outcome(client, by_ids)
    _restore(client, dumped)
    monkeypatch.setattr(updates, "pinned_ids", lambda state: None)
    generic = _outcome(client, by_ids)
    assert fast == generic
    if not isinstance(fast[0], int):  # an error: nothing was written
        assert fast[1] == saved


def test_an_update_by_id_is_one_round_trip(client: redis.Redis,
                                           roundtrips: RoundTrips) -> None:
    records = make(count=3)
    Task.objects.filter(id=records[0].pk).update(status="warm")  # the script is loaded
    roundtrips.reset()
    assert Task.objects.filter(id=records[0].pk).update(n=F("n") + 1) == 1
    assert Task.objects.filter(pk=records[1].pk).update(n=F("n") + 1, status="s") == 1
    assert Task.objects.filter(id__in=[r.pk for r in records]).update(n=F("n") + 1) == 3
    assert roundtrips.count == 3
    assert [t.n for t in Task.objects.order_by("n")] == [2, 3, 3]
    assert Task.objects.check().ok


def test_an_update_by_id_counts_each_existing_record_once(client: redis.Redis) -> None:
    records = make(count=3)
    missing = "0f0f0f0f-0000-1000-8000-000000000000"
    first, second = records[0].pk, records[1].pk
    assert Task.objects.filter(id__in=[first, first, missing]).update(n=F("n") + 10) == 1
    assert Task.objects.filter(id=missing).update(n=1) == 0
    assert Task.objects.filter(id__in=[]).update(n=1) == 0
    # ANDed id lookups pin their intersection
    assert Task.objects.filter(id__in=[first, second]).filter(id=second).update(
        status="both") == 1
    assert [t.status for t in Task.objects.filter(status="both")] == ["both"]
    assert Task.objects.get(id=first).n == 10  # type: ignore[union-attr]
    assert Task.objects.check().ok


def test_an_update_by_id_pages_many_ids(client: redis.Redis, roundtrips: RoundTrips,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    records = make(count=7)
    Task.objects.filter(id=records[0].pk).update(status="warm")
    monkeypatch.setattr(updates, "PAGE", 3)
    roundtrips.reset()
    assert Task.objects.filter(id__in=[r.pk for r in records]).update(n=F("n") + 1) == 7
    assert roundtrips.count == 3  # pages of 3, 3 and 1 ids
    assert sorted(t.n for t in Task.objects.all()) == list(range(1, 8))


def test_an_update_by_id_checks_only_the_keys_it_writes(client: redis.Redis) -> None:
    """A model key of the wrong type fails an update that would write it (typed, nothing
    written); an update that leaves it alone does not read it."""
    records = make(count=2)
    status_index = keys.index_key(Task._meta.prefix, "status")
    client.delete(status_index)
    client.set(status_index, "not a sorted set")
    before = snapshot(client)
    with pytest.raises(errors.WrongKeyType) as raised:
        Task.objects.filter(id=records[0].pk).update(status="x", n=F("n") + 1)
    assert status_index in str(raised.value)
    assert snapshot(client) == before
    assert Task.objects.filter(id=records[0].pk).update(n=F("n") + 1) == 1
    # the record's own hash of the wrong type: typed, nothing written
    record_key = Task._meta.record_key(records[1].pk)
    client.delete(record_key)
    client.set(record_key, "not a hash")
    before = snapshot(client)
    with pytest.raises(errors.WrongKeyType):
        Task.objects.filter(id=records[1].pk).update(n=F("n") + 1)
    assert snapshot(client) == before


def test_an_update_by_id_hands_back_the_ids_its_arithmetic_budget_left(
        client: redis.Redis, roundtrips: RoundTrips, monkeypatch: pytest.MonkeyPatch) -> None:
    records = make(count=5)
    for i, record in enumerate(records):
        record.n = 10**40 + i
        record.save()
    ids = [r.pk for r in records]
    Task.objects.filter(id=ids[0]).update(status="warm")
    monkeypatch.setattr(updates, "ARITH_BUDGET", 1)  # one record per call
    roundtrips.reset()
    assert Task.objects.filter(id__in=ids).update(n=F("n") * 3 + 1) == 5
    assert roundtrips.count == 5
    assert [Task.objects.get(id=i).n for i in ids] == [  # type: ignore[union-attr]
        (10**40 + i) * 3 + 1 for i in range(5)]
    monkeypatch.setattr(updates, "PAGE", 2)  # with pages of ids too
    assert Task.objects.filter(id__in=ids).update(n=F("n") - 1) == 5
    assert sorted(t.n for t in Task.objects.all()) == [(10**40 + i) * 3 for i in range(5)]
    assert Task.objects.check().ok


@pytest.mark.parametrize("model", [Task, CompactTask])
def test_a_stored_operand_that_is_not_a_number_is_stored_data_error(
        client: redis.Redis, model: type[Task]) -> None:
    """Written behind repocket's back: as a get of the record would, update() reports the
    stored data (not the caller's input), and writes nothing, on every update path."""
    [task] = make(model, 1, maybe=5)
    client.hset(task._key(), "maybe", b"notanumber")
    before = snapshot(client)
    for query in (model.objects, model.objects.filter(id=task.id),
                  model.objects.filter(queue="q")):
        with pytest.raises(errors.StoredDataError) as raised:
            query.update(n=F("maybe") + 1)
        assert not isinstance(raised.value, errors.ValidationError)
        assert raised.value.model == model.__name__
        assert raised.value.field in ("maybe", "n")
        assert raised.value.value == str(task.id)
        assert snapshot(client) == before
