"""Querysets on a real server: lookups, chaining, laziness, slicing, ordering, values,
deferred fields, explain, exactness of comparisons and paged scans."""

from __future__ import annotations

import datetime as dt
import decimal
import random
import uuid

import pytest
import redis

from repocket import ActiveRecord, attributes, errors
from repocket.api.queryset import QuerySet
from repocket.api.result import ResultSet
from tests.conftest import RoundTrips

D = decimal.Decimal
UTC = dt.timezone.utc


class Team(ActiveRecord):
    class Meta:
        namespace = "tq"

    name = attributes.Unicode(index=True)


class Player(ActiveRecord):
    class Meta:
        namespace = "tq"

    name = attributes.Unicode(index=True)
    score = attributes.Integer(index=True, null=True)
    level = attributes.Integer(null=True)  # not indexed: evaluated by scanning
    nick = attributes.Unicode(null=True)  # not indexed
    team = attributes.Pointer(Team, null=True)
    bio = attributes.ByteStream(null=True)
    meta = attributes.JSON(null=True)


class Exact(ActiveRecord):
    """Each type twice: indexed (answered from a sorted set) and plain (scanned)."""

    class Meta:
        namespace = "tq"

    big = attributes.Integer(index=True, null=True)
    big_plain = attributes.Integer(null=True)
    dec = attributes.Decimal(index=True, null=True)
    dec_plain = attributes.Decimal(null=True)
    at = attributes.DateTime(index=True, null=True)
    at_plain = attributes.DateTime(null=True)
    fl = attributes.Float(index=True, null=True)
    fl_plain = attributes.Float(null=True)
    text = attributes.Unicode(index=True, null=True)
    text_plain = attributes.Unicode(null=True)
    raw = attributes.Bytes(index=True, null=True)
    raw_plain = attributes.Bytes(null=True)


def uid(n: int) -> uuid.UUID:
    """Ids whose text order is n's order."""
    return uuid.UUID(int=(n + 1) << 64 | 0x8000_0000_0000_1000)


@pytest.fixture
def teams(client: redis.Redis) -> tuple[Team, Team]:
    return Team.create(name="red"), Team.create(name="blue")


@pytest.fixture
def players(teams: tuple[Team, Team]) -> list[Player]:
    red, blue = teams
    rows = [  # name, score, level, nick, team
        ("ann", 10, 1, "a", red), ("bob", 20, 2, None, red), ("cat", 30, 3, "c", blue),
        ("dan", None, 4, "d", blue), ("eve", 50, None, "e", None), ("fay", 20, 6, "f", red),
        ("gus", 70, 7, None, blue), ("hal", -5, 8, "h", None),
    ]
    return [Player.create(id=uid(i), name=n, score=s, level=lv, nick=nk, team=t, bio=b"")
            for i, (n, s, lv, nk, t) in enumerate(rows)]


def names(records: list[Player]) -> list[str]:
    return [p.name for p in records]


def snames(records: list[Player]) -> set[str]:
    return {p.name for p in records}


# -- lookups -----------------------------------------------------------------------------------
LOOKUP_CASES = [
    ({"score": 20}, {"bob", "fay"}),
    ({"score__exact": 20}, {"bob", "fay"}),
    ({"score__in": [10, 30, 999]}, {"ann", "cat"}),
    ({"score__in": []}, set()),
    ({"score__gt": 20}, {"cat", "eve", "gus"}),
    ({"score__gte": 20}, {"bob", "fay", "cat", "eve", "gus"}),
    ({"score__lt": 20}, {"ann", "hal"}),
    ({"score__lte": 20}, {"ann", "hal", "bob", "fay"}),
    ({"score__range": (10, 30)}, {"ann", "bob", "fay", "cat"}),
    ({"score__isnull": True}, {"dan"}),
    ({"score": None}, {"dan"}),
    ({"score__isnull": False}, {"ann", "bob", "cat", "eve", "fay", "gus", "hal"}),
    ({"name__startswith": "a"}, {"ann"}),
    ({"name__gt": "eve"}, {"fay", "gus", "hal"}),
    ({"name__range": ("bob", "dan")}, {"bob", "cat", "dan"}),
    ({"name__in": ["eve", "zed"]}, {"eve"}),
    # not indexed: same lookups, answered by scanning
    ({"level": 3}, {"cat"}),
    ({"level__in": [1, 2]}, {"ann", "bob"}),
    ({"level__gt": 6}, {"gus", "hal"}),
    ({"level__gte": 6}, {"fay", "gus", "hal"}),
    ({"level__lt": 2}, {"ann"}),
    ({"level__lte": 2}, {"ann", "bob"}),
    ({"level__range": (3, 4)}, {"cat", "dan"}),
    ({"level__isnull": True}, {"eve"}),
    ({"nick__isnull": True}, {"bob", "gus"}),
    ({"nick__startswith": "h"}, {"hal"}),
    ({"nick__lt": "c"}, {"ann"}),
    # several lookups are ANDed
    ({"score__gte": 20, "level__lt": 7}, {"bob", "cat", "fay"}),
    ({"name__startswith": "e", "score": 50}, {"eve"}),
]


LOOKUP_IDS = [",".join(f"{k}={v!r}" for k, v in c[0].items()) for c in LOOKUP_CASES]


@pytest.mark.parametrize(("lookups", "expected"), LOOKUP_CASES, ids=LOOKUP_IDS)
def test_lookups(players: list[Player], lookups: dict[str, object], expected: set[str]) -> None:
    assert snames(Player.objects.filter(**lookups)) == expected
    assert Player.objects.filter(**lookups).count() == len(expected)
    everyone = {p.name for p in players}
    assert snames(Player.objects.exclude(**lookups)) == everyone - expected


def test_pointer_lookups_by_instance_id_and_null(teams: tuple[Team, Team],
                                                 players: list[Player]) -> None:
    red, blue = teams
    assert snames(Player.objects.filter(team=red)) == {"ann", "bob", "fay"}
    assert snames(Player.objects.filter(team=red.id)) == {"ann", "bob", "fay"}
    assert snames(Player.objects.filter(team=str(red.id))) == {"ann", "bob", "fay"}
    assert snames(Player.objects.filter(team__id=blue.id)) == {"cat", "dan", "gus"}
    assert snames(Player.objects.filter(team__pk=blue.id)) == {"cat", "dan", "gus"}
    assert snames(Player.objects.filter(team__id__in=[red.id, blue.id])) == {
        "ann", "bob", "fay", "cat", "dan", "gus"}
    assert snames(Player.objects.filter(team=None)) == {"eve", "hal"}
    assert snames(Player.objects.filter(team__isnull=True)) == {"eve", "hal"}
    found = Player.objects.filter(team=red, score__gt=10).order_by("score")
    assert names(found) == ["bob", "fay"]
    with pytest.raises(errors.ValidationError):  # a Team is not a Player
        Player.objects.filter(team=Player.objects.get(name="ann"))


def test_filter_by_id_and_pk(players: list[Player]) -> None:
    assert names(Player.objects.filter(id=players[2].id)) == ["cat"]
    assert names(Player.objects.filter(pk=str(players[2].id))) == ["cat"]
    assert snames(Player.objects.filter(id__in=[players[0].id, players[7].id, uid(99)])) == {
        "ann", "hal"}
    assert Player.objects.filter(id=uid(99)).count() == 0
    with pytest.raises(errors.InvalidId):
        Player.objects.filter(id="not-a-uuid")


def test_chaining_is_and_and_exclude_negates_a_group(players: list[Player]) -> None:
    qs = Player.objects.filter(score__gte=10).filter(score__lte=50)
    assert snames(qs) == {"ann", "bob", "cat", "eve", "fay"}
    assert snames(qs.exclude(name="eve")) == {"ann", "bob", "cat", "fay"}
    # exclude(a, b) removes the records matching a AND b (not a OR b)
    assert snames(qs.exclude(score=20, name="bob")) == {"ann", "cat", "eve", "fay"}
    assert snames(qs.exclude(score=20).exclude(name="ann")) == {"cat", "eve"}
    assert snames(Player.objects.exclude(team__isnull=True).filter(level__gt=5)) == {
        "fay", "gus"}
    assert snames(Player.objects.all().filter(name="ann").all()) == {"ann"}


def test_unknown_field_and_unsupported_lookup_are_clear_errors(client: redis.Redis) -> None:
    with pytest.raises(errors.UnknownField) as unknown:
        Player.objects.filter(colour="red")
    assert "colour" in str(unknown.value) and "score" in str(unknown.value)
    assert unknown.value.field == "colour"
    with pytest.raises(errors.InvalidQuery) as bad:
        Player.objects.filter(score__contains=1)
    message = str(bad.value)
    assert "contains" in message
    for valid in ("exact", "in", "gt", "gte", "lt", "lte", "range", "isnull"):
        assert repr(valid) in message
    with pytest.raises(errors.InvalidQuery) as text_only:
        Player.objects.filter(score__startswith=1)
    assert "startswith" not in str(text_only.value).split("are")[-1]
    with pytest.raises(errors.InvalidQuery):
        Player.objects.filter(meta__gt=1)  # JSON has no order
    with pytest.raises(errors.InvalidQuery):
        Player.objects.filter(bio=b"x")  # a ByteStream is not in the hash
    with pytest.raises(errors.InvalidQuery):
        Player.objects.filter(score__gt__lt=1)
    with pytest.raises(errors.InvalidQuery):
        Player.objects.filter(score__isnull="yes")
    with pytest.raises(errors.InvalidQuery):
        Player.objects.filter(score__in=5)
    with pytest.raises(errors.InvalidQuery):
        Player.objects.filter(score__range=(1, 2, 3))
    with pytest.raises(errors.ValidationError):
        Player.objects.filter(score="ten")
    with pytest.raises(errors.UnknownField):
        Player.objects.order_by("colour")
    with pytest.raises(errors.InvalidQuery):
        Player.objects.order_by("meta")
    with pytest.raises(errors.UnknownField):
        Player.objects.values("colour")


# -- laziness, immutability, round trips ---------------------------------------------------------
def test_building_a_queryset_runs_nothing_and_each_query_is_one_round_trip(
        players: list[Player], roundtrips: RoundTrips) -> None:
    list(Player.objects.filter(score=1))  # loads the script
    roundtrips.reset()
    qs = (Player.objects.filter(score__gte=0).exclude(name="eve").filter(level__lt=100)
          .order_by("-score", "name").only("name", "score").defer("score"))
    sliced = qs[1:4]
    Player.objects.all().values  # noqa: B018  (attribute access only)
    assert roundtrips.count == 0
    assert isinstance(sliced, QuerySet)

    for label, run in [
        ("iteration", lambda: list(Player.objects.filter(score__gt=10))),
        ("len", lambda: len(Player.objects.filter(level__gt=2))),
        ("count", lambda: Player.objects.filter(nick__isnull=False).count()),
        ("exists", lambda: Player.objects.filter(name="zed").exists()),
        ("slice", lambda: list(Player.objects.order_by("name")[2:5])),
        ("index", lambda: Player.objects.order_by("name")[3]),
        ("get", lambda: Player.objects.get(name="ann")),
        ("first", lambda: Player.objects.first()),
        ("last", lambda: Player.objects.order_by("score").last()),
        ("values", lambda: Player.objects.values("name", "team")),
        ("values_list", lambda: Player.objects.values_list("name", flat=True)),
        ("bool", lambda: bool(Player.objects.filter(score=10))),
    ]:
        roundtrips.reset()
        run()
        assert roundtrips.count == 1, label


def test_hydration_with_pointers_is_in_the_same_round_trip(
        teams: tuple[Team, Team], players: list[Player], roundtrips: RoundTrips) -> None:
    list(Player.objects.filter(score=1))
    Team.objects.get(id=teams[0].id)  # loads the get script
    roundtrips.reset()
    found = list(Player.objects.filter(team__isnull=False).order_by("name"))
    assert [(p.name, p.team.name) for p in found] == [
        ("ann", "red"), ("bob", "red"), ("cat", "blue"), ("dan", "blue"), ("fay", "red"),
        ("gus", "blue")]
    assert roundtrips.count == 1
    # depth 0: the pointer is loaded on access, one more round trip
    roundtrips.reset()
    shallow = Player.objects.filter(name="ann", pointer_depth=0)[0]
    assert roundtrips.count == 1
    assert shallow.team.name == "red"
    assert roundtrips.count == 2


def test_querysets_are_immutable(players: list[Player]) -> None:
    base = Player.objects.filter(score__gte=20)
    narrower = base.filter(level__lt=5)
    ordered = base.order_by("-score")
    sliced = ordered[:2]
    assert snames(base) == {"bob", "cat", "eve", "fay", "gus"}
    assert snames(narrower) == {"bob", "cat"}
    assert names(ordered)[:2] == ["gus", "eve"]
    assert names(sliced) == ["gus", "eve"]
    assert snames(base) == {"bob", "cat", "eve", "fay", "gus"}
    assert base.state.order == () and base.state.limit is None
    with pytest.raises(errors.InvalidQuery):
        sliced.filter(name="gus")  # a slice cannot be refined further


def test_get_count_exists_first_last(players: list[Player]) -> None:
    assert Player.objects.get(name="cat").score == 30
    assert Player.objects.get(name="zed") is None
    assert Player.objects.filter(score__gt=1000).get() is None
    assert Player.objects.get(id=players[3].id).name == "dan"
    assert Player.objects.get(pk=uid(99)) is None
    with pytest.raises(errors.MultipleObjectsReturned):
        Player.objects.get(score=20)
    with pytest.raises(errors.MultipleObjectsReturned):
        Player.objects.filter(team__isnull=False).get()
    assert Player.objects.filter(score=20).get(name="fay").name == "fay"
    assert Player.objects.count() == 8
    assert Player.objects.filter(score__gte=20).count() == 5
    assert Player.objects.filter(score__gte=20)[1:3].count() == 2
    assert Player.objects.filter(score__gte=20)[4:10].count() == 1
    assert Player.objects.all()[6:].count() == 2
    assert Player.objects.filter(name="eve").exists()
    assert not Player.objects.filter(name="eve", score=1).exists()
    assert Player.objects.order_by("score").first().name == "dan"  # None first
    assert Player.objects.order_by("score").last().name == "gus"
    assert Player.objects.order_by("-score").first().name == "gus"
    assert Player.objects.filter(level__gt=0).order_by("level").last().name == "hal"
    assert Player.objects.first().id == uid(0)  # unordered: by id
    assert Player.objects.last().id == uid(7)
    assert Player.objects.filter(name="zed").first() is None
    assert Player.objects.filter(name="zed").last() is None


def test_first_and_last_of_a_slice_stay_within_it(players: list[Player]) -> None:
    page = Player.objects.order_by("name")[2:5]  # cat dan eve
    for method, expected in (("first", "cat"), ("last", "eve")):
        try:
            found = getattr(page, method)()
        except errors.InvalidQuery:  # refusing, as Django does, is fine too
            continue
        assert found.name == expected, method
    unordered = Player.objects.all()[2:5]
    inside = set(unordered.ids())
    for method in ("first", "last"):
        try:
            found = getattr(unordered, method)()
        except errors.InvalidQuery:
            continue
        assert found.id in inside, method


# -- ordering and slicing -------------------------------------------------------------------------
def _expected(players: list[Player], *specs: str) -> list[str]:
    """Ordering by specs, None first, ties by id in the first spec's direction."""
    rows = list(players)
    rows.sort(key=lambda p: str(p.id), reverse=specs[0].startswith("-"))
    for spec in reversed(specs):
        name = "id" if spec.lstrip("-") == "pk" else spec.lstrip("-")

        def key(p: Player, n: str = name) -> tuple[int, object]:
            value = p.to_dict()[n]
            return (0, 0) if value is None else (1, str(value) if n in ("id", "team") else value)

        rows.sort(key=key, reverse=spec.startswith("-"))
    return names(rows)


@pytest.mark.parametrize("specs", [("score",), ("-score",), ("level",), ("-level",),
                                   ("name",), ("-name",), ("score", "-name"), ("-score", "name"),
                                   ("nick", "-level"), ("team", "name"), ("pk",), ("-id",)])
def test_order_by_matches_python_ordering(players: list[Player], specs: tuple[str, ...]) -> None:
    expected = _expected(players, *specs)
    assert names(Player.objects.order_by(*specs)) == expected
    assert names(Player.objects.all().order_by(*specs)[2:6]) == expected[2:6]
    assert Player.objects.order_by(*specs)[5].name == expected[5]
    assert names(Player.objects.order_by(*specs)[:0]) == []
    assert names(Player.objects.order_by(*specs)[7:20]) == expected[7:]
    assert names(Player.objects.order_by(*specs)[2:6][1:3]) == expected[3:5]
    assert Player.objects.order_by(*specs)[2:6][1:3].count() == 2
    assert [p.name for p in Player.objects.order_by(*specs)[3:].iterator(chunk_size=2)] == (
        expected[3:])


def test_slicing_is_done_on_the_server(players: list[Player], roundtrips: RoundTrips,
                                       client: redis.Redis) -> None:
    list(Player.objects.order_by("name")[:1])
    roundtrips.reset()
    page = Player.objects.order_by("name")[2:4]
    assert roundtrips.count == 0
    assert names(page) == ["cat", "dan"]
    assert roundtrips.count == 1
    with pytest.raises(IndexError):
        Player.objects.order_by("name")[8]
    with pytest.raises(errors.InvalidQuery):
        Player.objects.all()[-1]
    with pytest.raises(errors.InvalidQuery):
        Player.objects.all()[::2]


def test_order_by_of_a_page_reorders_that_page_like_a_resultset(players: list[Player]) -> None:
    page = Player.objects.order_by("name")[:4]  # ann bob cat dan
    reordered = page.order_by("-score")
    assert isinstance(reordered, ResultSet)
    assert names(reordered) == ["cat", "bob", "ann", "dan"]  # None sorts first, so last here
    assert names(reordered[1:3]) == ["bob", "ann"]
    assert isinstance(reordered[1:3], ResultSet)


def test_a_queryset_is_the_list_of_its_records(players: list[Player]) -> None:
    qs = Player.objects.filter(score__gte=30).order_by("score")
    assert isinstance(qs, list)
    assert qs == [players[2], players[4], players[6]]
    assert players[4] in Player.objects.filter(score__gte=30)
    assert players[0] not in Player.objects.filter(score__gte=30)
    assert len(Player.objects.filter(score__gte=30)) == 3
    assert bool(Player.objects.filter(score__gte=30))
    assert not Player.objects.filter(score__gte=3000)
    assert names(reversed(Player.objects.filter(score__gte=30).order_by("score"))) == [
        "gus", "eve", "cat"]
    assert Player.objects.filter(score__gte=30).order_by("score").index(players[4]) == 1
    assert names(Player.objects.filter(score=10) + Player.objects.filter(score=30)) == [
        "ann", "cat"]


def test_iterator_loads_chunks_one_round_trip_each(players: list[Player],
                                                   roundtrips: RoundTrips) -> None:
    list(Player.objects.filter(score=1))
    Player.objects.get_many([uid(0)])
    roundtrips.reset()
    iterator = Player.objects.order_by("-name").iterator(chunk_size=3)
    assert roundtrips.count == 0
    assert names(iterator) == ["hal", "gus", "fay", "eve", "dan", "cat", "bob", "ann"]
    assert roundtrips.count == 1 + 3  # the ids, then 3 chunks of up to 3
    with pytest.raises(errors.InvalidQuery):
        next(Player.objects.all().iterator(chunk_size=0))


def test_values_and_values_list(teams: tuple[Team, Team], players: list[Player]) -> None:
    red, _blue = teams
    qs = Player.objects.filter(score__lte=20).order_by("score", "name")
    assert qs.values("name", "score") == [
        {"name": "hal", "score": -5}, {"name": "ann", "score": 10},
        {"name": "bob", "score": 20}, {"name": "fay", "score": 20}]
    assert qs.values_list("name", "team") == [
        ("hal", None), ("ann", red.id), ("bob", red.id), ("fay", red.id)]
    assert qs.values_list("score", flat=True) == [-5, 10, 20, 20]
    assert qs[1:3].values_list("pk", flat=True) == [players[0].id, players[1].id]
    full = Player.objects.filter(name="ann").values()
    assert full == [{"id": players[0].id, "name": "ann", "score": 10, "level": 1, "nick": "a",
                     "team": red.id, "bio": b"", "meta": None}]  # an empty stream, not None
    with pytest.raises(errors.InvalidQuery):
        qs.values_list("name", "score", flat=True)


# -- deferred fields -------------------------------------------------------------------------------
def test_defer_does_not_download_big_streams(client: redis.Redis, players: list[Player],
                                             roundtrips: RoundTrips) -> None:
    big = b"\x00\xffpayload" * 200_000  # 2 MB
    player = Player.objects.get(name="ann")
    player.bio = big
    player.save()
    list(Player.objects.filter(score=1))
    client.config_resetstat()
    before = client.info("stats")["total_net_output_bytes"]
    roundtrips.reset()
    found = list(Player.objects.filter(name__in=["ann", "bob"]).defer("bio").order_by("name"))
    assert roundtrips.count == 1
    sent = client.info("stats")["total_net_output_bytes"] - before
    assert sent < 100_000, "the deferred stream was sent"
    assert "cmdstat_get" not in client.info("commandstats")  # streams are read with GET
    ann = found[0]
    assert "bio" not in ann._values
    assert ann.name == "ann" and ann.score == 10
    roundtrips.reset()
    assert ann.bio == big
    assert roundtrips.count == 1
    assert ann.bio == big
    assert roundtrips.count == 1
    # only(): every other field is deferred, the named ones are there
    roundtrips.reset()
    light = Player.objects.filter(name="ann").only("name")[0]
    assert roundtrips.count == 1
    assert set(light._values) == {"id", "name"}
    assert light.name == "ann"
    assert roundtrips.count == 1
    assert light.level == 1
    assert roundtrips.count == 2
    # a deferred instance saves only what it holds: the stream is not lost
    light.name = "anne"
    light.save()
    again = Player.objects.get(name="anne")
    assert (again.bio, again.score, again.level) == (big, 10, 1)


# -- scans and explain ----------------------------------------------------------------------------
def test_filter_on_a_non_indexed_field_scans_the_id_set_never_keys(
        client: redis.Redis, players: list[Player]) -> None:
    client.config_resetstat()
    assert snames(Player.objects.filter(nick="c")) == {"cat"}
    assert Player.objects.filter(level__gt=4).count() == 3
    stats = client.info("commandstats")
    assert "cmdstat_keys" not in stats and "cmdstat_scan" not in stats
    plan = Player.objects.filter(nick="c").explain()
    assert plan["scans"] is True
    assert "id set" in plan["chosen"]


def test_explain_names_the_index_a_query_uses(players: list[Player]) -> None:
    plan = Player.objects.filter(score__gt=25, level__lt=100).explain()
    assert plan["scans"] is False
    assert "repocket:tq:Player:idx:score" in plan["chosen"]
    assert plan["examined at most"] == 3  # cat eve gus
    assert plan["conditions"] == ["score gt AND level lt"]
    # the smaller candidate set wins
    plan = Player.objects.filter(score__gte=-100, name="ann").explain()
    assert "idx:name" in plan["chosen"] and plan["examined at most"] == 1
    assert len(plan["candidates"]) == 2
    plan = Player.objects.filter(id=uid(1)).explain()
    assert "id(s) given" in plan["chosen"]
    plan = Player.objects.filter(score__isnull=True).explain()
    assert "idx:score:null" in plan["chosen"]
    assert Player.objects.order_by("score").explain()["strategy"] == "stream"
    assert Player.objects.filter(name="ann").order_by("score").explain()["strategy"] == "gather"


# -- queryset delete -------------------------------------------------------------------------------
def test_queryset_delete(client: redis.Redis, players: list[Player]) -> None:
    player = Player.objects.get(name="cat")
    player.bio = b"bio"
    player.save()
    assert Player.objects.filter(score__gte=30).delete() == 3
    assert snames(Player.objects.all()) == {"ann", "bob", "dan", "fay", "hal"}
    assert Player.objects.filter(score__gte=30).count() == 0
    assert client.zcard("repocket:tq:Player:idx:score") == 4  # ann bob fay hal
    assert not client.exists(f"repocket:tq:Player:{player.id}:field:bio")
    assert not client.exists(f"repocket:tq:Player:{player.id}")
    assert Player.objects.filter(name="zed").delete() == 0


# -- exactness ------------------------------------------------------------------------------------
BIG = 2**53


def _exact_rows(client: redis.Redis, **columns: list[object]) -> list[Exact]:
    rows = list(zip(*columns.values(), strict=True))
    return [Exact.create(**dict(zip(columns, row, strict=True))) for row in rows]


@pytest.mark.parametrize("field", ["big", "big_plain"])
def test_integers_beyond_2_53_compare_exactly(client: redis.Redis, field: str) -> None:
    low, high = _exact_rows(client, **{field: [BIG, BIG + 1]})
    q = Exact.objects
    assert q.filter(**{field: BIG + 1}).ids() == [high.id]
    assert q.filter(**{field: BIG}).ids() == [low.id]
    assert q.filter(**{f"{field}__gt": BIG}).ids() == [high.id]
    assert q.filter(**{f"{field}__lt": BIG + 1}).ids() == [low.id]
    assert q.filter(**{f"{field}__gte": BIG + 1}).ids() == [high.id]
    assert q.filter(**{f"{field}__lte": BIG}).ids() == [low.id]
    assert q.filter(**{f"{field}__in": [BIG + 1, 2**63 - 1]}).ids() == [high.id]
    assert q.exclude(**{field: BIG}).ids() == [high.id]


@pytest.mark.parametrize("field", ["big", "big_plain"])
def test_integers_beyond_2_53_order_exactly(client: redis.Redis, field: str) -> None:
    # the larger value gets the smaller id, so a tie broken by id would misorder them
    high = Exact.create(id=uid(1), **{field: BIG + 1})
    low = Exact.create(id=uid(2), **{field: BIG})
    top = Exact.create(id=uid(3), **{field: 2**63 - 1})
    bottom = Exact.create(id=uid(4), **{field: -(2**63)})
    assert Exact.objects.order_by(field).ids() == [bottom.id, low.id, high.id, top.id]
    assert Exact.objects.order_by(f"-{field}").ids() == [top.id, high.id, low.id, bottom.id]


@pytest.mark.parametrize("field", ["big", "big_plain"])
def test_a_long_run_of_integers_sharing_one_double_orders_exactly(client: redis.Redis,
                                                                 field: str) -> None:
    rng = random.Random(5)
    values = [2**60 + k for k in range(40)]  # one double holds them all
    rng.shuffle(values)
    records = {v: Exact.create(**{field: v}) for v in values}
    ascending = [records[v].id for v in sorted(values)]
    qs = Exact.objects.order_by(field)
    assert qs.ids() == ascending
    assert qs._clone(budget=7).ids() == ascending
    assert qs[5:30]._clone(budget=7).ids() == ascending[5:30]
    assert Exact.objects.order_by(f"-{field}").ids() == ascending[::-1]
    assert Exact.objects.order_by(f"-{field}")[3:9]._clone(budget=5).ids() == (
        ascending[::-1][3:9])
    assert Exact.objects.filter(**{f"{field}__gt": 2**60 + 37}).count() == 2
    assert Exact.objects.filter(**{f"{field}__range": (2**60 + 3, 2**60 + 5)}).count() == 3


@pytest.mark.parametrize("field", ["dec", "dec_plain"])
def test_decimals_with_many_digits_compare_exactly(client: redis.Redis, field: str) -> None:
    tiny = D("0.10000000000000000001")
    plain, precise, same = _exact_rows(client, **{field: [D("0.1"), tiny, D("0.1000")]})
    q = Exact.objects
    assert set(q.filter(**{field: D("0.1")}).ids()) == {plain.id, same.id}  # 0.1 == 0.1000
    assert q.filter(**{field: tiny}).ids() == [precise.id]
    assert q.filter(**{f"{field}__gt": D("0.1")}).ids() == [precise.id]
    assert set(q.filter(**{f"{field}__lt": tiny}).ids()) == {plain.id, same.id}
    assert q.filter(**{f"{field}__range": (tiny, 1)}).ids() == [precise.id]


@pytest.mark.parametrize("field", ["dec", "dec_plain"])
def test_decimals_with_many_digits_order_exactly(client: redis.Redis, field: str) -> None:
    precise = Exact.create(id=uid(1), **{field: D("0.10000000000000000001")})
    plain = Exact.create(id=uid(2), **{field: D("0.1")})
    negative = Exact.create(id=uid(3), **{field: D("-0.10000000000000000001")})
    assert Exact.objects.order_by(field).ids() == [negative.id, plain.id, precise.id]
    assert Exact.objects.order_by(f"-{field}").ids() == [precise.id, plain.id, negative.id]


@pytest.mark.parametrize("field", ["at", "at_plain"])
def test_datetimes_compare_by_instant_across_offsets(client: redis.Redis, field: str) -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    minus5 = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    noon_utc = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    a, b, c = _exact_rows(client, **{field: [
        dt.datetime(2024, 3, 1, 14, 0, tzinfo=plus2),  # 12:00Z
        dt.datetime(2024, 3, 1, 7, 0, 0, 1, tzinfo=minus5),  # 12:30:00.000001Z
        dt.datetime(2024, 3, 1, 11, 59, 59, 999999),  # naive: taken as UTC
    ]})
    q = Exact.objects
    assert q.filter(**{field: noon_utc}).ids() == [a.id]
    assert q.filter(**{field: noon_utc.astimezone(minus5)}).ids() == [a.id]
    assert q.filter(**{f"{field}__gt": noon_utc}).ids() == [b.id]
    assert q.filter(**{f"{field}__lt": noon_utc}).ids() == [c.id]
    assert q.filter(**{f"{field}__range": (noon_utc, noon_utc + dt.timedelta(minutes=30))
                       }).ids() == [a.id]
    assert q.order_by(field).ids() == [c.id, a.id, b.id]
    assert q.order_by(f"-{field}").ids() == [b.id, a.id, c.id]


@pytest.mark.parametrize("field", ["at", "at_plain"])
def test_far_datetimes_compare_to_the_microsecond(client: redis.Redis, field: str) -> None:
    # beyond 2**53 microseconds from 1970 (about 285 years) a double cannot hold them
    last = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    before_last = dt.datetime(9999, 12, 31, 23, 59, 59, 999998)
    first = dt.datetime(1, 1, 1, 0, 0, 0, 0, tzinfo=UTC)
    after_first = dt.datetime(1, 1, 1, 0, 0, 0, 1)
    records = {}
    for i, moment in enumerate([last, first, after_first, before_last]):
        records[moment] = Exact.create(id=uid(i), **{field: moment})
    q = Exact.objects
    assert q.filter(**{field: last}).ids() == [records[last].id]
    assert q.filter(**{f"{field}__gt": before_last}).ids() == [records[last].id]
    assert q.filter(**{f"{field}__lt": after_first}).ids() == [records[first].id]
    plus1 = dt.timezone(dt.timedelta(hours=1))
    same_as_after_first = dt.datetime(1, 1, 1, 1, 0, 0, 1, tzinfo=plus1)
    assert set(q.filter(**{f"{field}__lte": same_as_after_first}).ids()) == {
        records[first].id, records[after_first].id}
    assert q.filter(**{field: same_as_after_first}).ids() == [records[after_first].id]
    ascending = [first, after_first, before_last, last]
    assert q.order_by(field).ids() == [records[m].id for m in ascending]
    assert q.order_by(f"-{field}").ids() == [records[m].id for m in reversed(ascending)]


@pytest.mark.parametrize("field", ["fl", "fl_plain"])
def test_float_negative_zero_equals_zero(client: redis.Redis, field: str) -> None:
    neg, pos, one = _exact_rows(client, **{field: [-0.0, 0.0, 1.0]})
    q = Exact.objects
    assert set(q.filter(**{field: 0.0}).ids()) == {neg.id, pos.id}
    assert set(q.filter(**{field: -0.0}).ids()) == {neg.id, pos.id}
    assert q.filter(**{f"{field}__gt": 0.0}).ids() == [one.id]
    assert q.filter(**{f"{field}__lt": 0.0}).ids() == []
    assert set(q.filter(**{f"{field}__lte": -0.0}).ids()) == {neg.id, pos.id}
    inf = Exact.create(**{field: float("inf")})
    ninf = Exact.create(**{field: float("-inf")})
    assert q.filter(**{f"{field}__gt": 1e308}).ids() == [inf.id]
    assert q.order_by(field).ids()[0] == ninf.id
    assert q.order_by(field).ids()[-1] == inf.id


TEXTS = ["b", "a", "é", "e", "z", "\u00ff", "\uffff", "\U0001f600", "a\x00b", "a\x00", "a",
         "A", "", "ab", "a\x01"]


@pytest.mark.parametrize("field", ["text", "text_plain"])
def test_text_orders_by_code_point(client: redis.Redis, field: str) -> None:
    for i, text in enumerate(TEXTS):
        Exact.create(id=uid(i), **{field: text})
    by_value = sorted(range(len(TEXTS)), key=lambda i: (TEXTS[i], i))
    assert Exact.objects.order_by(field).values_list(field, flat=True) == [
        TEXTS[i] for i in by_value]
    assert Exact.objects.order_by(field).ids() == [uid(i) for i in by_value]
    assert Exact.objects.order_by(f"-{field}").values_list(field, flat=True) == [
        TEXTS[i] for i in reversed(by_value)]
    assert sorted(Exact.objects.filter(**{f"{field}__startswith": "a"}).values_list(
        field, flat=True)) == sorted(t for t in TEXTS if t.startswith("a"))
    assert sorted(Exact.objects.filter(**{f"{field}__startswith": "a\x00"}).values_list(
        field, flat=True)) == ["a\x00", "a\x00b"]
    assert sorted(Exact.objects.filter(**{f"{field}__gt": "a\x00"}).values_list(
        field, flat=True)) == sorted(t for t in TEXTS if t > "a\x00")
    assert sorted(Exact.objects.filter(**{f"{field}__lte": "a"}).values_list(
        field, flat=True)) == sorted(t for t in TEXTS if t <= "a")
    assert Exact.objects.filter(**{field: "a"}).count() == 2
    assert Exact.objects.filter(**{f"{field}__startswith": "\U0001f601"}).count() == 0
    assert Exact.objects.filter(**{f"{field}__startswith": ""}).count() == len(TEXTS)


BYTES = [b"\xff", b"\xff\xff", b"\x00", b"", b"a\x00", b"a", b"\x80abc", b"\xfe\xff", b"b"]


@pytest.mark.parametrize("field", ["raw", "raw_plain"])
def test_bytes_order_bytewise(client: redis.Redis, field: str) -> None:
    for i, value in enumerate(BYTES):
        Exact.create(id=uid(i), **{field: value})
    by_value = sorted(range(len(BYTES)), key=lambda i: (BYTES[i], i))
    assert Exact.objects.order_by(field).ids() == [uid(i) for i in by_value]
    assert sorted(Exact.objects.filter(**{f"{field}__startswith": b"\xff"}).values_list(
        field, flat=True)) == [b"\xff", b"\xff\xff"]
    assert sorted(Exact.objects.filter(**{f"{field}__gte": b"\xfe"}).values_list(
        field, flat=True)) == [b"\xfe\xff", b"\xff", b"\xff\xff"]
    assert Exact.objects.filter(**{field: b"\x00"}).ids() == [uid(2)]


# -- paging: a small budget forces multi-page answers -------------------------------------------
@pytest.fixture
def many(client: redis.Redis) -> list[Exact]:
    records = []
    for i in range(60):
        records.append(Exact.create(
            big=None if i % 9 == 0 else (i * 37) % 23,
            big_plain=None if i % 7 == 0 else (i * 11) % 13,
            text=f"t{(i * 7) % 17:02d}", text_plain=None if i % 5 == 0 else f"p{i % 6}"))
    return records


PAGED_QUERIES = [
    lambda q: q.all(),
    lambda q: q.filter(big__gte=5),
    lambda q: q.filter(big__in=[1, 2, 3, 20]),
    lambda q: q.filter(big__isnull=True),
    lambda q: q.filter(big_plain__lt=6),
    lambda q: q.exclude(text__startswith="t1"),
    lambda q: q.filter(text__range=("t03", "t12"), big_plain__isnull=False),
]
ORDERS = [(), ("big",), ("-big",), ("big_plain", "-text"), ("-text_plain", "big"), ("text",)]
SLICES = [(0, None), (0, 5), (7, 19), (13, None), (55, 70)]


def test_paged_answers_equal_unpaged_ones(many: list[Exact]) -> None:
    checked = 0
    for make in PAGED_QUERIES:
        for order in ORDERS:
            for start, stop in SLICES:
                full = make(Exact.objects).order_by(*order) if order else make(Exact.objects)
                qs = full[start:stop]
                paged = qs._clone(budget=7)
                expected_ids = qs.ids()
                if order:
                    assert paged.ids() == expected_ids, (order, start, stop)
                    assert [r.id for r in paged] == expected_ids
                else:
                    assert len(paged.ids()) == len(expected_ids)
                    assert len(set(paged.ids())) == len(expected_ids)
                    assert set(paged.ids()) <= set(full.ids())
                    assert len(list(paged)) == len(expected_ids)
                assert paged.count() == qs.count() == len(expected_ids)
                checked += 1
        whole = make(Exact.objects)
        assert set(whole._clone(budget=7).ids()) == set(whole.ids())
        assert {r.id for r in whole._clone(budget=7)} == set(whole.ids())
    assert checked == len(PAGED_QUERIES) * len(ORDERS) * len(SLICES)


def test_unordered_paged_slices_partition_the_results(many: list[Exact]) -> None:
    qs = Exact.objects.filter(big_plain__isnull=False)._clone(budget=7)
    seen: list[uuid.UUID] = []
    for start in range(0, 60, 10):
        seen += qs[start:start + 10].ids()
    assert sorted(seen) == sorted(qs.ids())
    assert len(seen) == len(set(seen)) == Exact.objects.filter(big_plain__isnull=False).count()


def test_paged_answers_of_a_real_query_are_correct(many: list[Exact]) -> None:
    paged = Exact.objects.filter(big__gte=5, big_plain__lt=10).order_by("-big", "text")
    expected = sorted((r for r in many if r.big is not None and r.big >= 5
                       and r.big_plain is not None and r.big_plain < 10),
                      key=lambda r: str(r.id), reverse=True)  # ties: by id, as -big says
    expected.sort(key=lambda r: (-r.big, r.text))
    assert paged._clone(budget=7).ids() == [r.id for r in expected]
    assert paged._clone(budget=3)[2:9].ids() == [r.id for r in expected][2:9]
