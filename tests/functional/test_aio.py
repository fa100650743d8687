"""The asyncio API against the real server: the same results, errors, round trips and
stored data as the sync API, plus what only async code meets (cancellation, event
loops, sync calls inside a running loop)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio

from repocket import ActiveRecord, attributes, configure, errors
from repocket.aio_clients import no_retries
from repocket.exec.registry import registry, server_name
from tests.conftest import RoundTrips, snapshot


class Team(ActiveRecord):
    class Meta:
        namespace = "aio"

    name = attributes.Unicode(unique=True)


class Player(ActiveRecord):
    class Meta:
        namespace = "aio"

    name = attributes.Unicode(index=True)
    score = attributes.Integer(index=True)
    team = attributes.Pointer(Team, null=True, index=True)
    log = attributes.ByteStream()


class CountingAsyncConnection(redis.asyncio.Connection):
    """Counts requests sent on asyncio connections: one per command (a round trip each)."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sent += 1
        await super().send_packed_command(command, check_health)


class AsyncRoundTrips(RoundTrips):
    def __init__(self) -> None:
        self.start = CountingAsyncConnection.sent

    @property
    def count(self) -> int:
        return CountingAsyncConnection.sent - self.start

    def reset(self) -> None:
        self.start = CountingAsyncConnection.sent


def counting_factory(url: str, **options: Any) -> Callable[[], redis.asyncio.Redis]:
    def build() -> redis.asyncio.Redis:
        pool = redis.asyncio.ConnectionPool.from_url(
            url, connection_class=CountingAsyncConnection, retry=no_retries(), **options)
        return redis.asyncio.Redis(connection_pool=pool)

    return build


@pytest_asyncio.fixture
async def aclient(client: redis.Redis, redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """The flushed server of ``client``; the async API on a counting client of this loop."""
    configure.connection_pool(client=client, async_client=counting_factory(redis_url))
    connection = configure.get_async_connection()
    await connection.ping()  # the handshake is not the operation under test
    yield connection
    await configure.aclose()


@pytest.fixture
def atrips(aclient: redis.asyncio.Redis) -> AsyncRoundTrips:
    return AsyncRoundTrips()


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Sync repocket calls inside the test's loop, to compare with what sync reads."""
    configure.allow_sync_in_event_loop()
    try:
        yield
    finally:
        configure.allow_sync_in_event_loop(False)


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


# -- records ----------------------------------------------------------------------------------
async def test_create_get_save_delete(aclient: redis.asyncio.Redis, client: redis.Redis) -> None:
    team = await Team.objects.acreate(name="red")
    player = await Player.objects.acreate(name="ann", score=3, team=team, log=b"a")
    loaded = await Player.objects.aget(id=player.id)
    assert loaded is not None and loaded.to_dict() == player.to_dict()
    assert loaded.team.name == "red"  # loaded by the same call (pointer_depth=1)
    loaded.score = 5
    reply = await loaded.asave()
    assert reply["hash"] == player._key()
    with blocking():
        assert (Player.objects.get(id=player.id) or player).score == 5  # what sync reads
    assert await Player.objects.aget(id=team.id) is None
    assert await loaded.adelete() == 2  # the hash and the stream
    assert await Player.objects.aget(id=player.id) is None
    assert await Player.objects.aget_many([team.id, player.id]) == [None, None]
    assert [t.name for t in await Team.objects.aget_many([team.id]) if t] == ["red"]
    other = await Player.acreate(name="bo")
    assert await Player.objects.aget(name="bo") == other


async def test_append_and_unsaved_append(aclient: redis.asyncio.Redis) -> None:
    player = Player(name="ann")
    assert await player.aappend_log(b"ab") == 2  # kept in memory until saved
    await player.asave()
    assert await player.aappend_log("c") == 3
    assert (await Player.objects.aget(id=player.id) or player).log == b"abc"
    await (await Player.objects.aget(id=player.id) or player).adelete()  # another instance
    with pytest.raises(errors.DoesNotExist):
        await player.aappend_log(b"x")


async def test_afetch_loads_pointers_and_deferred_fields(aclient: redis.asyncio.Redis) -> None:
    team = await Team.objects.acreate(name="red")
    player = await Player.objects.acreate(name="ann", team=team)
    shallow = await Player.objects.aget(id=player.id, pointer_depth=0)
    assert shallow is not None
    with pytest.raises(errors.SyncInEventLoop, match=r"afetch\('team'\)"):
        _ = shallow.team  # a sync lazy load would block the loop
    assert (await shallow.afetch("team")).name == "red"
    assert shallow.team.name == "red"  # now loaded: no I/O
    partial = (await Player.objects.filter(id=player.id).only("name").alist())[0]
    with pytest.raises(errors.SyncInEventLoop):
        _ = partial.score
    assert await partial.afetch("score") == 0
    assert partial.score == 0
    await team.adelete()
    dangling = await Player.objects.aget(id=player.id, pointer_depth=0)
    assert dangling is not None and await dangling.afetch("team") is None


async def test_sync_calls_inside_a_running_loop_raise(aclient: redis.asyncio.Redis,
                                                      client: redis.Redis) -> None:
    before = snapshot(client)
    with pytest.raises(errors.SyncInEventLoop, match=r"Player\.save"):
        Player(name="ann").save()
    with pytest.raises(errors.SyncInEventLoop):
        Player.objects.filter(name="ann").count()
    with pytest.raises(errors.SyncInEventLoop):
        Player.objects.check()
    qs = Player.objects.filter(name="ann")
    assert "not evaluated" in repr(qs)  # a log line neither blocks nor raises
    await qs.alist()
    assert repr(qs) == "<QuerySet []>"
    assert snapshot(client) == before
    with blocking():
        assert Player.objects.count() == 0  # blocking knowingly


# -- querysets --------------------------------------------------------------------------------
async def test_querysets(aclient: redis.asyncio.Redis) -> None:
    team = await Team.objects.acreate(name="red")
    made = [await Player.objects.acreate(name=f"p{i}", score=i, team=team if i % 2 else None)
            for i in range(6)]
    qs = Player.objects.filter(score__gte=2).order_by("-score")
    assert [p.score async for p in qs] == [5, 4, 3, 2]
    assert await qs.acount() == 4 and await qs.aexists()
    assert (await qs.afirst()).score == 5 and (await qs.alast()).score == 2
    assert [p.score for p in await qs[1:3].alist()] == [4, 3]
    assert await qs.avalues("name") == [{"name": f"p{i}"} for i in (5, 4, 3, 2)]
    assert await qs.avalues_list("score", flat=True) == [5, 4, 3, 2]
    assert await qs.avalues_list("name", "team") == [
        (f"p{i}", team.id if i % 2 else None) for i in (5, 4, 3, 2)]
    assert await Player.objects.filter(team=team).acount() == 3
    assert await Player.objects.acount() == 6
    assert set(await Player.objects.all().aids()) == {p.id for p in made}
    assert (await Player.objects.filter(score=4).aget()).name == "p4"
    with pytest.raises(errors.MultipleObjectsReturned):
        await Player.objects.aget(team=team)
    assert await Player.objects.filter(score=99).afirst() is None
    assert not await Player.objects.filter(score=99).aexists()
    with blocking():
        assert await qs.aexplain() == qs.explain()
    assert await Player.objects.filter(score__lt=3).adelete() == 3
    assert await Player.objects.acount() == 3
    with pytest.raises(errors.InvalidQuery):
        await Player.objects.all()[:2].adelete()


async def test_aiterator_one_round_trip_per_chunk(atrips: AsyncRoundTrips) -> None:
    await Player.objects.abulk_create([Player(name=f"p{i}", score=i) for i in range(7)])
    atrips.reset()
    seen = [p.score async for p in Player.objects.order_by("score").aiterator(chunk_size=3)]
    assert seen == list(range(7))
    assert atrips.count == 1 + 3  # the ids, then 3 chunks
    with pytest.raises(errors.InvalidQuery):
        [p async for p in Player.objects.aiterator(chunk_size=0)]


# -- bulk and check ------------------------------------------------------------------------------
async def test_abulk_create_batches_and_atomicity(aclient: redis.asyncio.Redis,
                                                  client: redis.Redis,
                                                  atrips: AsyncRoundTrips) -> None:
    atrips.reset()
    teams = await Team.objects.abulk_create([Team(name=f"t{i}") for i in range(5)],
                                            batch_size=2)
    assert atrips.count == 3 and await Team.objects.acount() == 5
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as caught:
        await Team.objects.abulk_create([Team(name="new"), Team(name="t3")])
    assert caught.value.field == "name" and caught.value.owner == str(teams[3].id)
    assert snapshot(client) == before
    with pytest.raises(errors.ValidationError):
        await Team.objects.abulk_create([teams[0], teams[0]])
    with pytest.raises(errors.InvalidQuery):
        await Team.objects.abulk_create([], batch_size=0)


async def test_acheck_and_areindex_find_what_check_finds(aclient: redis.asyncio.Redis,
                                                         client: redis.Redis) -> None:
    players = [await Player.objects.acreate(name=f"p{i}", score=i) for i in range(3)]
    prefix = Player._meta.prefix
    client.srem(Player._meta.ids_key, str(players[0].id))  # an unlisted record
    client.zrem(f"{prefix}:idx:score", str(players[1].id))  # a missing index entry
    client.set(f"{prefix}:{'9' * 8}-0000-1000-8000-000000000000:field:log", b"x")  # orphan
    report = await Player.objects.acheck()
    with blocking():
        sync_report = Player.objects.check()
    assert {p.kind for p in report.problems} == {"unlisted-record", "missing-entry",
                                                 "orphan-stream"}
    assert sorted(map(str, report.problems)) == sorted(map(str, sync_report.problems))
    repaired = await Player.objects.acheck(repair=True)
    assert repaired.repaired >= 1
    assert (await Player.objects.acheck()).ok
    assert (await Player.objects.areindex()).ok


# -- errors -------------------------------------------------------------------------------------
async def test_errors_are_typed_as_in_sync_and_write_nothing(aclient: redis.asyncio.Redis,
                                                             client: redis.Redis) -> None:
    await Team.objects.acreate(name="red")
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as unique:
        await Team.objects.acreate(name="red")
    assert (unique.value.model, unique.value.field, unique.value.value) == ("Team", "name", "red")
    ghost = Team(name="ghost")
    ghost._persisted = True  # a Pointer to a record that is not stored
    with pytest.raises(errors.PointerTargetMissing) as missing:
        await Player(name="x", team=ghost).asave()
    assert missing.value.field == "team"
    client.set(Player._meta.ids_key, b"not a set")
    with pytest.raises(errors.WrongKeyType):
        await Player(name="y").asave()
    client.delete(Player._meta.ids_key)
    assert snapshot(client) == before
    with pytest.raises(errors.InvalidQuery):
        await Player.objects.aget(id=ghost.id, pointer_depth=-1)
    with pytest.raises(errors.InvalidId):
        await Player.objects.aget(id="not an id")


async def test_concurrent_creates_of_one_unique_value_one_wins(aclient: redis.asyncio.Redis,
                                                                client: redis.Redis) -> None:
    outcomes = await asyncio.gather(*(Team.objects.acreate(name="only") for _ in range(32)),
                                    return_exceptions=True)
    winners = [t for t in outcomes if isinstance(t, Team)]
    assert len(winners) == 1
    assert all(isinstance(e, errors.UniqueViolation) and e.owner == str(winners[0].id)
               for e in outcomes if e is not winners[0])
    assert await Team.objects.acount() == 1
    assert (await Team.objects.acheck()).ok


# -- round trips -------------------------------------------------------------------------------
async def test_one_evalsha_per_operation_as_in_sync(aclient: redis.asyncio.Redis,
                                                    client: redis.Redis,
                                                    atrips: AsyncRoundTrips) -> None:
    await (await Player.objects.acreate(name="warm-up")).adelete()  # scripts cached
    await Player.objects.filter(name="x").acount()
    await Player.objects.filter(name="x").alist()
    team = await Team.objects.acreate(name="red")
    counts = {}
    for name, operation in [
        ("create", lambda: Player.objects.acreate(name="ann", score=1, team=team, log=b"x")),
        ("get", lambda: Player.objects.aget(name="ann")),
        ("filter", lambda: Player.objects.filter(team=team).alist()),
        ("count", lambda: Player.objects.filter(score__gt=0).acount()),
        ("first", lambda: Player.objects.afirst()),
    ]:
        atrips.reset()
        result = await operation()
        counts[name] = atrips.count
        if name == "create":
            player = result
    atrips.reset()
    player.score = 2
    await player.asave()
    counts["save"] = atrips.count
    atrips.reset()
    await player.aappend_log(b"y")
    counts["append"] = atrips.count
    atrips.reset()
    await (await Player.objects.aget(id=player.id) or player).adelete()
    counts["get+delete"] = atrips.count
    assert counts == {"create": 1, "get": 1, "filter": 1, "count": 1, "first": 1, "save": 1,
                      "append": 1, "get+delete": 2}


async def test_first_use_of_every_script_is_one_round_trip(aclient: redis.asyncio.Redis,
                                                           client: redis.Redis,
                                                           atrips: AsyncRoundTrips) -> None:
    """As in sync (the same registry decides): a fresh process on a server with an empty
    script cache sends SCRIPT LOAD (and, on the first call, INFO memory) with the EVALSHA,
    in one write on the async connection."""
    client.script_flush()
    client.config_resetstat()
    registry.clear()  # as in a new process
    atrips.reset()
    team = await Team.objects.acreate(name="first")
    assert atrips.count == 1, "save, first use (INFO memory + SCRIPT LOAD + EVALSHA)"
    firsts = {
        "create": lambda: Player.objects.acreate(name="ann", team=team, log=b"x"),
        "get": lambda: Player.objects.aget(name="ann"),
        "count": lambda: Player.objects.filter(team=team).acount(),
    }
    for name, run in firsts.items():
        atrips.reset()
        await run()
        assert atrips.count == 1, f"{name}, first use"
    atrips.reset()
    await Player.objects.aget(name="ann")
    assert atrips.count == 1, "known: EVALSHA alone"
    stats = client.info("commandstats")
    assert "cmdstat_eval" not in stats  # never a NOSCRIPT answered by EVAL
    assert stats["cmdstat_info"]["calls"] == 1  # the policy asked once (this INFO not counted)
    loaded = registry.server(server_name(client.connection_pool.connection_kwargs)).loaded
    assert len(loaded) == stats["cmdstat_script|load"]["calls"] >= 3  # one per script used
    assert client.script_exists(*loaded) == [True] * len(loaded)  # loaded for good


async def test_noscript_recovery(aclient: redis.asyncio.Redis, client: redis.Redis,
                                 atrips: AsyncRoundTrips) -> None:
    player = await Player.objects.acreate(name="ann")
    client.script_flush()
    atrips.reset()
    player.score = 4
    await player.asave()  # EVALSHA -> NOSCRIPT -> EVAL (which caches it)
    assert atrips.count == 2
    atrips.reset()
    assert (await Player.objects.aget(id=player.id) or player).score == 4
    client.script_flush()
    atrips.reset()
    assert (await Player.objects.aget(id=player.id) or player).score == 4
    assert atrips.count == 2  # flushed again: EVALSHA -> NOSCRIPT, then EVAL
    assert await Player.objects.filter(score=4).acount() == 1
    atrips.reset()
    await player.asave()
    # As in sync, NOSCRIPT made the registry forget every script of this server: the save
    # script is loaded again with its EVALSHA, in the same write.
    assert atrips.count == 1
    atrips.reset()
    await player.asave()
    assert atrips.count == 1
    assert "cmdstat_eval" in client.info("commandstats")


# -- timeouts and cancellation --------------------------------------------------------------------
def _pause_scripts(client: redis.Redis) -> None:
    """Hold every EVALSHA the server receives (CLIENT PAUSE WRITE; plain reads, CLIENT LIST
    and CLIENT UNPAUSE are still served)."""
    client.client_pause(5000, all=False)


async def _wait_until_held(client: redis.Redis) -> None:
    """Until the server holds an EVALSHA and the task that sent it awaits its reply."""
    for _ in range(1000):  # bounded: each turn also lets the sending task run
        await asyncio.sleep(0)
        if any("b" in c["flags"] and c["cmd"] == "evalsha" for c in client.client_list()):
            break
    else:
        raise AssertionError("the call never reached the server")
    # A few more turns: redis-py's write (asyncio.wait_for) hands over to the read. Before
    # Python 3.12, wait_for drops a cancellation that arrives once its write is done: the
    # call then completes normally (still once, still whole).
    for _ in range(5):
        await asyncio.sleep(0)


def _await_server(client: redis.Redis) -> None:
    """Unpause, and make sure the server has handled what it held (a round trip on
    another connection after CLIENT UNPAUSE is served after the held commands)."""
    client.client_unpause()
    client.ping()


async def test_timeout_is_typed_and_nothing_is_resent(client: redis.Redis, redis_url: str) -> None:
    configure.connection_pool(client=client,
                              async_client=counting_factory(redis_url, socket_timeout=0.2))
    try:
        await configure.get_async_connection().ping()
        player = await Player.objects.acreate(name="ann")
        calls = evalsha_calls(client)
        _pause_scripts(client)
        player.score = 9
        with pytest.raises(errors.RepocketTimeoutError):
            await player.asave()
        _await_server(client)
        assert evalsha_calls(client) - calls <= 1  # never resent
        with blocking():
            stored = Player.objects.get(id=player.id)
        assert stored is not None and stored.score in (0, 9)  # whole, or not at all
        player.score = 10
        await player.asave()  # the connection that timed out is not reused dirty
        assert (await Player.objects.aget(id=player.id) or player).score == 10
    finally:
        await configure.aclose()


async def test_cancelled_save_ran_whole_or_not_at_all(aclient: redis.asyncio.Redis,
                                                      client: redis.Redis) -> None:
    team = await Team.objects.acreate(name="red")
    other = await Player.objects.acreate(name="other", score=1)
    calls = evalsha_calls(client)
    _pause_scripts(client)
    player = Player(name="ann", score=7, team=team, log=b"abc")
    task = asyncio.ensure_future(player.asave())
    await _wait_until_held(client)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _await_server(client)
    stored = await Player.objects.aget(id=player.id)
    # sent once, never resent: run once (whole) or dropped with its connection
    assert evalsha_calls(client) - calls == (0 if stored is None else 1) + 1  # + the aget
    if stored is not None:  # ran whole: every field, the stream and the indexes
        assert stored.to_dict() == player.to_dict()
        assert await Player.objects.filter(team=team, score=7).aids() == [player.id]
    else:
        assert await Player.objects.filter(score=7).acount() == 0
    # the cancelled connection was not handed back with the save's reply unread
    fetched = await Player.objects.aget(id=other.id)
    assert fetched is not None and fetched.name == "other"
    assert player._persisted is False  # not known to be synced: the next save is whole
    player.score = 8
    await player.asave()
    assert (await Player.objects.aget(id=player.id) or player).to_dict() == player.to_dict()


# -- configuration and event loops ---------------------------------------------------------------
def test_one_client_per_event_loop(client: redis.Redis, redis_url: str) -> None:
    configure.connection_pool(url=redis_url)
    seen = []

    async def work(name: str) -> str:
        seen.append(configure.get_async_connection())
        await Team.objects.acreate(name=name)
        found = await Team.objects.aget(name=name)
        await configure.aclose()
        return found.name if found else ""

    assert asyncio.run(work("a")) == "a"
    assert asyncio.run(work("b")) == "b"  # a new loop: a new client, not the closed one
    assert seen[0] is not seen[1]
    assert seen[0].get_connection_kwargs()["retry"].get_retries() == 0


def test_loops_in_threads_each_get_their_own_client(client: redis.Redis,
                                                     redis_url: str) -> None:
    configure.connection_pool(url=redis_url)

    async def work(name: str) -> int:
        await Team.objects.abulk_create([Team(name=f"{name}{i}") for i in range(20)])
        found = await Team.objects.filter(name__startswith=name).acount()
        await configure.aclose()
        return found

    with ThreadPoolExecutor(4) as pool:  # four loops at once, one per thread
        assert list(pool.map(lambda n: asyncio.run(work(n)), "abcd")) == [20] * 4
    assert Team.objects.count() == 80


def test_a_client_given_as_is_is_refused_in_another_loop(client: redis.Redis,
                                                         redis_url: str) -> None:
    given = redis.asyncio.Redis.from_url(redis_url, retry=no_retries())
    configure.connection_pool(client=client, async_client=given)

    async def count() -> int:
        return await Team.objects.acount()

    assert asyncio.run(count()) == 0
    with pytest.raises(errors.ConfigurationError, match="another event loop"):
        asyncio.run(count())


def test_async_client_derived_from_a_sync_client(client: redis.Redis) -> None:
    async def create() -> Any:
        team = await Team.objects.acreate(name="derived")
        await configure.aclose()
        return team

    team = asyncio.run(create())
    assert Team.objects.get(id=team.id) == team  # same server, same db


def test_decode_responses_is_refused(client: redis.Redis, redis_url: str) -> None:
    configure.connection_pool(client=client, async_client=lambda: redis.asyncio.Redis.from_url(
        redis_url, decode_responses=True))

    async def count() -> int:
        return await Team.objects.acount()

    with pytest.raises(errors.ConfigurationError, match="decode_responses"):
        asyncio.run(count())


# -- the README's example ------------------------------------------------------------------------
def test_the_readme_asyncio_example_runs(client: redis.Redis, redis_url: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from examples import asyncio_service

    source = Path(asyncio_service.__file__).read_text()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert source[source.index("from __future__"):] in readme  # the README shows this file
    monkeypatch.setenv("REPOCKET_URL", redis_url)
    assert asyncio.run(asyncio_service.main()) == {
        "duplicate": True, "failed": [9, 6, 3, 0],
        "counts": {"running": 0, "ok": 6, "failed": 4}}
