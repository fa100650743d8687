"""The change feed (issue 12 item 6): ``Meta.changes`` appends one stream entry per committed
write inside the script that writes; ``changes()`` reads it, consumer groups share it with
at-least-once delivery."""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio

from repocket import ActiveRecord, Change, F, attributes, configure, errors
from repocket.core import keys
from tests.conftest import RoundTrips, snapshot


class Order(ActiveRecord):
    class Meta:
        namespace = "tests.feed"
        changes = True

    ref = attributes.Unicode(unique=True)
    status = attributes.Unicode(index=True)
    note = attributes.Unicode(null=True)
    log = attributes.ByteStream()


class Ledger(ActiveRecord):
    class Meta:
        namespace = "tests.feed"
        changes = True
        optimistic_lock = True
        changes_maxlen = 10

    amount = attributes.Integer()


class Quiet(ActiveRecord):
    class Meta:
        namespace = "tests.feed"

    name = attributes.Unicode()


FEED = Order._meta.changes_key
ALL = ("ref", "status", "note", "log")  # what a create (or force_insert) writes: everything


def feed(model: type[ActiveRecord] = Order) -> list[Change]:
    return list(model.objects.changes())


def ops(model: type[ActiveRecord] = Order) -> list[tuple[str, uuid.UUID, tuple[str, ...]]]:
    return [(change.op, change.record_id, change.fields) for change in feed(model)]


def test_the_feed_key_is_built_in_keys_py(client: redis.Redis) -> None:
    assert FEED == keys.changes_key(Order._meta.prefix) == "repocket:tests.feed:Order:changes"


def test_each_write_kind_appends_exactly_one_entry(client: redis.Redis) -> None:
    order = Order.create(ref="a", status="new", log=b"x")
    assert ops() == [("create", order.id, ("ref", "status", "note", "log"))]  # all written
    order.status = "paid"
    order.note = "n"
    order.save()
    order.note = None
    order.save()
    order.save()  # nothing changed: a committed save all the same, no field named
    order.append_log(b"y")
    order.delete()
    assert ops()[1:] == [("update", order.id, ("status", "note")),
                         ("update", order.id, ("note",)),
                         ("update", order.id, ()),
                         ("update", order.id, ("log",)),
                         ("delete", order.id, ())]
    changes = feed()
    assert all(change.version is None and change.model == "Order" for change in changes)
    assert [change.id for change in changes] == sorted(
        (change.id for change in changes), key=lambda i: tuple(map(int, i.split("-"))))


def test_bulk_create_and_queryset_delete_one_entry_per_record(client: redis.Redis) -> None:
    records = Order.objects.bulk_create([Order(ref=str(i), status="new") for i in range(5)])
    assert ops() == [("create", record.id, ALL) for record in records]
    Order.objects.filter(status="new").delete()
    assert sorted(ops()[5:]) == sorted(("delete", record.id, ()) for record in records)
    Order.objects.filter(status="new").delete()  # nothing left to delete: no entry
    assert len(feed()) == 10


def test_get_or_create_and_force_insert(client: redis.Redis) -> None:
    order, created = Order.objects.get_or_create(ref="a", defaults={"status": "new"})
    assert created
    Order.objects.get_or_create(ref="a")  # found: nothing written, nothing appended
    order.save(force_insert=True)  # the record exists: an update, every field written
    assert [op for op, _, _ in ops()] == ["create", "update"]
    assert feed()[1].fields == ALL


def test_update_appends_one_entry_per_record_updated(client: redis.Redis,
                                                    roundtrips: RoundTrips) -> None:
    made = [Order.create(ref=str(i), status="new") for i in range(3)]
    Ledger.create(amount=1)
    roundtrips.reset()
    assert Order.objects.filter(status="new").update(note="n", status="paid") == 3
    assert roundtrips.count == 1
    assert sorted(ops()[3:]) == sorted(("update", m.id, ("status", "note")) for m in made)
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation):
        Order.objects.update(ref="same")  # three records, one unique value: nothing
    assert Order.objects.filter(status="none").update(note="x") == 0
    assert snapshot(client) == before
    assert Ledger.objects.update(amount=F("amount") * 5) == 1
    assert [(c.op, c.fields, c.version) for c in feed(Ledger)][-1] == ("update", ("amount",), 2)


def test_failing_writes_append_nothing(client: redis.Redis) -> None:
    first = Order.create(ref="a", status="new")
    stale = Order.objects.get(id=first.id)
    assert stale is not None
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation):
        Order.create(ref="a", status="dup")
    with pytest.raises(errors.UniqueViolation):
        Order.objects.bulk_create([Order(ref="b", status="x"), Order(ref="a", status="y")])
    first.delete()
    after_delete = snapshot(client)
    stale.status = "late"
    with pytest.raises(errors.DoesNotExist):  # deleted meanwhile: 'gone'
        stale.save()
    with pytest.raises(errors.DoesNotExist):
        stale.append_log(b"z")
    assert snapshot(client) == after_delete
    assert len(after_delete[FEED.encode()][1]) == 2 and len(before) > 0  # its 2 entries
    assert [op for op, _, _ in ops()] == ["create", "delete"]


def test_a_planted_wrong_type_for_the_feed_is_refused_before_any_write(
        client: redis.Redis) -> None:
    order = Order.create(ref="a", status="new")
    client.delete(FEED)
    client.set(FEED, b"not a stream")
    before = snapshot(client)
    order.status = "paid"
    with pytest.raises(errors.WrongKeyType):
        order.save()
    with pytest.raises(errors.WrongKeyType):
        order.delete()
    with pytest.raises(errors.WrongKeyType):
        order.append_log(b"x")
    assert snapshot(client) == before


def test_still_one_round_trip_per_write(client: redis.Redis, roundtrips: RoundTrips) -> None:
    order = Order.create(ref="warm", status="new", log=b"")
    order.append_log(b"w")
    order.delete()
    roundtrips.reset()
    order = Order.create(ref="a", status="new")
    order.status = "paid"
    order.save()
    order.append_log(b"x")
    Order.objects.bulk_create([Order(ref=str(i), status="new") for i in range(3)])
    order.delete()
    assert roundtrips.count == 5
    assert len(feed()) == 3 + 7


def test_a_locked_model_records_versions_and_the_feed_is_bounded(client: redis.Redis) -> None:
    entry = Ledger.create(amount=1)
    entry.amount = 2
    entry.save()
    entry.delete()
    assert [(c.op, c.version) for c in feed(Ledger)] == [
        ("create", 1), ("update", 2), ("delete", 2)]
    stale = Ledger.create(amount=0)
    Ledger.objects.get(id=stale.id).save()  # type: ignore[union-attr]
    with pytest.raises(errors.StaleRecord):
        stale.save()  # refused: no entry
    assert [c.op for c in feed(Ledger)][-2:] == ["create", "update"]
    for n in range(400):
        Ledger.objects.bulk_create([Ledger(amount=n)])
    length = client.xlen(Ledger._meta.changes_key)
    # MAXLEN ~ 10: trimmed a whole stream node (stream-node-max-entries, 100) at a time
    assert 10 <= length <= 10 + 100


def test_reading_since_paging_and_now(client: redis.Redis, roundtrips: RoundTrips) -> None:
    made = [Order.create(ref=str(i), status="new") for i in range(5)]
    everything = feed()
    assert [c.record_id for c in everything] == [m.id for m in made]
    assert [c.record_id for c in Order.objects.changes(since=everything[1].id)] == [
        m.id for m in made[2:]]
    roundtrips.reset()
    assert len(list(Order.objects.changes(count=2))) == 5
    assert roundtrips.count == 3  # pages of 2, 2, 1: a short page is the end
    roundtrips.reset()
    assert len(list(Order.objects.changes(count=5))) == 5
    assert roundtrips.count == 2  # a full page, then an empty one
    assert list(Order.objects.changes(since="$")) == []
    with pytest.raises(errors.InvalidQuery):
        Quiet.objects.changes()
    with pytest.raises(errors.InvalidQuery):
        Order.objects.changes(count=0)


def test_a_blocking_read_waits_for_new_writes(client: redis.Redis) -> None:
    Order.create(ref="old", status="new")
    seen: list[Change] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        seen.extend(Order.objects.changes(since="$", block=3_000))

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait()
    while not any(c.get("cmd") == "xread" for c in client.client_list()):
        pass  # until the reader waits in XREAD BLOCK
    fresh = Order.create(ref="new", status="new")
    thread.join()
    assert [c.record_id for c in seen] == [fresh.id]  # then a wait brought nothing: ended


def test_a_replica_holds_the_same_feed(start_server: Any) -> None:
    """Scripts replicate as their effects (Redis 7+): the XADD of an entry with a '*' id
    reaches the replica as the entry the primary made, same id."""
    primary_server = start_server("--repl-diskless-sync-delay", "0")
    replica_server = start_server("--replicaof", primary_server.host, str(primary_server.port))
    primary, replica = primary_server.client(), replica_server.client()
    configure.connection_pool(client=primary)
    try:
        order = Order.create(ref="a", status="new")
        order.status = "paid"
        order.save()
        Order.objects.filter(ref="a").update(note="n")
        order.delete()
        on_primary = feed()
        for _ in range(20):  # WAIT in steps shorter than the client's socket timeout
            if primary.wait(1, 1000) == 1:
                break
        configure.connection_pool(client=replica)
        assert feed() == on_primary and [c.op for c in on_primary] == [
            "create", "update", "update", "delete"]
    finally:
        configure.reset()


# -- consumer groups ----------------------------------------------------------------------------
def test_each_entry_goes_to_one_consumer_and_acks_clear_it(client: redis.Redis) -> None:
    made = [Order.create(ref=str(i), status="new") for i in range(6)]
    group = Order.objects.change_group("indexer")
    first = group.read("w1", count=4)
    second = group.read("w2", count=4)
    assert len(first) == 4 and len(second) == 2
    assert {c.record_id for c in first + second} == {m.id for m in made}
    assert group.pending() == 6
    assert group.ack(*first, *second) == 6
    assert group.pending() == 0 and group.read("w1") == []
    other = Order.objects.change_group("audit")  # another group sees every entry again
    assert len(other.read("a")) == 6


def test_group_round_trips(client: redis.Redis, roundtrips: RoundTrips) -> None:
    Order.create(ref="warm", status="new")
    Order.objects.change_group("warm").read("w")  # scripts loaded, connection made
    for i in range(3):
        Order.create(ref=str(i), status="new")
    roundtrips.reset()
    group = Order.objects.change_group("g")
    assert roundtrips.count == 1  # created (feed_group.lua)
    Order.objects.change_group("g")
    assert roundtrips.count == 2  # it exists: one call all the same, nothing created
    assert len(group.read("w", count=2)) == 2
    assert roundtrips.count == 4  # its own pending entries first (none), then new ones
    assert len(group.read("w", count=2)) == 2
    assert roundtrips.count == 5
    assert group.process(lambda change: None, "w") == 0  # nothing new
    assert roundtrips.count == 6  # nothing handled: no XACK


def test_a_worker_that_dies_before_acking_loses_nothing(client: redis.Redis) -> None:
    made = [Order.create(ref=str(i), status="new") for i in range(5)]
    crashed = Order.objects.change_group("mailer")
    taken = crashed.read("worker-1", count=3)  # ...and the process dies before XACK
    assert len(taken) == 3
    survivor = Order.objects.change_group("mailer")
    handled: list[Change] = []
    assert survivor.process(handled.append, "worker-2") == 2  # the two nobody took
    assert survivor.process(handled.append, "worker-2") == 0  # taken ones are not idle yet
    assert survivor.process(handled.append, "worker-2", min_idle=0) == 3  # claimed
    assert sorted(c.record_id for c in handled) == sorted(m.id for m in made)
    assert survivor.pending() == 0
    assert Order.objects.change_group("mailer").read("worker-1") == []  # its entries moved


def take_and_die(url: str, handled: Any) -> None:
    """A spawned worker: takes two entries, handles one, dies before acknowledging."""
    configure.connection_pool(url=url, socket_timeout=30)
    taken = Order.objects.change_group("billing").read("doomed", count=2)
    handled.put(str(taken[0].record_id))
    handled.close()
    handled.join_thread()  # what it handled is reported...
    os._exit(1)  # ...then it is killed: no XACK, no clean-up


def test_a_worker_process_killed_before_acking_loses_nothing(client: redis.Redis,
                                                             redis_url: str) -> None:
    made = [Order.create(ref=str(i), status="new") for i in range(4)]
    context = multiprocessing.get_context("spawn")
    handled = context.Queue()
    worker = context.Process(target=take_and_die, args=(redis_url, handled))
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 1
    seen = [handled.get(timeout=10)]
    group = Order.objects.change_group("billing")
    assert group.pending() == 2
    while group.process(lambda change: seen.append(str(change.record_id)), "survivor",
                        min_idle=0):
        pass
    # at least once: every record handled, the one the dead worker handled twice
    assert sorted(set(seen)) == sorted(str(m.id) for m in made) and len(seen) == 5
    assert group.pending() == 0


def test_a_worker_restarting_under_its_name_resumes_its_pending(client: redis.Redis) -> None:
    made = [Order.create(ref=str(i), status="new") for i in range(3)]
    assert len(Order.objects.change_group("g").read("w", count=2)) == 2  # no ack: dies
    restarted = Order.objects.change_group("g")
    handled: list[Change] = []
    assert restarted.process(handled.append, "w") == 2  # its own pending first
    assert restarted.process(handled.append, "w") == 1  # then new entries
    assert [c.record_id for c in handled] == [m.id for m in made]


def test_a_failing_handler_leaves_the_rest_pending(client: redis.Redis) -> None:
    made = [Order.create(ref=str(i), status="new") for i in range(4)]
    group = Order.objects.change_group("g")
    handled: list[uuid.UUID] = []

    def fails_on_the_third(change: Change) -> None:
        if len(handled) == 2:
            raise RuntimeError("boom")
        handled.append(change.record_id)

    with pytest.raises(RuntimeError):
        group.process(fails_on_the_third, "w")
    assert group.pending() == 2
    assert group.process(lambda change: handled.append(change.record_id), "w") == 2
    assert handled == [m.id for m in made] and group.pending() == 0


def test_pending_entries_trimmed_away_are_skipped_and_acknowledged(client: redis.Redis) -> None:
    Ledger.create(amount=0)
    group = Ledger.objects.change_group("g")
    assert len(group.read("w")) == 1  # not acknowledged
    client.xtrim(Ledger._meta.changes_key, maxlen=0)  # the feed trimmed it meanwhile
    assert Ledger.objects.change_group("g").read("w") == [] and group.pending() == 0


def test_a_group_may_start_at_the_end(client: redis.Redis) -> None:
    Order.create(ref="old", status="new")
    group = Order.objects.change_group("late", start="$")
    assert group.read("w") == []
    fresh = Order.create(ref="new", status="new")
    assert [c.record_id for c in group.read("w")] == [fresh.id]


# -- asyncio ----------------------------------------------------------------------------------


async def test_async_twins(aclient: Any) -> None:
    made = [await Order.objects.acreate(ref=str(i), status="new") for i in range(3)]
    await made[0].adelete()
    got = [change async for change in Order.objects.achanges(count=2)]
    assert [(c.op, c.record_id) for c in got] == [
        *(("create", m.id) for m in made), ("delete", made[0].id)]
    group = await Order.objects.achange_group("g")
    first = await group.aread("w1", count=2)
    assert len(first) == 2 and await group.apending() == 2
    handled: list[Change] = []

    async def handle(change: Change) -> None:
        handled.append(change)

    assert await group.aprocess(handle, "w2", min_idle=0) == 2  # w1's, claimed
    assert await group.aprocess(handle, "w2") == 2  # the rest
    assert await group.aack(*first) == 0  # claimed and acknowledged by w2 already
    assert await group.apending() == 0 and len(handled) == 4


@pytest.mark.parametrize("bad", ["garbage", "1-2-3", "-1", "", "1-", b"0-0", 2**64, 1.5, True,
                                 "18446744073709551616-0"])
def test_a_bad_entry_id_is_refused_typed_before_anything_is_sent(
        client: redis.Redis, roundtrips: RoundTrips, bad: Any) -> None:
    """since= and a group's start are stream entry ids: Redis' own refusal was an untyped
    ScriptError naming neither the model nor the argument."""
    Order.create(ref="n1", status="new")
    before = snapshot(client)
    roundtrips.reset()
    with pytest.raises(errors.InvalidQuery) as raised:
        list(Order.objects.changes(since=bad))
    assert (raised.value.model, raised.value.field, raised.value.value) == ("Order", "since", bad)
    with pytest.raises(errors.InvalidQuery) as raised:
        Order.objects.change_group("workers", start=bad)
    assert (raised.value.model, raised.value.field, raised.value.value) == ("Order", "start", bad)
    assert roundtrips.count == 0 and snapshot(client) == before


def test_entry_ids_in_every_accepted_form(client: redis.Redis) -> None:
    first = Order.create(ref="n1", status="new")
    Order.create(ref="n2", status="new")
    entries = feed()
    after_first = [c.record_id for c in Order.objects.changes(since=entries[0].id)]
    assert after_first == [entries[1].record_id] and entries[0].record_id == first.pk
    ms = int(entries[0].id.split("-")[0])
    assert len(list(Order.objects.changes(since=str(ms - 1)))) == 2  # '<ms>' alone
    assert len(list(Order.objects.changes(since=0))) == 2
    assert list(Order.objects.changes(since="$")) == []
    group = Order.objects.change_group("from-start", start="0-0")
    assert len(group.read("w1")) == 2
