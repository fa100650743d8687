"""Queries compiled to query.lua calls, and their replies decoded, without Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid

import msgpack
import pytest

from repocket import ActiveRecord, attributes, configure, errors
from repocket.api.queryset import QuerySet
from repocket.core.merge import merge_counts, merge_rows
from repocket.core.plan import Call
from repocket.core.query import (
    LOOKUPS,
    Condition,
    QueryState,
    compile_query,
    parse_lookup,
    row_key,
)

UID = "970773fa-4de1-11e5-86f4-6c4008a70392"
TID = "40997aa4-71fc-4ad3-b0d7-04c0fac6d6d8"


class Team(ActiveRecord):
    class Meta:
        namespace = "unit.query"

    name = attributes.Unicode(unique=True)


class Player(ActiveRecord):
    class Meta:
        namespace = "unit.query"
        codec = "compact"

    name = attributes.Unicode(index=True)
    nick = attributes.Unicode(null=True)
    score = attributes.Integer(index=True)
    rating = attributes.Float()
    joined = attributes.DateTime(index=True, null=True)
    team = attributes.Pointer(Team, null=True, index=True)
    log = attributes.ByteStream()
    data = attributes.JSON()


PREFIX = "repocket:unit.query:Player"


def plan_of(call: Call) -> list[object]:
    return msgpack.unpackb(call.args[3], raw=False)  # type: ignore[no-any-return]


# -- lookups ------------------------------------------------------------------------------
def test_lookups_are_a_table_of_operators() -> None:
    assert set(LOOKUPS) == {"exact", "in", "gt", "gte", "lt", "lte", "range", "startswith",
                            "isnull", "endswith", "contains", "icontains", "iexact"}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("name", "Ann", Condition("name", "eq", (b"Ann",))),
    ("name__exact", "Ann", Condition("name", "eq", (b"Ann",))),
    ("name__startswith", "An", Condition("name", "startswith", (b"An",))),
    ("score__gt", 5, Condition("score", "gt", (b"5",))),
    ("score__lte", "7", Condition("score", "lte", (b"7",))),
    ("score__in", [1, 2], Condition("score", "in", (b"1", b"2"))),
    ("score__range", (1, 9), Condition("score", "range", (b"1", b"9"))),
    ("nick", None, Condition("nick", "isnull", (True,))),
    ("nick__isnull", False, Condition("nick", "isnull", (False,))),
    ("team", uuid.UUID(TID), Condition("team", "eq", (TID.encode(),))),
    ("team__id", TID, Condition("team", "eq", (TID.encode(),))),
    ("team__pk__in", [TID], Condition("team", "in", (TID.encode(),))),
    ("pk", UID.upper(), Condition("id", "eq", (UID.encode(),))),
    ("joined__gte", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
     Condition("joined", "gte", (b"2026-01-01T00:00:00.000000+00:00",))),
    ("data", {"b": 1, "a": [2]}, Condition("data", "eq", (b'{"a": [2], "b": 1}',))),
])
def test_parse_lookup(key: str, value: object, expected: Condition) -> None:
    assert parse_lookup(Player, key, value) == expected


def test_a_pointer_lookup_takes_an_instance_of_its_model() -> None:
    team = Team(id=TID, name="t")
    assert parse_lookup(Player, "team", team) == Condition("team", "eq", (TID.encode(),))
    with pytest.raises(errors.ValidationError) as raised:
        parse_lookup(Player, "team", Player(name="not a team"))
    assert (raised.value.model, raised.value.field) == ("Player", "team")


@pytest.mark.parametrize(("key", "value", "error", "mentions"), [
    ("nope", 1, errors.UnknownField, "'name'"),
    ("score__contains", 1, errors.InvalidQuery, "'gte'"),
    ("data__gt", 1, errors.InvalidQuery, "['exact', 'in', 'isnull']"),
    ("score__gt__lt", 1, errors.InvalidQuery, "valid lookups"),
    ("log", b"x", errors.InvalidQuery, "ByteStream"),
    ("nick__isnull", "yes", errors.InvalidQuery, "True or False"),
    ("score__in", "123", errors.InvalidQuery, "a list"),
    ("score__range", (1, 2, 3), errors.InvalidQuery, "(low, high)"),
    ("score", "many", errors.ValidationError, "not an integer"),
    ("id", "not-a-uuid", errors.InvalidId, "not a UUID"),
])
def test_bad_lookups_are_typed_errors(key: str, value: object, error: type[Exception],
                                      mentions: str) -> None:
    with pytest.raises(error) as raised:
        parse_lookup(Player, key, value)
    assert mentions in str(raised.value)
    assert getattr(raised.value, "model", "Player") == "Player"


# -- compiling -----------------------------------------------------------------------------
def test_building_a_queryset_runs_nothing_and_returns_new_objects() -> None:
    base = QuerySet(Player)
    refined = base.filter(score__gt=1).exclude(name="x").order_by("-score")[10:20]
    assert refined is not base and base.state == QueryState(Player)
    assert refined.state.offset == 10 and refined.state.limit == 10
    assert refined.state.groups == (
        (False, (Condition("score", "gt", (b"1",)),)),
        (True, (Condition("name", "eq", (b"x",)),)))
    assert refined[5:].state.offset == 15 and refined[5:].state.limit == 5
    assert refined[2:50].state.limit == 8  # a slice of a slice stays inside it
    with pytest.raises(errors.InvalidQuery):
        refined.filter(score=3)
    with pytest.raises(errors.InvalidQuery):
        base[-1:]
    with pytest.raises(errors.InvalidQuery):
        base[::2]


def test_compile_sources_conditions_and_stream() -> None:
    state = QuerySet(Player).filter(score__gte=3, name__startswith="A", nick="n",
                                    team__isnull=True, data__isnull=False) \
        .exclude(joined__lt="2020-01-01T00:00:00").order_by("score").state
    call = compile_query(state, "records")
    assert call.script.name == "query" and call.model == "Player"
    assert call.keys == (f"{PREFIX}:ids", f"{PREFIX}:idx:score", f"{PREFIX}:idx:name",
                         f"{PREFIX}:idx:team:null",  # score cannot be None: no null set
                         f"{PREFIX}:ttl")  # the deadlines: an expired record reads as absent
    assert call.args[1:3] == (1, PREFIX)
    plan = plan_of(call)
    assert {k: plan[k] for k in ("envelope", "pk", "offset", "limit", "mode", "fields",
                                 "streams", "resume")} == {
        "envelope": False, "pk": "id", "offset": 0, "limit": -1, "mode": "records",
        "fields": False, "streams": False, "resume": False}
    assert plan["budget"] > 0
    assert plan["sources"] == [
        {"kind": "index", "key": 2, "index": "score", "family": "exact", "op": "gte",
         "values": ["3"], "exact": True, "condition": [1, 1], "field": "score"},
        {"kind": "index", "key": 3, "index": "lex", "family": "text", "op": "startswith",
         "values": ["A"], "exact": True, "condition": [1, 2], "field": "name"},
        {"kind": "null", "key": 4, "exact": True, "condition": [1, 4], "field": "team"},
    ]  # nick is not indexed; data__isnull=False is no source
    groups = plan["groups"]
    assert groups[0][0] is False and groups[1] == [True, [["joined", "datetime", "lt",
                                                          ["2020-01-01T00:00:00.000000"]]]]
    assert plan["order"] == [["score", "exact", False]]
    # the walk of score's index; Integer scores are exact within 2^53
    assert plan["walk"] == [2, "score", False, 2**53]
    assert plan["deadlines"] == 5


def test_pk_and_unique_lookups_are_the_cheapest_sources() -> None:
    state = QuerySet(Player).filter(pk__in=[UID], team=TID).state
    sources = plan_of(compile_query(state, "ids"))["sources"]
    assert sources[0] == {"kind": "ids", "values": [UID], "exact": True, "condition": [1, 1],
                          "field": "id"}
    assert sources[1]["kind"] == "index"
    team_state = QuerySet(Team).filter(name="x").state
    team_call = compile_query(team_state, "count")
    assert plan_of(team_call)["sources"] == [{"kind": "unique", "key": 2, "values": ["x"],
                                              "family": "text", "exact": True,
                                              "condition": [1, 1], "field": "name"}]
    assert team_call.keys[1] == "repocket:unit.query:Team:uniq:name"


def test_only_and_defer_choose_fields_and_streams() -> None:
    only = plan_of(compile_query(QuerySet(Player).only("name", "log").state, "records"))
    assert only["fields"] == ["id", "name"] and only["streams"] == {"log": True}
    deferred = plan_of(compile_query(QuerySet(Player).defer("log", "data").state, "records"))
    assert "data" not in deferred["fields"] and deferred["fields"][0] == "id"
    assert deferred["streams"] == {}


def test_ordering_by_a_stream_or_json_is_refused() -> None:
    for field in ("log", "data", "-data"):
        with pytest.raises(errors.InvalidQuery):
            QuerySet(Player).order_by(field)


# -- decoding ------------------------------------------------------------------------------
def test_done_replies_decode_per_mode() -> None:
    state = QueryState(Player)
    work = [1, 2]  # candidates examined, commands run
    assert compile_query(state, "count").decode([b"done", work, 4]) == 4
    ids = compile_query(state, "ids").decode([b"done", work, 2, UID.encode(), TID.encode()])
    assert ids == [uuid.UUID(UID), uuid.UUID(TID)]
    record = [1, UID.encode(), [b"id", UID.encode(), b"name", b"Ann", b"score", b"3"], [b"x"]]
    (player,) = compile_query(state, "records").decode([b"done", work, 1, record])
    assert (player.name, player.score, player.log, player.nick) == ("Ann", 3, b"x", None)


def test_only_leaves_other_fields_deferred() -> None:
    state = QuerySet(Player).only("name").state
    record = [1, UID.encode(), [b"id", UID.encode(), b"name", b"Ann"], [False]]
    (player,) = compile_query(state, "records").decode([b"done", [1, 2], 1, record])
    assert player._values == {"id": uuid.UUID(UID), "name": "Ann"}


def test_pages_continue_then_hydrate_with_get_many() -> None:
    state = QuerySet(Player).order_by("-score")[1:3].state
    first = compile_query(state, "records")
    rows = [[f"{i:08d}-0000-1000-8000-000000000000".encode(), str(i).encode()] for i in range(4)]
    work = [1, 2]
    follow = first.decode([b"page", work, [b"gather", 0, b"17"], rows[0], rows[3]])
    assert isinstance(follow, Call) and follow.script.name == "query"
    assert plan_of(follow)["resume"] == ["gather", 0, "17"]  # resumes where the page stopped
    final = follow.decode([b"page", work, None, rows[1], rows[2], rows[3]])  # a duplicate id
    assert isinstance(final, Call) and final.script.name == "get"
    assert final.args[3::3] == (rows[2][0].decode(), rows[1][0].decode())  # scores 2, 1
    count = compile_query(state, "count").decode([b"page", work, None, *rows])
    assert count == 2


def test_inexact_sources_leave_their_condition_to_the_script() -> None:
    class Money(ActiveRecord):
        class Meta:
            namespace = "unit.query"

        amount = attributes.Decimal(index=True)
        count = attributes.Integer(index=True)
        at = attributes.DateTime(index=True)

    def exact(**lookups: object) -> bool:
        plan = plan_of(compile_query(QuerySet(Money).filter(**lookups).state, "ids"))
        return plan["sources"][0]["exact"]  # type: ignore[no-any-return]

    assert not exact(amount__gt=1)  # Decimals with many digits share one double
    assert exact(count__gt=2**53 - 1) and not exact(count__gt=2**53)
    assert exact(at__gte=dt.datetime(2200, 1, 1))
    assert not exact(at__gte=dt.datetime(2300, 1, 1))  # beyond 2**53 microseconds


def test_walk_pages_keep_their_order_and_sort_runs_of_one_score() -> None:
    """Rows of an index walk are (id, value, group): rows of different scores stay in
    walk order; a run of one score (equal as numbers, '-0' and '0' too) is sorted by
    value then id, across pages; lex rows (no group) keep their order."""
    state = QuerySet(Player).order_by("score")[0:4].state
    call = compile_query(state, "ids")
    work = [1, 2]

    def row(i: int, value: bytes | None, group: bytes | None) -> list[object]:
        return [f"{i:08d}-0000-1000-8000-000000000000".encode(), value, group]

    rows = [row(7, None, b"null"), row(6, None, b"null"), row(3, b"-0", b"-0"),
            row(2, b"0", b"0"), row(5, b"3", b"3"), row(1, b"5", b"5")]
    follow = call.decode([b"page", work, [b"walk", b"index", 3, b"m", 3, False], *rows[:3]])
    assert plan_of(follow)["resume"][4] == 3  # the rows found so far, each id once
    ids = follow.decode([b"page", work, None, *rows[3:]])
    assert [str(i)[:8] for i in ids] == ["00000006", "00000007", "00000002", "00000003"]
    rows = [row(3, b"1", None), row(1, b"2", None)]
    lex = compile_query(QuerySet(Player).order_by("name").state, "ids")
    ids = lex.decode([b"page", work, [b"walk", b"index", 3, b"m", 3, False], *rows])
    assert [str(i)[:8] for i in ids.decode([b"page", work, None])] == ["00000003", "00000001"]


# -- ordering rows and merging shards --------------------------------------------------------
def _row(number: int, score: object, joined: object = None) -> list[object]:
    raw_score = None if score is None else str(score).encode()
    return [f"{number:08d}-0000-1000-8000-000000000000".encode(), raw_score, joined]


def test_row_key_orders_typed_values_none_first_ties_by_id() -> None:
    key = row_key(QuerySet(Player).order_by("score").state)
    rows = [_row(1, 10), _row(2, 9), _row(3, None), _row(4, 10), _row(0, -(2**63))]
    assert [r[0][:8] for r in sorted(rows, key=key)] == [
        b"00000003", b"00000000", b"00000002", b"00000001", b"00000004"]
    descending = row_key(QuerySet(Player).order_by("-score").state)
    assert [r[0][:8] for r in sorted(rows, key=descending)] == [
        b"00000004", b"00000001", b"00000002", b"00000000", b"00000003"]


def test_row_key_mixed_directions_and_datetimes_across_offsets() -> None:
    key = row_key(QuerySet(Player).order_by("score", "-joined").state)
    early = b"2026-01-01T10:00:00.000000+02:00"  # 08:00 UTC
    late = b"2026-01-01T09:00:00.000000"         # naive: 09:00 UTC
    rows = [_row(1, 1, early), _row(2, 1, late), _row(3, 0, early)]
    assert [r[0][:8] for r in sorted(rows, key=key)] == [b"00000003", b"00000002", b"00000001"]


def test_merge_of_several_shards_orders_slices_and_dedupes() -> None:
    key = row_key(QuerySet(Player).order_by("-score").state)
    shard_a = [_row(1, 50), _row(2, 30), _row(3, 10)]
    shard_b = [_row(4, 40), _row(5, 20)]
    shard_c: list[list[object]] = []
    merged = merge_rows([shard_a, shard_b, shard_c], key, offset=1, limit=3, presorted=True)
    assert [r[1] for r in merged] == [b"40", b"30", b"20"]
    unsorted = merge_rows([[_row(9, 1), _row(8, 2)], [_row(8, 2)]], key)
    assert [r[0][:8] for r in unsorted] == [b"00000008", b"00000009"]
    assert merge_rows([[_row(1, 1)], [_row(2, 2)]], None, offset=1) == [_row(2, 2)]
    assert merge_counts([3, 0, 4]) == 7


def test_exact_decimal_rows_sort_exactly() -> None:
    class Amount(ActiveRecord):
        class Meta:
            namespace = "unit.query"

        amount = attributes.Decimal(index=True)

    key = row_key(QuerySet(Amount).order_by("amount").state)
    values = ["0.10000000000000000001", "0.1", "1E+2", "-3", "99.999999999999999999"]
    rows = [[f"{i:08d}-0000-1000-8000-000000000000".encode(), v.encode()]
            for i, v in enumerate(values)]
    ordered = [decimal.Decimal(r[1].decode()) for r in sorted(rows, key=key)]
    assert ordered == sorted(decimal.Decimal(v) for v in values)


def test_refining_copies_the_state_without_rerunning_init() -> None:
    base = QuerySet(Player).filter(score__gt=1)
    refined = base.order_by("-score")[2:5]
    assert refined.state == dataclasses.replace(base.state, order=("-score",), offset=2, limit=3)
    assert base.state.order == () and base.state.limit is None  # the original is unchanged


def test_a_compiled_query_is_reused_but_follows_the_default_codec() -> None:
    state = QuerySet(Team).filter(name="x").state  # Team follows the default codec
    first = compile_query(state, "ids")
    assert compile_query(state, "ids").args == first.args  # from the cache
    assert plan_of(first)["envelope"] is True
    try:
        configure.default_codec("compact")
        assert plan_of(compile_query(state, "ids"))["envelope"] is False
    finally:
        configure.default_codec("envelope")
    big = QuerySet(Player).filter(score__in=list(range(1000))).state
    assert plan_of(compile_query(big, "ids"))["sources"][0]["values"][-1] == "999"
