"""The consistency checker finds each kind of damage, repairs what can be repaired, and
the `repocket check` command reports it."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from repocket import ActiveRecord, attributes, configure, errors
from repocket.tools import check
from tests.conftest import RoundTrips, snapshot
from tests.support.servers import StartServer
from tests.support.work import script_calls

ROOT = Path(__file__).resolve().parents[2]


class Ticket(ActiveRecord):
    class Meta:
        namespace = "tc"

    title = attributes.Unicode(index=True)
    code = attributes.Unicode(unique=True, null=True)
    rank = attributes.Integer(index=True)
    due = attributes.DateTime(index=True, null=True)
    log = attributes.ByteStream()


PREFIX = "repocket:tc:Ticket"


@pytest.fixture
def tickets(client: redis.Redis) -> list[Ticket]:
    return [Ticket.create(title=f"t{i}", code=f"c{i}", rank=i, log=b"x") for i in range(6)]


def stored(name: str, value: object) -> bytes:
    """What repocket would store for ``value``: writes behind its back look real."""
    return Ticket._meta.codec.encode(Ticket._meta.fields[name], value)


def kinds(report: object) -> list[str]:
    return sorted(p.kind for p in report.problems)  # type: ignore[attr-defined]


def test_healthy_data_has_no_problem(tickets: list[Ticket]) -> None:
    report = Ticket.objects.check()
    assert report.ok and report.problems == [] and report.records == 6


def test_each_kind_of_damage_is_found_then_repaired(client: redis.Redis,
                                                    tickets: list[Ticket]) -> None:
    a, b, c, d, e, _ = tickets
    client.delete(a._key())                                   # orphan id (+ stale entries)
    client.srem(f"{PREFIX}:ids", str(b.id))                  # unlisted record
    client.zrem(f"{PREFIX}:idx:rank", str(c.id))             # missing index entry
    client.hset(d._key(), "title", stored("title", "renamed"))  # stale + missing lex entry
    client.hdel(f"{PREFIX}:uniq:code", "c4")                 # missing unique claim
    client.set(f"{PREFIX}:{'9' * 8}-0000-1000-8000-000000000000:field:log", b"left")  # orphan
    report = Ticket.objects.check()
    assert not report.ok
    found = kinds(report)
    for kind in ("orphan-id", "unlisted-record", "missing-entry", "stale-entry",
                 "missing-unique", "orphan-stream"):
        assert kind in found, (kind, found)
    assert any(p.record_id == str(c.id) and p.key == f"{PREFIX}:idx:rank"
               for p in report.problems if p.kind == "missing-entry")
    assert Ticket.objects.filter(rank=2).count() == 0  # the damage is visible to queries

    repaired = Ticket.objects.check(repair=True)
    assert repaired.ok and repaired.repaired == len(repaired.problems)
    after = Ticket.objects.check()
    assert after.ok, after.problems
    assert Ticket.objects.filter(rank=2).ids() == [c.id]
    assert Ticket.objects.filter(title="renamed").ids() == [d.id]
    assert Ticket.objects.filter(title="t3").ids() == []
    assert Ticket.objects.get(code="c4") == e
    assert b.id in Ticket.objects.all().ids()
    assert a.id not in Ticket.objects.all().ids()
    assert client.exists(f"{PREFIX}:{'9' * 8}-0000-1000-8000-000000000000:field:log") == 0


def test_a_unique_value_held_twice_is_reported_not_guessed(client: redis.Redis,
                                                           tickets: list[Ticket]) -> None:
    client.hset(tickets[1]._key(), "code", stored("code", "c0"))  # behind the constraint
    report = Ticket.objects.check(repair=True)
    assert not report.ok
    assert [p.kind for p in report.unrepaired] == ["unique-conflict"]
    (fields, value, holder, other), = report.conflicts
    assert fields == ["code"] and value == b"c0"
    assert {holder, other} == {str(tickets[0].id), str(tickets[1].id)}


def test_the_checker_works_in_bounded_batches(client: redis.Redis, tickets: list[Ticket],
                                              roundtrips: object) -> None:
    Ticket.objects.check(batch_size=2)
    roundtrips.reset()  # type: ignore[attr-defined]
    report = Ticket.objects.check(batch_size=2)
    assert report.ok
    # 6 ids in batches of 2, and each index key in batches: several small script calls
    assert roundtrips.count > 6  # type: ignore[attr-defined]


def test_the_repocket_check_command(client: redis.Redis, redis_url: str,
                                    tickets: list[Ticket]) -> None:
    db_url = configure.get_connection().connection_pool.connection_kwargs
    url = f"redis://{db_url['host']}:{db_url['port']}/{db_url.get('db', 0)}"
    command = [sys.executable, "-m", "repocket", "check", "--url", url,
               "tests.functional.test_check"]
    clean = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert "Ticket: 6 records, 0 problems" in clean.stdout
    client.srem(f"{PREFIX}:ids", str(tickets[0].id))
    damaged = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert damaged.returncode == 1
    assert "unlisted-record" in damaged.stdout
    fixed = subprocess.run([*command, "--repair"], cwd=ROOT, capture_output=True, text=True)
    assert fixed.returncode == 0 and "1 repaired" in fixed.stdout
    assert subprocess.run(command, cwd=ROOT, capture_output=True, text=True).returncode == 0


# -- where check() must run: replicas, over maxmemory -----------------------------------------
def damage(client: redis.Redis, tickets: list[Ticket]) -> None:
    """One of each repairable problem, written behind repocket's back."""
    a, b, c, *_ = tickets
    client.delete(a._key())                                    # orphan id, stale entries
    client.srem(f"{PREFIX}:ids", str(b.id))                   # unlisted record
    client.zrem(f"{PREFIX}:idx:rank", str(c.id))              # missing entry
    client.set(f"{PREFIX}:{'9' * 8}-0000-1000-8000-000000000000:field:log", b"left")
    client.sadd(f"{PREFIX}:ids", "junk")                      # foreign member


def replicated(primary: redis.Redis) -> None:
    """Wait until the replica has every write the primary made (WAIT, in steps shorter
    than the client's socket timeout)."""
    for _ in range(20):
        if primary.wait(1, 1000) == 1:
            return
    raise AssertionError("the replica did not catch up")


def test_check_runs_on_a_replica_and_repair_there_is_refused_typed(
        start_server: StartServer) -> None:
    primary_server = start_server("--repl-diskless-sync-delay", "0")
    replica_server = start_server("--replicaof", primary_server.host, str(primary_server.port))
    primary, replica = primary_server.client(), replica_server.client()
    configure.connection_pool(client=primary)
    tickets = [Ticket.create(title=f"t{i}", code=f"c{i}", rank=i, log=b"x") for i in range(6)]
    damage(primary, tickets)
    replicated(primary)
    on_primary = Ticket.objects.check()

    configure.connection_pool(client=replica)
    assert replica.info("replication")["role"] == "slave"
    before = snapshot(replica)
    on_replica = Ticket.objects.check()
    assert sorted(map(str, on_replica.problems)) == sorted(map(str, on_primary.problems))
    assert {"orphan-id", "unlisted-record", "missing-entry", "orphan-stream",
            "foreign-member"} <= set(kinds(on_replica))
    with pytest.raises(errors.ReadOnly) as raised:
        Ticket.objects.check(repair=True)
    assert "Ticket" in str(raised.value)
    with pytest.raises(errors.ReadOnly):
        Ticket.objects.reindex()
    command = [sys.executable, "-m", "repocket", "check", "--url", replica_server.url,
               "tests.functional.test_check"]
    checked = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 1 and "foreign-member" in checked.stdout, checked.stderr
    refused = subprocess.run([*command, "--repair"], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "read-only" in refused.stderr, refused.stderr
    assert snapshot(replica) == before

    configure.connection_pool(client=primary)
    assert Ticket.objects.check(repair=True).ok
    replicated(primary)
    configure.connection_pool(client=replica)
    assert Ticket.objects.check().ok


def test_check_runs_over_maxmemory(client: redis.Redis, tickets: list[Ticket]) -> None:
    damage(client, tickets)
    expected = sorted(map(str, Ticket.objects.check().problems))
    before = snapshot(client)
    client.config_set("maxmemory", 1)
    try:
        assert sorted(map(str, Ticket.objects.check().problems)) == expected
        with pytest.raises(errors.OutOfMemory):
            Ticket.objects.check(repair=True)
    finally:
        client.config_set("maxmemory", 0)
    assert snapshot(client) == before


def test_checking_changes_nothing(client: redis.Redis, tickets: list[Ticket]) -> None:
    damage(client, tickets)
    client.hset(tickets[4]._key(), "code", stored("code", "c0"))  # and a conflict
    before = snapshot(client)
    assert not Ticket.objects.check().ok
    assert snapshot(client) == before


# -- bounded work -------------------------------------------------------------------------------
def test_the_keyspace_pass_costs_two_round_trips_per_batch(client: redis.Redis,
                                                           roundtrips: RoundTrips) -> None:
    Ticket.objects.bulk_create([Ticket(title=f"t{i}", code=f"c{i}", rank=i, log=b"x")
                                for i in range(600)])
    client.srem(f"{PREFIX}:ids", *[str(i) for i in Ticket.objects.all().ids()[:50]])
    check.run(Ticket, keyspace_pass=True, batch_size=100)  # the scripts are loaded
    keys = client.dbsize()  # 600 hashes, 600 streams, the id set and 6 index keys
    roundtrips.reset()
    with_keys = check.run(Ticket, keyspace_pass=True, batch_size=100)
    all_passes = roundtrips.count
    roundtrips.reset()
    check.run(Ticket, keyspace_pass=False, batch_size=100)
    keyspace_trips = all_passes - roundtrips.count
    assert len([p for p in with_keys.problems if p.kind == "unlisted-record"]) == 50
    # SCAN visits every key of the database, a page of about batch_size at a time: one
    # SCAN call and one audit call per page (the old pass made about 3 per key)
    pages = keys // 100 + 2
    assert keyspace_trips <= 2 * pages, (keyspace_trips, keys)
    assert keyspace_trips >= 2 * (keys // 200)


def test_each_batch_is_bounded_and_few(client: redis.Redis, roundtrips: RoundTrips) -> None:
    Ticket.objects.bulk_create([Ticket(title=f"t{i}", code=f"c{i}", rank=i)
                                for i in range(500)])
    check.run(Ticket, batch_size=50)
    roundtrips.reset()
    report = check.run(Ticket, keyspace_pass=False, batch_size=50)
    assert report.ok and report.records == 500
    # the id set (500 ids), 3 sorted sets (500 entries each), the null set of `due`
    # (500 ids) and the unique hash (500 values): about 10 batches each
    assert 5 * 10 <= roundtrips.count <= 5 * 13


# -- foreign members ----------------------------------------------------------------------------
def test_foreign_members_are_reported_and_removed_by_repair(client: redis.Redis,
                                                            tickets: list[Ticket]) -> None:
    t = tickets[0]
    junk = {
        f"{PREFIX}:ids": [("sadd", "junk"), ("sadd", "ids"), ("sadd", "idx:rank"),
                          ("sadd", str(t.id).upper())],
        f"{PREFIX}:idx:rank": [("zadd", {"junk": 1}), ("zadd", {"ids": 2})],
        f"{PREFIX}:idx:title": [("zadd", {"t0": 0}), ("zadd", {b"t0\0\0short": 0}),
                                ("zadd", {b"t0\0\0" + b"x" * 36: 0})],
        f"{PREFIX}:idx:due:null": [("sadd", "junk")],
        f"{PREFIX}:uniq:code": [("hset", {"zz": "junk"})],
    }
    for key, writes in junk.items():
        for command, value in writes:
            if command == "hset":
                client.hset(key, mapping=value)  # type: ignore[arg-type]
            else:
                getattr(client, command)(key, value)
    healthy = snapshot(client)
    report = Ticket.objects.check()
    foreign = [p for p in report.problems if p.kind == "foreign-member"]
    assert len(foreign) == 11, report.problems
    assert {p.key for p in foreign} == set(junk)
    assert report.records == 6  # junk is not a record
    assert not [p for p in report.problems if p.kind != "foreign-member"]

    repaired = Ticket.objects.check(repair=True)
    assert repaired.ok and repaired.repaired == 11
    assert Ticket.objects.check().problems == []
    after = snapshot(client)
    for key, (kind, _contents, _expiry) in after.items():  # only the junk went
        assert healthy[key][0] == kind
    assert client.smembers(f"{PREFIX}:ids") == {str(x.id).encode() for x in tickets}
    assert client.zcard(f"{PREFIX}:idx:title") == 6 and client.zcard(f"{PREFIX}:idx:rank") == 6
    assert client.hgetall(f"{PREFIX}:uniq:code") == {
        f"c{i}".encode(): str(x.id).encode() for i, x in enumerate(tickets)}


# -- eviction ------------------------------------------------------------------------------------
def test_an_eviction_policy_is_reported(client: redis.Redis, tickets: list[Ticket]) -> None:
    assert Ticket.objects.check().eviction_policy == "noeviction"
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        report = Ticket.objects.check(repair=True)
    finally:
        client.config_set("maxmemory-policy", "noeviction")
    assert report.eviction_policy == "allkeys-lru" and not report.ok
    (problem,) = report.unrepaired
    assert problem.kind == "eviction-policy" and "noeviction" in problem.detail


def test_each_call_does_bounded_work_whatever_the_data_size(client: redis.Redis) -> None:
    """Measured by the server (MONITOR): the elements each script call reads or writes,
    damaged data and repairs included, stay within a bound set by batch_size alone."""
    Ticket.objects.bulk_create([Ticket(title=f"t{i}", code=f"c{i}", rank=i, log=b"x")
                                for i in range(1_500)], batch_size=500)
    ids = Ticket.objects.all().ids()
    client.srem(f"{PREFIX}:ids", *map(str, ids[:300]))           # unlisted records
    client.delete(f"{PREFIX}:idx:rank")                            # every entry missing
    client.zadd(f"{PREFIX}:idx:title", {f"junk{i}": 0 for i in range(300)})  # foreign
    batch = 100
    per_record = 3 + len(Ticket._meta.model_keys)  # TYPE, HMGET, EXISTS + one per index key
    for repair in (False, True):
        report, calls = script_calls(
            client, lambda repair=repair: check.run(Ticket, repair=repair, batch_size=batch))
        found = collections.Counter(kinds(report))
        assert found["unlisted-record"] == 300 and found["foreign-member"] == 300
        # checking sees the ids in the set; repairing lists the others first
        assert found["missing-entry"] == (1_500 if repair else 1_200)
        assert len(calls) >= 1_500 // batch  # batched, not one call
        busiest = max(call.work for call in calls)
        assert busiest <= 2 * batch * per_record, busiest
    assert Ticket.objects.check().ok
