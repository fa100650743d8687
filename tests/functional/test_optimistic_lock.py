"""Optimistic locking (issue 12 item 4): ``Meta.optimistic_lock`` keeps a version counter in
each record hash; a save or delete from an instance that read an older version raises
StaleRecord and writes nothing, in the same one script call as the write."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
import redis.asyncio

from repocket import ActiveRecord, F, attributes, errors
from repocket.core import keys, luagen
from tests.conftest import RoundTrips, snapshot

VERSION = keys.VERSION_FIELD.encode()


class Counter(ActiveRecord):
    class Meta:
        namespace = "tests.lock"
        optimistic_lock = True

    name = attributes.Unicode(unique=True)
    n = attributes.Integer(index=True)
    note = attributes.Unicode(null=True)
    log = attributes.ByteStream()


class Unlocked(ActiveRecord):
    class Meta:
        namespace = "tests.lock"

    name = attributes.Unicode(unique=True)
    n = attributes.Integer(index=True)
    note = attributes.Unicode(null=True)
    log = attributes.ByteStream()


def stored_version(client: redis.Redis, record: ActiveRecord) -> bytes | None:
    return client.hget(record._key(), VERSION)  # type: ignore[return-value]


def test_create_starts_at_one_and_each_save_bumps_it(client: redis.Redis) -> None:
    counter = Counter(name="a", n=0)
    assert counter.lock_version == 0
    counter.save()
    assert counter.lock_version == 1 and stored_version(client, counter) == b"1"
    counter.n = 1
    counter.save()
    counter.save()  # nothing changed: still a write, the version moves on
    assert counter.lock_version == 3 and stored_version(client, counter) == b"3"
    loaded = Counter.objects.get(id=counter.id)
    assert loaded is not None and loaded.lock_version == 3 and loaded.n == 1
    assert Unlocked.create(name="u", n=0).lock_version is None


def test_a_stale_save_raises_and_writes_nothing(client: redis.Redis,
                                                roundtrips: RoundTrips) -> None:
    first = Counter.create(name="a", n=0)
    second = Counter.objects.get(id=first.id)
    assert second is not None
    first.n = 1
    first.save()
    second.n = 2
    second.note = "lost"
    before = snapshot(client)
    roundtrips.reset()
    with pytest.raises(errors.StaleRecord) as raised:
        second.save()
    assert roundtrips.count == 1  # the check runs inside the save script
    assert snapshot(client) == before
    error = raised.value
    assert (error.model, error.value, error.expected, error.found) == (
        "Counter", str(first.id), 1, 2)
    assert "Counter" in str(error) and str(first.id) in str(error)
    assert second.lock_version == 1  # still stale: it learns nothing from a refusal
    second.refresh_from_db()
    assert (second.n, second.lock_version) == (1, 2)
    second.n = 2
    second.save()
    assert Counter.objects.get(id=first.id).n == 2  # type: ignore[union-attr]
    assert Counter.objects.filter(n=2).count() == 1 and Counter.objects.filter(n=1).count() == 0


def test_one_round_trip_per_save_as_without_the_lock(client: redis.Redis,
                                                     roundtrips: RoundTrips) -> None:
    counter = Counter.create(name="a", n=0)
    Unlocked.create(name="a", n=0)
    roundtrips.reset()
    for n in range(1, 6):
        counter.n = n
        counter.save()
    assert roundtrips.count == 5


def test_the_instance_that_saved_stays_current(client: redis.Redis) -> None:
    counter = Counter.create(name="a", n=0)
    for n in range(1, 4):
        counter.n = n
        counter.save()  # each save learns the version it wrote
    assert counter.lock_version == 4


def test_update_bumps_the_version_of_each_record_it_updates(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    first, second = Counter.create(name="a", n=0), Counter.create(name="b", n=0)
    loaded = Counter.objects.get(id=first.id)
    assert loaded is not None
    roundtrips.reset()
    assert Counter.objects.filter(n=0).update(n=F("n") + 1, note="x") == 2
    assert roundtrips.count == 1
    assert [stored_version(client, r) for r in (first, second)] == [b"2", b"2"]
    loaded.note = "mine"
    with pytest.raises(errors.StaleRecord):  # an update() came in between
        loaded.save()
    loaded.refresh_from_db()
    assert (loaded.n, loaded.lock_version) == (1, 2)
    client.hset(second._key(), VERSION, b"x")
    before = snapshot(client)
    with pytest.raises(errors.StoredDataError):
        Counter.objects.update(n=5)
    assert snapshot(client) == before


def test_a_stale_delete_raises_and_deletes_nothing(client: redis.Redis) -> None:
    first = Counter.create(name="a", n=0, log=b"x")
    second = Counter.objects.get(id=first.id)
    assert second is not None
    first.n = 1
    first.save()
    before = snapshot(client)
    with pytest.raises(errors.StaleRecord) as raised:
        second.delete()
    assert (raised.value.expected, raised.value.found) == (1, 2)
    assert snapshot(client) == before
    first.delete()  # current: deleted
    assert Counter.objects.get(id=first.id) is None and client.keys("*tests.lock:Counter:*-*") == []


def test_a_queryset_delete_is_not_checked(client: redis.Redis) -> None:
    Counter.create(name="a", n=0)
    Counter.create(name="b", n=0)
    assert Counter.objects.filter(n=0).delete() == 2
    assert Counter.objects.count() == 0


def test_force_insert_writes_whatever_version_is_stored(client: redis.Redis) -> None:
    first = Counter.create(name="a", n=0)
    stale = Counter.objects.get(id=first.id)
    assert stale is not None
    first.n = 1
    first.save()
    stale.n = 5
    stale.save(force_insert=True)  # explicit: no check, the version moves on
    assert stale.lock_version == 3 and stored_version(client, stale) == b"3"
    with pytest.raises(errors.StaleRecord):
        first.save()
    Counter.objects.filter(name="a").delete()
    stale.save(force_insert=True)  # re-created after a delete: a new record
    assert stale.lock_version == 1


def test_a_new_instance_with_an_existing_id_is_stale(client: redis.Redis) -> None:
    first = Counter.create(name="a", n=0)
    before = snapshot(client)
    with pytest.raises(errors.StaleRecord) as raised:
        Counter(id=first.id, name="b", n=1).save()  # expects no record: version 0
    assert (raised.value.expected, raised.value.found) == (0, 1)
    assert snapshot(client) == before


def test_bulk_create_starts_each_record_at_one(client: redis.Redis) -> None:
    records = Counter.objects.bulk_create([Counter(name=str(i), n=i) for i in range(5)])
    assert [record.lock_version for record in records] == [1] * 5
    assert [stored_version(client, record) for record in records] == [b"1"] * 5
    taken = Counter(id=records[0].id, name="new", n=0)
    before = snapshot(client)
    with pytest.raises(errors.StaleRecord):
        Counter.objects.bulk_create([Counter(name="x", n=9), taken])
    assert snapshot(client) == before  # the batch is atomic: neither record written


def test_get_or_create_and_update_or_create(client: redis.Redis,
                                            roundtrips: RoundTrips) -> None:
    created, was_created = Counter.objects.get_or_create(name="a", defaults={"n": 1})
    assert was_created and created.lock_version == 1
    roundtrips.reset()
    found, was_created = Counter.objects.get_or_create(name="a")
    assert roundtrips.count == 1
    assert not was_created and found.lock_version == 1
    created.n = 2
    created.save()
    updated, was_created = Counter.objects.update_or_create(name="a", defaults={"n": 3})
    assert not was_created and updated.lock_version == 3 and updated.n == 3
    with pytest.raises(errors.StaleRecord):  # found before the update: stale now
        found.save()


def test_update_or_create_retries_when_a_write_comes_in_between(client: redis.Redis) -> None:
    Counter.create(name="a", n=0)
    real_save = Counter.save
    calls = []

    def save_after_another_write(self: Counter, force_insert: bool = False) -> Any:
        if not calls:  # another process writes between the find and the save
            other = Counter.objects.get(id=self.id)
            assert other is not None
            other.note = "other"
            real_save(other)
        calls.append(1)
        return real_save(self, force_insert)

    Counter.save = save_after_another_write  # type: ignore[method-assign]
    try:
        updated, created = Counter.objects.update_or_create(name="a", defaults={"n": 7})
    finally:
        Counter.save = real_save  # type: ignore[method-assign]
    assert not created and len(calls) == 2  # StaleRecord once, then found again and saved
    fresh = Counter.objects.get(id=updated.id)
    assert fresh is not None and (fresh.n, fresh.note, fresh.lock_version) == (7, "other", 3)


def test_records_loaded_in_part_carry_their_version(client: redis.Redis) -> None:
    first = Counter.create(name="a", n=0)
    partial = Counter.objects.filter(name="a").only("n")[0]
    assert partial.lock_version == 1
    first.note = "x"
    first.save()
    partial.n = 9
    with pytest.raises(errors.StaleRecord):
        partial.save()
    partial.refresh_from_db(["n"])  # part of it: still stale, other fields unread
    with pytest.raises(errors.StaleRecord):
        partial.save()
    partial.refresh_from_db()
    partial.n = 9
    partial.save()
    assert Counter.objects.get(id=first.id).note == "x"  # type: ignore[union-attr]


def test_a_record_saved_before_the_lock_reads_version_zero(client: redis.Redis) -> None:
    old = Counter.create(name="a", n=0)
    client.hdel(old._key(), VERSION)  # as saved before Meta.optimistic_lock was declared
    loaded = Counter.objects.get(id=old.id)
    assert loaded is not None and loaded.lock_version == 0
    loaded.n = 1
    loaded.save()
    assert loaded.lock_version == 1 and Counter.objects.check().ok


def test_a_corrupt_stored_version_is_a_typed_error(client: redis.Redis) -> None:
    counter = Counter.create(name="a", n=0)
    client.hset(counter._key(), VERSION, b"many")
    counter.n = 1
    before = snapshot(client)
    with pytest.raises(errors.StoredDataError) as raised:
        counter.save()
    assert raised.value.key == counter._key() and snapshot(client) == before


def test_the_version_field_is_invisible_to_reads_and_the_checker(client: redis.Redis) -> None:
    counter = Counter.create(name="a", n=0)
    assert set(counter.to_dict()) == {"id", "name", "n", "note", "log"}
    assert Counter.objects.values("name") == [{"name": "a"}]
    report = Counter.objects.check()
    assert report.ok and report.problems == []


def test_a_model_without_the_lock_pays_nothing(client: redis.Redis) -> None:
    record = Unlocked.create(name="a", n=0)
    assert stored_version(client, record) is None
    scripts = luagen.scripts_for(Unlocked)
    for script in (scripts.save, scripts.delete, scripts.get_or_create):
        assert keys.VERSION_FIELD not in script.source and "XADD" not in script.source
    stale = Unlocked.objects.get(id=record.id)
    assert stale is not None
    record.n = 1
    record.save()
    stale.note = "x"
    stale.save()  # last writer wins per field: n stays 1, note is set
    fresh = Unlocked.objects.get(id=record.id)
    assert fresh is not None and (fresh.n, fresh.note) == (1, "x")


def test_defining_the_options_checks_them() -> None:
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        type("BadLock", (ActiveRecord,), {"__module__": __name__, "Meta": type(
            "Meta", (), {"optimistic_lock": "yes"})})
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        type("BadLock", (ActiveRecord,), {"__module__": __name__,
                                          "lock_version": attributes.Integer()})


def test_racing_threads_lose_no_increment(client: redis.Redis) -> None:
    counter = Counter.create(name="race", n=0)
    threads, increments = 8, 25
    stale_seen = []

    def worker() -> None:
        for _ in range(increments):
            while True:
                mine = Counter.objects.get(id=counter.id)
                assert mine is not None
                mine.n += 1
                try:
                    mine.save()
                    break
                except errors.StaleRecord:
                    stale_seen.append(1)  # another thread saved first: read again, retry

    running = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    final = Counter.objects.get(id=counter.id)
    assert final is not None
    assert final.n == threads * increments
    assert final.lock_version == 1 + threads * increments
    assert Counter.objects.filter(n=threads * increments).count() == 1  # index in step


# -- asyncio ----------------------------------------------------------------------------------


async def test_async_twins(aclient: Any, client: redis.Redis) -> None:
    first = await Counter.objects.acreate(name="a", n=0)
    assert first.lock_version == 1
    second = await Counter.objects.aget(id=first.id)
    assert second is not None
    first.n = 1
    await first.asave()
    assert first.lock_version == 2
    second.n = 2
    before = snapshot(client)
    with pytest.raises(errors.StaleRecord):
        await second.asave()
    with pytest.raises(errors.StaleRecord):
        await second.adelete()
    assert snapshot(client) == before
    await second.arefresh_from_db()
    assert second.lock_version == 2
    second.n = 2
    await second.asave()
    record, created = await Counter.objects.aupdate_or_create(name="a", defaults={"n": 5})
    assert not created and record.lock_version == 4
    await record.adelete()
    assert await Counter.objects.acount() == 0
