"""The consistency checker finds each kind of damage, repairs what can be repaired, and
the `repocket check` command reports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from repocket import ActiveRecord, attributes, configure

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
