"""Secondary indexes, null sets and unique constraints as stored in Redis: written by save,
moved by updates, removed by delete, enforced atomically (also across processes), and
built for old data by reindex() while the application writes."""

from __future__ import annotations

import datetime as dt
import decimal
import multiprocessing
import random
import threading
import uuid
from typing import Any

import pytest
import redis

from repocket import ActiveRecord, attributes, configure, errors
from tests.conftest import RoundTrips, snapshot

D = decimal.Decimal
UTC = dt.timezone.utc
ACCOUNT = "repocket:ti:Account"


class Account(ActiveRecord):
    class Meta:
        namespace = "ti"

    email = attributes.Unicode(unique=True)
    nick = attributes.Unicode(index=True, null=True)
    age = attributes.Integer(index=True, null=True)
    born = attributes.DateTime(index=True, null=True)
    weight = attributes.Float(index=True, null=True)
    balance = attributes.Decimal(index=True, null=True)
    tag = attributes.Bytes(index=True, null=True)
    note = attributes.Unicode(null=True)  # not indexed


class Membership(ActiveRecord):
    class Meta:
        namespace = "ti"
        unique_together = [("org", "user")]  # noqa: RUF012

    org = attributes.Unicode()
    user = attributes.Unicode()
    role = attributes.Unicode(null=True)


class Reading(ActiveRecord):
    class Meta:
        namespace = "ti"

    fl = attributes.Float(unique=True, null=True)
    at = attributes.DateTime(unique=True, null=True)
    price = attributes.Decimal(unique=True, null=True)
    n = attributes.Integer(unique=True, null=True)


class Catalog(ActiveRecord):
    """Indexed version of a model whose data was first saved without indexes."""

    class Meta:
        namespace = "ti"

    title = attributes.Unicode(index=True)
    rank = attributes.Integer(index=True, null=True)
    code = attributes.Unicode(unique=True, null=True)
    body = attributes.Unicode(null=True)


def legacy_catalog() -> type[ActiveRecord]:
    """The same model (namespace and class name) as deployed before its indexes: an
    older definition of it, which repocket takes for a redefinition (a warning)."""
    with pytest.warns(errors.ModelRedefined):
        class Catalog(ActiveRecord):
            __qualname__ = "Catalog"  # the module's Catalog, as it was

            class Meta:
                namespace = "ti"

            title = attributes.Unicode()
            rank = attributes.Integer(null=True)
            code = attributes.Unicode(null=True)
            body = attributes.Unicode(null=True)

    return Catalog


def reading(**values: Any) -> Reading:
    """A Reading with every field None unless given (a null=True field still defaults
    to its type's empty value)."""
    return Reading.create(**{"fl": None, "at": None, "price": None, "n": None, **values})


def lex(value: str | bytes, record_id: Any) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return raw.replace(b"\x00", b"\x00\x01") + b"\x00\x00" + str(record_id).encode()


def members(client: redis.Redis, key: str) -> list[bytes]:
    return list(client.zrange(key, 0, -1))


def index_keys(client: redis.Redis, prefix: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{prefix}:idx:*")} | {
        k.decode() for k in client.scan_iter(match=f"{prefix}:uniq:*")}


# -- entries written by save ------------------------------------------------------------------
def test_save_writes_every_index_entry(client: redis.Redis) -> None:
    born = dt.datetime(2000, 1, 2, 3, 4, 5, tzinfo=UTC)
    a = Account.create(email="ann@x", nick="a\x00nn", age=30, born=born, balance=D("1.5"),
                       tag=b"\xff\x00z", weight=None)
    assert members(client, f"{ACCOUNT}:idx:email") == [lex("ann@x", a.id)]
    assert members(client, f"{ACCOUNT}:idx:nick") == [lex("a\x00nn", a.id)]
    assert members(client, f"{ACCOUNT}:idx:tag") == [lex(b"\xff\x00z", a.id)]
    assert client.zscore(f"{ACCOUNT}:idx:age", str(a.id)) == 30
    assert client.zscore(f"{ACCOUNT}:idx:born", str(a.id)) == born.timestamp() * 1_000_000
    assert client.zscore(f"{ACCOUNT}:idx:balance", str(a.id)) == 1.5
    assert client.hgetall(f"{ACCOUNT}:uniq:email") == {b"ann@x": str(a.id).encode()}
    assert client.smembers(f"{ACCOUNT}:idx:weight:null") == {str(a.id).encode()}
    assert client.zcard(f"{ACCOUNT}:idx:weight") == 0
    for field in ("email", "nick", "age", "born", "balance", "tag"):
        assert not client.sismember(f"{ACCOUNT}:idx:{field}:null", str(a.id))
    # no index for the field that asks for none
    assert not any(":note" in key for key in index_keys(client, ACCOUNT))
    assert Account.objects.get(nick="a\x00nn") == a
    assert Account.objects.get(tag=b"\xff\x00z") == a
    assert Account.objects.get(born=born.astimezone(dt.timezone(dt.timedelta(hours=9)))) == a


def test_null_values_are_indexed_so_isnull_works(client: redis.Redis) -> None:
    a = Account.create(email="a@x", nick=None, age=None)
    b = Account.create(email="b@x", nick="bee", age=0)
    assert client.smembers(f"{ACCOUNT}:idx:nick:null") == {str(a.id).encode()}
    assert client.smembers(f"{ACCOUNT}:idx:age:null") == {str(a.id).encode()}
    assert Account.objects.filter(nick__isnull=True).ids() == [a.id]
    assert Account.objects.filter(nick=None).ids() == [a.id]
    assert Account.objects.filter(nick__isnull=False).ids() == [b.id]
    assert Account.objects.filter(age__isnull=True).count() == 1
    assert Account.objects.filter(age=0).ids() == [b.id]  # 0 is not null
    assert "idx:nick:null" in Account.objects.filter(nick__isnull=True).explain()["chosen"]
    a.nick, b.nick = "now", None
    a.save()
    b.save()
    assert client.smembers(f"{ACCOUNT}:idx:nick:null") == {str(b.id).encode()}
    assert Account.objects.filter(nick__isnull=True).ids() == [b.id]
    assert Account.objects.filter(nick="now").ids() == [a.id]
    assert members(client, f"{ACCOUNT}:idx:nick") == [lex("now", a.id)]


@pytest.mark.parametrize("loaded", [False, True], ids=["same-instance", "loaded-copy"])
def test_update_moves_the_record_between_entries(client: redis.Redis, loaded: bool) -> None:
    a = Account.create(email="a@x", nick="ann", age=30, weight=None)
    other = Account.create(email="o@x", nick="ann", age=30, weight=1.0)
    record = Account.objects.get(id=a.id) if loaded else a
    record.nick, record.age, record.weight, record.email = "bob", None, 2.5, "new@x"
    record.save()
    rid = str(a.id).encode()
    assert members(client, f"{ACCOUNT}:idx:nick") == sorted(
        [lex("bob", a.id), lex("ann", other.id)])
    assert client.zscore(f"{ACCOUNT}:idx:age", rid) is None
    assert client.sismember(f"{ACCOUNT}:idx:age:null", rid)
    assert client.zscore(f"{ACCOUNT}:idx:weight", rid) == 2.5
    assert not client.sismember(f"{ACCOUNT}:idx:weight:null", rid)
    assert client.hgetall(f"{ACCOUNT}:uniq:email") == {b"new@x": rid,
                                                        b"o@x": str(other.id).encode()}
    assert members(client, f"{ACCOUNT}:idx:email") == sorted(
        [lex("new@x", a.id), lex("o@x", other.id)])
    assert Account.objects.filter(nick="ann").ids() == [other.id]
    assert Account.objects.filter(nick="bob").ids() == [a.id]
    assert Account.objects.filter(age=30).ids() == [other.id]
    assert Account.objects.filter(weight__gt=2).ids() == [a.id]
    assert Account.objects.filter(email="a@x").count() == 0
    assert Account.objects.get(email="new@x") == a
    # the old unique value is free again
    assert Account.create(email="a@x").email == "a@x"
    # another update, back to the first values
    record.nick, record.age = "ann", 31
    record.save()
    assert Account.objects.filter(nick="ann").count() == 2
    assert Account.objects.filter(age__gte=31).ids() == [a.id]
    assert client.zscore(f"{ACCOUNT}:idx:age", rid) == 31
    assert not client.sismember(f"{ACCOUNT}:idx:age:null", rid)


def test_saves_of_stale_copies_keep_entries_right(client: redis.Redis) -> None:
    a = Account.create(email="a@x", nick="ann", age=1)
    one = Account.objects.get(id=a.id)
    two = Account.objects.get(id=a.id)
    one.nick = "x"
    one.save()
    two.age = 2  # two still believes nick is 'ann'; its save changes only age
    two.save()
    assert members(client, f"{ACCOUNT}:idx:nick") == [lex("x", a.id)]
    two.nick = "y"
    two.save()
    assert members(client, f"{ACCOUNT}:idx:nick") == [lex("y", a.id)]
    assert Account.objects.filter(nick__in=["ann", "x"]).count() == 0
    assert Account.objects.get(nick="y").age == 2
    a.email = "b@x"  # the first instance, staler still
    a.save()
    assert client.hgetall(f"{ACCOUNT}:uniq:email") == {b"b@x": str(a.id).encode()}
    assert Account.objects.get(nick="y").email == "b@x"


def test_delete_removes_every_entry(client: redis.Redis) -> None:
    a = Account.create(email="a@x", nick="ann", age=1, born=None, tag=b"t")
    b = Account.create(email="b@x", nick="ann", age=1)
    keys_before = index_keys(client, ACCOUNT)
    a.delete()
    rid = str(a.id).encode()
    for key in index_keys(client, ACCOUNT):
        kind = client.type(key)
        if kind == b"zset":
            assert all(rid not in m for m in members(client, key)), key
        elif kind == b"set":
            assert rid not in client.smembers(key), key
        else:
            assert rid not in client.hvals(key), key
    assert client.hgetall(f"{ACCOUNT}:uniq:email") == {b"b@x": str(b.id).encode()}
    assert Account.objects.filter(nick="ann").ids() == [b.id]
    assert Account.objects.filter(born__isnull=True).ids() == [b.id]
    b.delete()
    assert index_keys(client, ACCOUNT) == set()  # empty sets and hashes vanish
    assert keys_before  # (there were some)
    assert Account.create(email="a@x").email == "a@x"


# -- unique ------------------------------------------------------------------------------------
def test_unique_violation_names_model_field_value_and_writes_nothing(client: redis.Redis) -> None:
    first = Account.create(email="dup@x", nick="one")
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as caught:
        Account.create(email="dup@x", nick="two", age=5)
    error = caught.value
    assert (error.model, error.field, error.value) == ("Account", "email", "dup@x")
    assert error.owner == str(first.id)
    assert "Account" in str(error) and "email" in str(error) and "dup@x" in str(error)
    assert snapshot(client) == before
    # an update into a taken value is refused too, and writes nothing
    second = Account.create(email="second@x", nick="two")
    before = snapshot(client)
    second.email, second.nick = "dup@x", "changed"
    with pytest.raises(errors.UniqueViolation):
        second.save()
    assert snapshot(client) == before
    assert Account.objects.get(id=second.id).nick == "two"
    # saving a record with its own unique value is fine
    first.nick = "uno"
    first.save()
    assert Account.objects.get(email="dup@x").nick == "uno"


def test_unique_allows_many_nulls(client: redis.Redis) -> None:
    reading(n=None)
    reading(n=None)
    reading(n=1)
    with pytest.raises(errors.UniqueViolation):
        reading(n=1)
    assert Reading.objects.filter(n__isnull=True).count() == 2
    assert client.hgetall("repocket:ti:Reading:uniq:n") == {
        b"1": str(Reading.objects.get(n=1).id).encode()}


def test_unique_together(client: redis.Redis) -> None:
    a = Membership.create(org="o1", user="u1", role="admin")
    Membership.create(org="o1", user="u2")
    Membership.create(org="o2", user="u1")
    assert client.hlen("repocket:ti:Membership:uniq:org+user") == 3
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as caught:
        Membership.create(org="o1", user="u1")
    assert caught.value.model == "Membership"
    assert caught.value.field == "org,user"
    assert caught.value.value == ["o1", "u1"]
    assert caught.value.owner == str(a.id)
    assert "o1" in str(caught.value) and "u1" in str(caught.value)
    assert snapshot(client) == before
    a.role = "member"  # its own pair is not a conflict
    a.save()
    moved = Membership.objects.get(org="o2", user="u1")
    moved.org = "o1"
    with pytest.raises(errors.UniqueViolation):
        moved.save()
    assert snapshot(client) != before  # (only a's role changed)
    moved.org, moved.user = "o1", "u3"
    moved.save()
    Membership.create(org="o2", user="u1")  # the pair it left is free
    assert Membership.objects.count() == 4


@pytest.mark.parametrize(("field", "first", "equal"), [
    ("fl", -0.0, 0.0),
    ("at", dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
     dt.datetime(2024, 1, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("price", D("1.0"), D("1.00")),
], ids=["float-zero", "datetime-offset", "decimal-digits"])
def test_unique_field_lookup_finds_equal_values_written_differently(
        client: redis.Redis, field: str, first: Any, equal: Any) -> None:
    record = reading(**{field: first})
    assert first == equal
    assert Reading.objects.filter(**{field: first}).ids() == [record.id]
    assert Reading.objects.filter(**{field: equal}).ids() == [record.id]
    assert Reading.objects.get(**{field: equal}) == record


@pytest.mark.parametrize(("field", "first", "equal"), [
    ("fl", -0.0, 0.0),
    ("at", dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
     dt.datetime(2024, 1, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("price", D("1.0"), D("1.00")),
], ids=["float-zero", "datetime-offset", "decimal-digits"])
def test_unique_refuses_an_equal_value_written_differently(
        client: redis.Redis, field: str, first: Any, equal: Any) -> None:
    reading(**{field: first})
    with pytest.raises(errors.UniqueViolation):
        reading(**{field: equal})
    assert Reading.objects.count() == 1


def _race(url: str, barrier: Any, results: Any, worker: int, rounds: int) -> None:
    configure.connection_pool(url=url)
    for r in range(rounds):
        barrier.wait(timeout=30)
        try:
            Account.create(email=f"race{r}@x", nick=f"w{worker}")
            results.put((r, worker, "won"))
        except errors.UniqueViolation:
            results.put((r, worker, "lost"))


def test_processes_racing_for_one_unique_value_exactly_one_wins(client: redis.Redis,
                                                                redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers, rounds = 4, 25
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [context.Process(target=_race, args=(redis_url, barrier, results, w, rounds))
                 for w in range(workers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in range(workers * rounds)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    for r in range(rounds):
        won = [w for rr, w, what in outcomes if rr == r and what == "won"]
        assert len(won) == 1, (r, won)
        stored = Account.objects.filter(email=f"race{r}@x")
        assert len(stored) == 1 and stored[0].nick == f"w{won[0]}"
    assert Account.objects.count() == rounds
    assert client.hlen(f"{ACCOUNT}:uniq:email") == rounds
    assert client.zcard(f"{ACCOUNT}:idx:nick") == rounds


# -- reindex ---------------------------------------------------------------------------------------
def _check_catalog_index(client: redis.Redis) -> None:
    """Every record is found by its current values, and every entry names a current value."""
    prefix = "repocket:ti:Catalog"
    records = {r.id: r for r in Catalog.objects.all()}
    assert len(records) == client.scard(f"{prefix}:ids")
    assert Catalog.objects.filter(title__startswith="").count() == len(records)
    for record in records.values():
        assert record.id in Catalog.objects.filter(title=record.title).ids()
        if record.rank is None:
            assert client.sismember(f"{prefix}:idx:rank:null", str(record.id))
        else:
            assert record.id in Catalog.objects.filter(rank=record.rank).ids()
        if record.code is not None:
            assert Catalog.objects.get(code=record.code) == record
    for member in members(client, f"{prefix}:idx:title"):
        value, _, rid = member.rpartition(b"\x00\x00")
        record = records.get(uuid.UUID(rid.decode()))
        assert record is not None and record.title.encode() == value, member
    for rid, score in client.zrange(f"{prefix}:idx:rank", 0, -1, withscores=True):
        record = records.get(uuid.UUID(rid.decode()))
        assert record is not None and record.rank == score, rid
    for rid in client.smembers(f"{prefix}:idx:rank:null"):
        record = records.get(uuid.UUID(rid.decode()))
        assert record is not None and record.rank is None
    codes = {code: rid for code, rid in client.hgetall(f"{prefix}:uniq:code").items()}
    assert codes == {r.code.encode(): str(r.id).encode()
                     for r in records.values() if r.code is not None}
    titles = [r.title for r in records.values()]
    for title in set(titles[:20]):
        assert Catalog.objects.filter(title=title).count() == titles.count(title)


def test_reindex_builds_the_index_of_data_saved_before_it(client: redis.Redis,
                                                          roundtrips: RoundTrips) -> None:
    legacy = legacy_catalog()
    assert legacy._meta.prefix == Catalog._meta.prefix
    for i in range(300):
        legacy.create(title=f"title{i % 37}", rank=None if i % 10 == 0 else i % 50,
                      code=f"c{i}" if i % 3 else None)
    assert index_keys(client, "repocket:ti:Catalog") == set()
    assert Catalog.objects.filter(title="title1").count() == 0  # no entries yet
    Catalog.objects.reindex(batch_size=1)  # loads the script
    client.delete(*index_keys(client, "repocket:ti:Catalog"))
    roundtrips.reset()
    report = Catalog.objects.reindex(batch_size=40)
    assert report.indexed == 300 and report.conflicts == []
    assert roundtrips.count >= 5, "one batch is one bounded script call"
    assert Catalog.objects.filter(title="title1").count() == len(range(1, 300, 37))
    assert Catalog.objects.filter(rank__isnull=True).count() == 30
    assert Catalog.objects.filter(rank__gte=45).count() == sum(
        1 for i in range(300) if i % 10 and i % 50 >= 45)
    _check_catalog_index(client)
    again = Catalog.objects.reindex(batch_size=1000)  # idempotent
    assert again.indexed == 300
    _check_catalog_index(client)


def test_reindex_reports_unique_values_held_twice(client: redis.Redis) -> None:
    legacy = legacy_catalog()
    first = legacy.create(title="a", code="same")
    second = legacy.create(title="b", code="same")
    legacy.create(title="c", code="other")
    report = Catalog.objects.reindex()
    assert report.indexed == 2
    assert len(report.conflicts) == 1
    fields, value, holder, other = report.conflicts[0]
    assert fields == ["code"] and value == b"same"
    assert {holder, other} == {str(first.id), str(second.id)}
    assert Catalog.objects.filter(code="same").count() == 1
    with pytest.raises(errors.UniqueViolation):
        Catalog.create(title="d", code="same")


def test_reindex_while_the_application_writes(client: redis.Redis) -> None:
    legacy = legacy_catalog()
    for i in range(400):
        legacy.create(title=f"t{i % 23}", rank=i % 40 or None, code=f"c{i}")
    ids = [uuid.UUID(i.decode()) for i in client.smembers("repocket:ti:Catalog:ids")]
    stop = threading.Event()
    failures: list[BaseException] = []
    writes = [0]

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                action = rng.random()
                if action < 0.7:
                    record = Catalog.objects.get(id=rng.choice(ids))
                    if record is None:
                        continue
                    record.title = f"t{rng.randrange(30)}"
                    record.rank = rng.choice([None, rng.randrange(60)])
                    record.code = rng.choice([None, f"w{seed}-{writes[0]}", record.code])
                    try:
                        record.save()
                    except errors.DoesNotExist:
                        continue  # the other writer deleted it since the get: not brought back
                elif action < 0.85:
                    Catalog.create(title=f"new{rng.randrange(5)}", rank=rng.randrange(9),
                                   code=f"n{seed}-{writes[0]}")
                else:
                    victim = Catalog.objects.get(id=rng.choice(ids))
                    if victim is not None:
                        victim.delete()
                writes[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    try:
        while writes[0] < 5 and not failures:  # the writers are running
            threading.Event().wait(0.005)
        started_at = writes[0]
        reports = [Catalog.objects.reindex(batch_size=15)]
        during = writes[0] - started_at
        reports.append(Catalog.objects.reindex(batch_size=15))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures
    assert during > 5, "the writers ran alongside the reindex"
    assert all(report.conflicts == [] for report in reports)
    _check_catalog_index(client)


def test_reindex_after_writes_that_bypassed_the_index_leaves_no_stale_entries(
        client: redis.Redis) -> None:
    """A process still running the model without indexes changes records after the
    index was built; the next reindex must leave no entry answering for old values."""
    legacy = legacy_catalog()
    for i in range(5):
        Catalog.create(title=f"old{i}", rank=i, code=f"c{i}")
    for record in legacy.objects.all():
        record.title = record.title.replace("old", "new")
        record.rank = record.rank + 100
        record.save()
    Catalog.objects.reindex()
    assert Catalog.objects.filter(title__startswith="new").count() == 5
    assert Catalog.objects.filter(title__startswith="old").count() == 0
    assert Catalog.objects.filter(title="old1").ids() == []
    assert Catalog.objects.filter(rank__lt=100).count() == 0
    _check_catalog_index(client)


def test_an_indexed_float_cannot_allow_nan() -> None:
    # NaN has no score: a save could not index it, so the model is refused up front
    with pytest.raises(errors.RepocketActiveRecordDefinitionError, match="allow_nan"):
        class Sensor(ActiveRecord):
            class Meta:
                namespace = "ti"

            value = attributes.Float(allow_nan=True, index=True, null=True)

    class Gauge(ActiveRecord):  # NaN without an index is fine
        class Meta:
            namespace = "ti"

        value = attributes.Float(allow_nan=True)

    assert Gauge(value=float("nan")).value != Gauge(value=float("nan")).value
