"""TTL (issue 12 item 5): records with a deadline, index-consistent after it, sync and async.

Deadlines in the past are made by saving with a 1 ms TTL, then waiting a few ms (never an
assertion about how long anything took); live ones use TTLs of minutes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from repocket import KEEP_TTL, ActiveRecord, F, attributes, configure, errors
from repocket.core import keys as keyspace
from repocket.core.luagen import SWEEP_PAGE
from repocket.core.ops import MAX_TTL
from repocket.exec.sync import execute
from repocket.tools.check import compile_audit_keys
from tests.conftest import RoundTrips, snapshot

TINY = 0.001  # a deadline 1 ms after the save: past once `lapse()` returns


def lapse() -> None:
    """Let a TINY deadline pass (Redis' clock ticks in ms)."""
    time.sleep(0.005)


class Session(ActiveRecord):
    class Meta:
        namespace = "tests.ttl"

    token = attributes.Unicode(unique=True)
    user = attributes.Unicode(index=True)
    hits = attributes.Integer(index=True, null=True)
    note = attributes.Unicode()
    log = attributes.ByteStream()


class Cached(ActiveRecord):
    class Meta:
        namespace = "tests.ttl"
        ttl = 60

    key = attributes.Unicode(unique=True)
    value = attributes.Integer(index=True)


class Plain(ActiveRecord):  # no index, no unique: nothing kept for the sweep
    class Meta:
        namespace = "tests.ttl"

    text = attributes.Unicode()


def deadlines(model: type[ActiveRecord]) -> str:
    return keyspace.deadlines_key(model._meta.prefix)


def kept(model: type[ActiveRecord]) -> str:
    return keyspace.expiry_entries_key(model._meta.prefix)


def model_keys(client: redis.Redis, model: type[ActiveRecord]) -> set[bytes]:
    return set(client.scan_iter(match=model._meta.prefix + ":*"))


def assert_clean(model: type[ActiveRecord]) -> None:
    report = model.objects.check()
    assert report.ok, report.problems


# -- the API -----------------------------------------------------------------------------------
def test_save_with_ttl_sets_a_deadline_that_ttl_reads_and_persist_clears(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    session = Session(token="t1", user="ann", log=b"x")
    roundtrips.reset()
    session.save(ttl=300)
    assert roundtrips.count == 1
    roundtrips.reset()
    left = session.ttl()
    assert roundtrips.count == 1
    assert left is not None and 290 < left <= 300
    hash_key = session._key()
    expires = client.pexpiretime(hash_key)
    assert client.zscore(deadlines(Session), str(session.id)) == expires
    assert client.pexpiretime(hash_key + ":field:log") == expires  # the stream expires too
    assert client.hexists(kept(Session), str(session.id))
    assert_clean(Session)
    roundtrips.reset()
    assert session.persist() is True
    assert roundtrips.count == 1
    assert session.ttl() is None
    assert client.pexpiretime(hash_key) == -1 and client.pexpiretime(hash_key + ":field:log") == -1
    assert client.zcard(deadlines(Session)) == 0 and client.hlen(kept(Session)) == 0
    assert session.persist() is False
    assert_clean(Session)


def test_a_save_without_ttl_keeps_the_deadline_and_none_clears_it(client: redis.Redis) -> None:
    session = Session.create(token="t1", user="ann", ttl=300)
    session.note = "changed"
    session.save()
    left = session.ttl()
    assert left is not None and 290 < left <= 300
    fresh = Session.objects.get(id=session.id)
    assert fresh is not None
    fresh.hits = 3
    fresh.save(ttl=KEEP_TTL)
    assert fresh.ttl() is not None
    fresh.save(ttl=None)
    assert fresh.ttl() is None and client.pexpiretime(fresh._key()) == -1
    assert_clean(Session)


def test_meta_ttl_is_refreshed_by_every_save_unless_told_otherwise(client: redis.Redis) -> None:
    record = Cached.objects.create(key="k", value=1)
    left = record.ttl()
    assert left is not None and 50 < left <= 60
    record.save(ttl=600)  # an explicit ttl wins
    assert record.ttl() > 500  # type: ignore[operator]
    record.value = 2
    record.save(ttl=KEEP_TTL)
    assert record.ttl() > 500  # type: ignore[operator]
    record.value = 3
    record.save()  # Meta.ttl again
    left = record.ttl()
    assert left is not None and left <= 60
    record.save(ttl=None)
    assert record.ttl() is None
    assert_clean(Cached)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "10", 10**30, 1e16,
                                 MAX_TTL + 1])
def test_a_bad_ttl_is_refused_naming_model_and_field_and_writes_nothing(
        client: redis.Redis, bad: Any) -> None:
    session = Session.create(token="t1", user="ann")
    before = snapshot(client)
    with pytest.raises(errors.ValidationError) as raised:
        session.save(ttl=bad)
    assert (raised.value.model, raised.value.field) == ("Session", "ttl")
    with pytest.raises(errors.ValidationError):
        Session.objects.bulk_create([Session(token="t2")], ttl=bad)
    assert snapshot(client) == before


def test_the_longest_ttl_is_kept_exactly(client: redis.Redis) -> None:
    """Deadlines are ms in Lua doubles (exact below 2**53): the longest ttl accepted still
    gives the hash's expiry and the deadline the same millisecond (a clean check)."""
    session = Session.create(token="t1", ttl=MAX_TTL)
    left = session.ttl()
    assert left is not None and MAX_TTL - 60 < left <= MAX_TTL
    assert_clean(Session)


@pytest.mark.parametrize("bad", [0, 10**30, MAX_TTL + 1])
def test_a_bad_meta_ttl_is_refused_when_the_model_is_defined(bad: Any) -> None:
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        class Broken(ActiveRecord):
            class Meta:
                namespace = "tests.ttl.broken"
                ttl = bad

            name = attributes.Unicode()


def test_ttl_and_persist_of_a_gone_record_raise_does_not_exist(client: redis.Redis) -> None:
    session = Session.create(token="t1", ttl=TINY)
    lapse()
    before = snapshot(client)
    with pytest.raises(errors.DoesNotExist):
        session.ttl()
    with pytest.raises(errors.DoesNotExist):
        session.persist()
    assert snapshot(client) == before


# -- after the deadline --------------------------------------------------------------------------
def test_after_the_deadline_no_read_returns_counts_or_orders_the_record(
        client: redis.Redis) -> None:
    keep = [Session.create(token=f"keep{i}", user="ann", hits=i, note="n") for i in range(3)]
    gone = [Session.create(token=f"gone{i}", user="ann", hits=10 + i, note="n", log=b"l",
                           ttl=TINY) for i in range(3)]
    lapse()
    ids = {s.id for s in keep}
    assert Session.objects.get(id=gone[0].id) is None
    assert Session.objects.get(token="gone0") is None
    assert Session.objects.get_many([gone[0].id, keep[0].id]) == [None, keep[0]]
    assert {s.id for s in Session.objects.filter(user="ann")} == ids
    assert Session.objects.filter(user="ann").count() == 3
    assert Session.objects.all().count() == 3
    assert not Session.objects.filter(hits__gte=10).exists()
    assert Session.objects.filter(hits__gte=10).count() == 0
    assert [s.hits for s in Session.objects.order_by("-hits")] == [2, 1, 0]
    assert [s.hits for s in Session.objects.order_by("-hits")[:2]] == [2, 1]
    assert [s.hits for s in Session.objects.filter(note="n").order_by("hits")] == [0, 1, 2]
    assert {s.id for s in Session.objects.all().iterator(chunk_size=2)} == ids
    assert set(Session.objects.filter(token__in=["gone1", "keep1"]).values_list(
        "token", flat=True)) == {"keep1"}
    assert Session.objects.exclude(hits=0).count() == 2
    assert {s.id for s in Session.objects.filter(token__startswith="g")} == set()
    assert_clean(Session)  # before any write swept them


def test_memory_is_reclaimed_untouched_and_the_next_write_sweeps_the_entries(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    # one call: a second create could find the first past its deadline, and sweep it
    gone = Session.objects.bulk_create(
        [Session(token=f"gone{i}", user="bob", hits=i, log=b"l") for i in range(3)], ttl=TINY)
    lapse()
    # Redis expired every hash and stream by itself: no client touched the model
    assert all(client.exists(s._key(), s._key() + ":field:log") == 0 for s in gone)
    assert client.scard(Session._meta.ids_key) == 3  # what the sweep is for
    assert_clean(Session)
    roundtrips.reset()
    survivor = Session.create(token="other", user="carl")  # any write sweeps
    assert roundtrips.count == 1
    index_keys = {key.encode() for key in Session._meta.model_keys}
    assert model_keys(client, Session) - index_keys == {
        Session._meta.ids_key.encode(), survivor._key().encode()}  # no ttl keys left
    assert client.smembers(Session._meta.ids_key) == {str(survivor.id).encode()}
    assert client.zcard(deadlines(Session)) == 0 and client.hlen(kept(Session)) == 0
    assert client.hkeys(keyspace.unique_key(Session._meta.prefix, ("token",))) == [b"other"]
    assert client.zcard(keyspace.index_key(Session._meta.prefix, "user")) == 1
    assert client.zcard(keyspace.index_key(Session._meta.prefix, "hits")) == 0
    assert client.smembers(keyspace.null_key(Session._meta.prefix, "hits")) == {
        str(survivor.id).encode()}
    assert_clean(Session)


def test_a_write_sweeps_a_bounded_page_and_deletes_sweep_too(client: redis.Redis) -> None:
    many = SWEEP_PAGE * 2 + 5
    Session.objects.bulk_create([Session(token=f"t{i}", user="u", hits=i) for i in range(many)],
                                ttl=TINY)
    lapse()
    assert Session.objects.count() == 0
    one = Session.create(token="one")
    assert client.zcard(deadlines(Session)) == many - SWEEP_PAGE
    assert one.delete() == 1  # its hash (an empty stream has no key)
    assert client.zcard(deadlines(Session)) == many - 2 * SWEEP_PAGE
    assert_clean(Session)
    Session.create(token="two")
    assert client.zcard(deadlines(Session)) == 0
    assert client.scard(Session._meta.ids_key) == 1
    assert_clean(Session)


def test_a_unique_value_is_free_after_the_deadline(client: redis.Redis,
                                                    roundtrips: RoundTrips) -> None:
    old = Session.create(token="shared", user="ann", ttl=TINY)
    lapse()
    roundtrips.reset()
    new = Session.create(token="shared", user="bob")
    assert roundtrips.count == 1
    assert Session.objects.get(token="shared") == new
    assert Session.objects.get(id=old.id) is None
    assert_clean(Session)


def test_get_or_create_finds_an_expired_record_absent_and_creates_one(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    old, created = Session.objects.get_or_create(token="g", defaults={"user": "ann"})
    assert created
    old.save(ttl=TINY)
    lapse()
    roundtrips.reset()
    new, created = Session.objects.get_or_create(token="g", defaults={"user": "bob"})
    assert roundtrips.count == 1
    assert created and new.id != old.id and new.user == "bob"
    found, created = Session.objects.get_or_create(token="g")
    assert not created and found.id == new.id
    assert_clean(Session)


def test_a_stale_instance_of_an_expired_record_cannot_save_it_back(client: redis.Redis) -> None:
    session = Session.create(token="s", user="ann", ttl=TINY)
    lapse()
    session.note = "late"
    before = snapshot(client)
    with pytest.raises(errors.DoesNotExist):
        session.save()
    assert snapshot(client) == before
    session.save(force_insert=True)  # explicit: a new life, without a deadline
    assert session.ttl() is None
    assert Session.objects.get(token="s") == session
    assert_clean(Session)


def test_deleting_an_expired_record_deletes_nothing_and_sweeps_it(client: redis.Redis) -> None:
    session = Session.create(token="s", user="ann", log=b"l", ttl=TINY)
    live = Session.create(token="live", user="ann", log=b"l", ttl=300)
    lapse()
    assert session.delete() == 0
    assert client.zrange(deadlines(Session), 0, -1) == [str(live.id).encode()]
    assert live.delete() == 2
    assert client.zcard(deadlines(Session)) == 0 and client.hlen(kept(Session)) == 0
    assert model_keys(client, Session) <= {Session._meta.ids_key.encode()}
    assert_clean(Session)


def test_streams_keep_the_deadline_through_sets_and_appends(client: redis.Redis) -> None:
    session = Session.create(token="s", user="ann", ttl=300)  # an empty stream: no key yet
    stream = session._key() + ":field:log"
    assert not client.exists(stream)
    session.append_log(b"first")  # creates the key: it gets the record's deadline
    expires = client.pexpiretime(session._key())
    assert client.pexpiretime(stream) == expires
    session.log = b"replaced"  # a SET, which would clear a key's expiry
    session.save()
    assert client.pexpiretime(stream) == expires
    assert_clean(Session)


def test_a_model_without_indexes_expires_too(client: redis.Redis) -> None:
    gone = Plain.create(text="a", ttl=TINY)
    Plain.create(text="b")
    lapse()
    assert [p.text for p in Plain.objects.all()] == ["b"]
    Plain.create(text="c")
    assert client.scard(Plain._meta.ids_key) == 2
    assert not client.exists(kept(Plain))
    assert Plain.objects.get(id=gone.id) is None
    assert_clean(Plain)


def test_reads_of_a_model_without_deadlines_read_no_clock(client: redis.Redis) -> None:
    Session.create(token="a", user="ann")
    client.config_resetstat()
    Session.objects.filter(user="ann").count()
    Session.create(token="b", user="ann")
    stats = client.info("commandstats")
    assert "cmdstat_time" not in stats and "cmdstat_zscore" not in stats


# -- the checker ---------------------------------------------------------------------------------
def test_check_reports_and_repairs_a_hash_expiring_off_its_deadline(client: redis.Redis) -> None:
    session = Session.create(token="s", user="ann", ttl=300)
    client.pexpire(session._key(), 100_000)  # another tool moved it
    report = Session.objects.check()
    assert [p.kind for p in report.problems] == ["expiry-mismatch"]
    assert Session.objects.check(repair=True).repaired == 1
    assert_clean(Session)
    client.hdel(kept(Session), str(session.id))
    assert [p.kind for p in Session.objects.check().problems] == ["expiry-mismatch"]
    Session.objects.check(repair=True)
    assert_clean(Session)


# -- concurrency ---------------------------------------------------------------------------------
def test_concurrent_writes_while_records_expire_leave_no_torn_state(client: redis.Redis) -> None:
    errors_seen: list[BaseException] = []
    tokens = [f"tok{i}" for i in range(12)]

    def writer(n: int) -> None:
        try:
            for i in range(40):
                token = tokens[(n * 7 + i) % len(tokens)]
                try:
                    if i % 3 == 0:
                        Session.create(token=token, user=f"u{n}", hits=i, log=b"x", ttl=TINY)
                    elif i % 3 == 1:
                        Session.create(token=token, user=f"u{n}", hits=i, ttl=0.02)
                    else:
                        found = Session.objects.get(token=token)
                        if found is not None:
                            found.hits = i
                            found.save()
                except (errors.UniqueViolation, errors.DoesNotExist):
                    pass  # raced with another writer or with the deadline: nothing written
        except BaseException as exc:
            errors_seen.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors_seen == []
    assert_clean(Session)
    time.sleep(0.05)  # every deadline passed
    assert Session.objects.count() == 0
    assert_clean(Session)
    Session.create(token="final")
    Session.create(token="final2")  # two pages sweep every leftover (at most 12 tokens)
    assert client.zcard(deadlines(Session)) == 0
    assert client.scard(Session._meta.ids_key) == 2
    assert_clean(Session)


# -- asyncio -------------------------------------------------------------------------------------
def test_async_twins(client: redis.Redis) -> None:
    async def main() -> None:
        try:
            session = await Session.acreate(token="a", user="ann", ttl=300)
            left = await session.attl()
            assert left is not None and left > 290
            assert await session.apersist() is True
            assert await session.attl() is None
            await session.asave(ttl=TINY)
            await asyncio.sleep(0.005)
            assert await Session.objects.aget(id=session.id) is None
            assert await Session.objects.filter(user="ann").acount() == 0
            again = await Session.objects.acreate(token="a", user="bob", ttl=300)
            assert (await Session.objects.aget(token="a")) == again
            await Session.objects.abulk_create([Session(token="b")], ttl=TINY)
            await asyncio.sleep(0.005)
            assert await Session.objects.filter(token="b").acount() == 0
            with pytest.raises(errors.DoesNotExist):
                await session.attl()
        finally:
            await configure.aclose()

    asyncio.run(main())
    assert_clean(Session)


def test_members_of_the_deadline_set_that_are_not_ids_are_dropped(client: redis.Redis) -> None:
    """Another tool's members never become key names, nor block the sweep's page."""
    gone = Session.create(token="gone", ttl=TINY)
    client.zadd(deadlines(Session), {f"not-a-uuid-{i}": i for i in range(SWEEP_PAGE)})
    lapse()
    Session.create(token="x")
    assert client.zrange(deadlines(Session), 0, -1) == [str(gone.id).encode()]
    Session.create(token="y")  # the page is free for real records again
    assert client.zcard(deadlines(Session)) == 0
    assert set(client.scan_iter(match="*not-a-uuid*")) == set()
    assert_clean(Session)


# -- QuerySet.update() -----------------------------------------------------------------------------
def test_update_skips_expired_records_and_keeps_the_values_the_sweep_reads(
        client: redis.Redis) -> None:
    gone = Session.create(token="gone", user="ann", hits=1, ttl=TINY)
    later = Session.create(token="later", user="ann", hits=2, ttl=300)
    lapse()
    assert Session.objects.filter(user="ann").update(hits=F("hits") + 10, note="x") == 1
    assert Session.objects.get(id=gone.id) is None
    assert Session.objects.filter(hits=11).count() == 0
    assert Session.objects.get(id=later.id).hits == 12  # type: ignore[union-attr]
    # the update moved later's entries: its kept values follow, for the sweep after expiry
    assert Session.objects.filter(token="later").update(token="renamed", user="bob") == 1
    client.zadd(deadlines(Session), {str(later.id): 1})  # its deadline passes (long ago)...
    client.delete(later._key())  # ...and Redis expires its hash
    Session.create(token="sweeper")
    assert client.hkeys(keyspace.unique_key(Session._meta.prefix, ("token",))) == [b"sweeper"]
    assert client.zcard(keyspace.index_key(Session._meta.prefix, "user")) == 1
    assert client.zcard(deadlines(Session)) == 0
    assert_clean(Session)


def test_update_by_id_skips_expired_records_and_keeps_the_values_the_sweep_reads(
        client: redis.Redis) -> None:
    """The same through the update-by-id script (a filter that only pins ids)."""
    gone = Session.create(token="gone", user="ann", hits=1, ttl=TINY)
    later = Session.create(token="later", user="ann", hits=2, ttl=300)
    lapse()
    assert Session.objects.filter(id__in=[gone.id, later.id]).update(
        hits=F("hits") + 10, note="x") == 1
    assert Session.objects.filter(id=gone.id).update(hits=5) == 0
    assert Session.objects.get(id=gone.id) is None
    assert Session.objects.filter(hits=11).count() == 0
    assert Session.objects.get(id=later.id).hits == 12  # type: ignore[union-attr]
    assert Session.objects.filter(id=later.id).update(token="renamed", user="bob") == 1
    client.zadd(deadlines(Session), {str(later.id): 1})  # its deadline passes (long ago)...
    client.delete(later._key())  # ...and Redis expires its hash
    Session.create(token="sweeper")
    assert client.hkeys(keyspace.unique_key(Session._meta.prefix, ("token",))) == [b"sweeper"]
    assert client.zcard(keyspace.index_key(Session._meta.prefix, "user")) == 1
    assert client.zcard(deadlines(Session)) == 0
    assert_clean(Session)


def test_a_stream_gone_with_its_record_since_the_scan_is_no_orphan(client: redis.Redis) -> None:
    """The keyspace pass audits the keys a SCAN page listed: a stream that expired (or was
    deleted) with its record in between is not reported as an orphan."""
    session = Session.create(token="s", log=b"l")
    stream = session._key() + ":field:log"
    session.delete()
    fixed, problems = execute(client, compile_audit_keys(Session, [stream], repair=False))
    assert (fixed, problems) == (0, [])
    client.set(stream, b"left behind")
    fixed, problems = execute(client, compile_audit_keys(Session, [stream], repair=False))
    assert [p.kind for p in problems] == ["orphan-stream"]


# -- the change feed and optimistic locking ------------------------------------------------------
class Audited(ActiveRecord):
    class Meta:
        namespace = "tests.ttl"
        changes = True
        optimistic_lock = True

    token = attributes.Unicode(unique=True)
    user = attributes.Unicode(index=True)


def feed(client: redis.Redis) -> list[tuple[str, str]]:
    entries = client.xrange(keyspace.changes_key(Audited._meta.prefix))
    return [(fields[b"op"].decode(), fields[b"id"].decode()) for _, fields in entries]


def test_a_sweep_appends_an_expire_entry_per_record_in_the_same_script(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    first = Audited.create(token="a", user="ann", ttl=TINY)
    lapse()
    roundtrips.reset()
    second = Audited.create(token="a", user="bob")  # takes the value, sweeping the first
    assert roundtrips.count == 1
    assert feed(client) == [("create", str(first.id)), ("expire", str(first.id)),
                            ("create", str(second.id))]
    expired = [c for c in Audited.objects.changes() if c.op == "expire"]
    assert [(c.record_id, c.fields, c.version) for c in expired] == [(first.id, (), None)]
    doomed = Audited.create(token="b", user="carl", ttl=TINY)
    lapse()
    second.delete()  # a delete sweeps too
    assert feed(client)[-3:] == [("create", str(doomed.id)), ("expire", str(doomed.id)),
                                 ("delete", str(second.id))]
    assert_clean(Audited)


def test_optimistic_lock_and_a_deadline(client: redis.Redis) -> None:
    record = Audited.create(token="a", user="ann", ttl=300)
    stale = Audited.objects.get(id=record.id)
    assert stale is not None
    record.user = "bob"
    record.save()  # keeps the deadline, bumps the version
    assert record.ttl() is not None
    stale.user = "carl"
    before = snapshot(client)
    with pytest.raises(errors.StaleRecord):
        stale.save(ttl=None)
    assert snapshot(client) == before
    assert record.ttl() is not None
    assert_clean(Audited)



# -- update() and the unique values of expired records --------------------------------------------
def pinning(model: type[ActiveRecord], records: list[ActiveRecord], by_id: bool) -> Any:
    """The query that pins `records` (their user is 'bob'): a filter by id (the update-by-id
    script) or by a field (the query update script)."""
    if by_id and len(records) == 1:
        return model.objects.filter(id=records[0].id)
    if by_id:
        return model.objects.filter(id__in=[record.id for record in records])
    return model.objects.filter(user="bob")


@pytest.mark.parametrize("by_id", [False, True], ids=["by-field", "by-id"])
@pytest.mark.parametrize("model", [Session, Audited], ids=["plain", "changes"])
def test_update_takes_a_unique_value_an_expired_record_still_claims_and_sweeps_it(
        client: redis.Redis, roundtrips: RoundTrips, model: type[ActiveRecord],
        by_id: bool) -> None:
    """Past its deadline a record holds no unique value (as save and get_or_create treat
    it): update() may assign it, and sweeps the expired record in the same script, as a
    save's sweep does, before its own writes."""
    other = model.create(token="mine", user="bob")
    gone = model.create(token="shared", user="ann", ttl=TINY)  # last: no save sweeps it
    lapse()
    prefix = model._meta.prefix
    assert client.hget(keyspace.unique_key(prefix, ("token",)), "shared")  # still claimed
    assert client.zcard(deadlines(model)) == 1
    roundtrips.reset()
    assert pinning(model, [other], by_id).update(token="shared") == 1
    assert roundtrips.count == 1
    found = model.objects.get(token="shared")
    assert found is not None and found.id == other.id
    # the expired record is gone entirely: hash, entries, claims, id, deadline, kept values
    other_id = str(other.id).encode()
    assert client.hgetall(keyspace.unique_key(prefix, ("token",))) == {b"shared": other_id}
    entries = client.zrange(keyspace.index_key(prefix, "user"), 0, -1)
    assert len(entries) == 1 and entries[0].endswith(other_id)  # bob's entry only
    assert client.smembers(model._meta.ids_key) == {other_id}
    assert client.zcard(deadlines(model)) == 0 and client.hlen(kept(model)) == 0
    assert not client.exists(gone._key())
    if model is Audited:
        assert feed(client) == [("create", str(other.id)), ("create", str(gone.id)),
                                ("expire", str(gone.id)), ("update", str(other.id))]
    assert_clean(model)


@pytest.mark.parametrize("by_id", [False, True], ids=["by-field", "by-id"])
@pytest.mark.parametrize("model", [Session, Audited], ids=["plain", "changes"])
def test_a_refused_update_sweeps_nothing(client: redis.Redis, model: type[ActiveRecord],
                                        by_id: bool) -> None:
    """Every check runs before the first write: two records given the value an expired
    record claims is refused, and the expired record is left for a later sweep."""
    pinned = [model.create(token=f"mine{i}", user="bob") for i in range(2)]
    model.create(token="shared", user="ann", ttl=TINY)  # last: no save sweeps it
    lapse()
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation):
        pinning(model, pinned, by_id).update(token="shared")
    assert snapshot(client) == before
    assert client.zcard(deadlines(model)) == 1
    assert_clean(model)


@pytest.mark.parametrize("by_id", [False, True], ids=["by-field", "by-id"])
def test_a_sweep_checks_the_keys_it_writes_before_the_update_writes(
        client: redis.Redis, by_id: bool) -> None:
    """The expired owner's sweep removes its entry from an index the update itself leaves
    alone: that index's type is checked too, before anything is written."""
    other = Session.create(token="mine", user="bob")
    Session.create(token="shared", user="ann", hits=1, ttl=TINY)  # last: no save sweeps it
    lapse()
    hits_index = keyspace.index_key(Session._meta.prefix, "hits")
    client.delete(hits_index)
    client.set(hits_index, b"not an index")
    before = snapshot(client)
    with pytest.raises(errors.WrongKeyType):
        pinning(Session, [other], by_id).update(token="shared")
    assert snapshot(client) == before
    client.delete(hits_index)
