"""repocket on Redis Cluster (the suite's cluster: 3 primaries + 3 replicas): the sharded key
layout, one script call on one node per record operation, redirections followed, and a typed
error (nothing sent) for what the cluster path does not support yet."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import multiprocessing
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from repocket import ActiveRecord, F, attributes, configure, errors
from repocket.core import claims
from repocket.core import keys as keyspace
from repocket.core import ops as operations
from repocket.core.plan import Call, Gather
from repocket.exec import aio, sync
from repocket.tools.server import LocalCluster
from tests.conftest import CountingConnection, RoundTrips

pytestmark = pytest.mark.cluster


class Note(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"

    title = attributes.Unicode()
    rank = attributes.Integer(index=True)
    when = attributes.DateTime(null=True, index=True)
    body = attributes.ByteStream()


class Quarter(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"
        shards = 4

    label = attributes.Unicode()


class Account(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"

    email = attributes.Unicode(unique=True)


class Comment(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"

    note = attributes.Pointer(Note)
    text = attributes.Unicode()


def flush(cluster: LocalCluster) -> None:
    for node in cluster.primaries:
        with node.client() as client:
            if client.info("replication")["role"] == "master":
                client.flushall()


def every_key(cluster: LocalCluster) -> dict[str, int]:
    """Each key of the cluster and the port of the primary holding it."""
    found = {}
    for node in cluster.nodes:
        with node.client() as client:
            if client.info("replication")["role"] == "master":
                found.update({key.decode(): node.port for key in client.keys("*")})
    return found


@pytest.fixture
def cluster(local_cluster: LocalCluster,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisCluster]:
    """The suite's cluster, flushed, as repocket's connection (round trips counted on every
    connection: RedisCluster takes no connection class)."""
    configure.reset()
    flush(local_cluster)
    send = redis.connection.Connection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    client = RedisCluster(startup_nodes=local_cluster.startup_nodes(),
                          retry=Retry(NoBackoff(), 0))
    configure.connection_pool(client=client)
    yield client
    configure.reset()
    client.close()


def tag_of(model: type[ActiveRecord], record_id: Any, shards: int = 16) -> str:
    shard = zlib.crc32(str(record_id).encode()) % shards
    return "{repocket:tests.cluster:" + model.__name__ + f":{shard}" + "}"


def test_every_key_of_a_record_shares_its_shard_hash_tag(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    note = Note.create(title="one", rank=3, body=b"bytes")
    tag = tag_of(Note, note.pk)
    assert set(every_key(local_cluster)) == {
        f"{tag}:{note.pk}", f"{tag}:{note.pk}:field:body", f"{tag}:ids", f"{tag}:idx:rank",
        f"{tag}:idx:when:null"}
    assert note._key() == f"{tag}:{note.pk}"


def test_records_spread_over_the_shards_and_every_primary(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    Note.objects.bulk_create([Note(title=str(i), rank=i) for i in range(200)])
    keys = every_key(local_cluster)
    tags = {key.split("}")[0] + "}" for key in keys}
    assert len(tags) == 16
    assert set(keys.values()) == {node.port for node in local_cluster.primaries}
    quarters = Quarter.objects.bulk_create([Quarter(label=str(i)) for i in range(40)])
    quarter_tags = {q._key().split("}")[0] for q in quarters}
    assert quarter_tags == {"{repocket:tests.cluster:Quarter:" + str(n) for n in range(4)}


def test_shards_must_be_a_positive_integer() -> None:
    for bad in (0, -1, 2.5, True, 5000):
        with pytest.raises(errors.RepocketActiveRecordDefinitionError, match=r"Meta\.shards"):
            type("Bad", (ActiveRecord,), {
                "__module__": __name__,
                "Meta": type("Meta", (), {"namespace": "tests.cluster.bad", "shards": bad}),
                "x": attributes.Unicode()})


def test_crud_and_streams_one_round_trip_each(cluster: RedisCluster) -> None:
    note = Note.create(title="first", rank=1, body=b"ab")  # loads the scripts on its node
    note.append_body(b"c")
    Note.objects.get(id=note.pk)
    rounds = RoundTrips()
    note.title = "second"
    note.save()
    assert rounds.count == 1
    rounds.reset()
    found = Note.objects.get(id=note.pk)
    assert rounds.count == 1
    assert (found.title, found.rank, found.body) == ("second", 1, b"abc")
    rounds.reset()
    found.append_body(b"d")
    assert rounds.count == 1
    assert Note.objects.get(id=note.pk).body == b"abcd"
    rounds.reset()
    assert note.delete() == 2  # the keys deleted (hash and stream), as on one server
    assert rounds.count == 1
    assert Note.objects.get(id=note.pk) is None


def test_a_stale_save_does_not_resurrect_a_deleted_record(cluster: RedisCluster) -> None:
    note = Note.create(title="x", rank=2)
    stale = Note.objects.get(id=note.pk)
    note.delete()
    stale.rank = 5
    with pytest.raises(errors.DoesNotExist):
        stale.save()
    assert Note.objects.get(id=note.pk) is None
    stale.save(force_insert=True)
    assert Note.objects.get(id=note.pk).rank == 5


def test_bulk_create_is_one_call_per_shard_and_get_many_keeps_the_order(
        cluster: RedisCluster) -> None:
    # a first batch: connections opened and scripts loaded on every node
    Quarter.objects.bulk_create([Quarter(label="warm") for _ in range(30)])
    records = [Quarter(label=str(i)) for i in range(30)]
    rounds = RoundTrips()
    Quarter.objects.bulk_create(records, batch_size=1000)
    shards = {record._key().split("}")[0] + "}" for record in records}
    # one atomic call per shard, each node's calls in one pipeline
    assert len(shards) == 4 and rounds.count == len(nodes_of(cluster, shards))
    missing = Quarter()
    wanted = [records[5].pk, missing.pk, records[0].pk, records[29].pk]
    found = Quarter.objects.get_many(wanted)
    assert [r.label if r else None for r in found] == ["5", None, "0", "29"]


def test_a_url_with_the_cluster_flag(local_cluster: LocalCluster) -> None:
    configure.reset()
    flush(local_cluster)
    try:
        client = configure.connection_pool(url=local_cluster.url, cluster=True)
        assert isinstance(client, RedisCluster)
        note = Note.create(title="by url", rank=1)
        assert Note.objects.get(id=note.pk).title == "by url"
        with pytest.raises(errors.ConfigurationError, match="database 0"):
            configure.connection_pool(url=local_cluster.url, cluster=True, db=1)
    finally:
        configure.reset()


def test_standalone_keeps_the_documented_keys(client: Any) -> None:
    note = Note.create(title="alone", rank=1)
    assert note._key() == f"repocket:tests.cluster:Note:{note.pk}"
    assert sorted(k.decode() for k in client.keys("*")) == sorted([
        f"repocket:tests.cluster:Note:{note.pk}", "repocket:tests.cluster:Note:ids",
        "repocket:tests.cluster:Note:idx:rank", "repocket:tests.cluster:Note:idx:when:null"])


@pytest.mark.parametrize("operation", [
    lambda: Account.objects.get_or_create(id=Account().pk, defaults={"email": "x"}),
    lambda: Account.objects.filter(email="a").update(email="b"),
], ids=["get_or_create-by-id-with-unique-fields", "update-of-a-unique-field"])
def test_what_is_not_supported_yet_raises_a_typed_error_and_sends_nothing(
        cluster: RedisCluster, local_cluster: LocalCluster, operation: Any) -> None:
    rounds = RoundTrips()
    with pytest.raises(errors.Unsupported, match="Redis Cluster"):
        operation()
    assert rounds.count == 0
    assert every_key(local_cluster) == {}


async def test_the_asyncio_api_on_a_cluster(cluster: RedisCluster) -> None:
    """The async twins run the same calls on the asyncio cluster client repocket builds
    from the sync one: single-record operations, bulk writes, reads and queries."""
    note = Note(title="async", rank=4, body=b"a")
    await note.asave()
    await note.aappend_body(b"b")
    found = await Note.objects.aget(id=note.pk)
    assert found is not None and (found.title, found.body) == ("async", b"ab")
    batch = await Note.objects.abulk_create([Note(title=str(i), rank=i) for i in range(30)])
    assert [r.rank for r in await Note.objects.aget_many([r.pk for r in batch[::-1]])] == \
        list(range(29, -1, -1))
    assert await Note.objects.filter(rank__gte=10).acount() == 20
    assert [r.rank for r in await Note.objects.order_by("-rank")[:3].alist()] == [29, 28, 27]
    assert await Note.objects.filter(rank__lt=3).adelete() == 3
    assert await Note.objects.acount() == 28
    await note.adelete()
    assert await Note.objects.aget(id=note.pk) is None
    await configure.aclose()


async def test_an_asyncio_cluster_client_given_as_is(local_cluster: LocalCluster) -> None:
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    configure.reset()
    flush(local_cluster)
    given = AsyncRedisCluster.from_url(local_cluster.url)
    try:
        configure.connection_pool(url=local_cluster.url, cluster=True, async_client=given)
        note = Note(title="given", rank=1)
        await note.asave()
        assert (await Note.objects.aget(id=note.pk)).title == "given"  # type: ignore[union-attr]
        assert await Note.objects.filter(rank=1).acount() == 1
    finally:
        configure.reset()
        await given.aclose()


def slot_owner(local_cluster: LocalCluster, slot: int) -> tuple[Any, str]:
    """(server, node id) of the primary serving ``slot``."""
    with local_cluster.nodes[0].client() as client:
        for first, last, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                port = primary[1]
                server = next(n for n in local_cluster.nodes if n.port == port)
                return server, primary[2].decode()
    raise AssertionError(f"slot {slot} is not served")


def move_slot(local_cluster: LocalCluster, slot: int, keys_too: bool = True) -> Any:
    """Migrate ``slot`` (and its keys) to another primary, as redis-cli --cluster reshard
    does; returns the new owner."""
    source, source_id = slot_owner(local_cluster, slot)
    target = next(n for n in local_cluster.primaries if n.port != source.port)
    with source.client() as src, target.client() as dst:
        target_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        if not keys_too:
            return target
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        for node in (target, source):  # the others learn it by gossip
            with node.client() as each:
                each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    local_cluster.wait_until_ok()
    return target


def test_a_moved_slot_is_followed(cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    note = Note.create(title="moving", rank=7, body=b"b")
    Note.objects.get(id=note.pk)  # the client now knows the slot's owner
    slot = key_slot(note._key().encode())
    target = move_slot(local_cluster, slot)
    found = Note.objects.get(id=note.pk)  # MOVED, then the new owner answers
    assert (found.title, found.body) == ("moving", b"b")
    found.title = "moved"
    found.save()
    assert every_key(local_cluster)[note._key()] == target.port
    assert Note.objects.get(id=note.pk).title == "moved"


def test_a_slot_in_migration_is_followed_with_asking(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    """While a slot migrates, a record whose keys moved already is answered ASK by the
    source: the call is resent with ASKING to the target. A write needing keys on both
    sides is refused with TRYAGAIN (nothing ran): after a few tries the caller gets a
    typed retriable error, and the write succeeds once the migration ends."""
    note = Note.create(title="first", rank=1)
    slot = key_slot(note._key().encode())
    source, _ = slot_owner(local_cluster, slot)
    target = move_slot(local_cluster, slot, keys_too=False)
    with source.client() as src:
        src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS",
                            note._key())
    assert Note.objects.get(id=note.pk).title == "first"  # ASK -> ASKING + the get
    note.rank = 2
    before = every_key(local_cluster)
    with pytest.raises(errors.RepocketConnectionError, match="TRYAGAIN"):
        note.save()  # the hash on the target, the id set and index still on the source
    assert every_key(local_cluster) == before
    move_slot_keys(local_cluster, source, target, slot)
    note.save()
    assert Note.objects.get(id=note.pk).rank == 2
    assert every_key(local_cluster)[note._key()] == target.port


def move_slot_keys(local_cluster: LocalCluster, source: Any, target: Any, slot: int) -> None:
    """Finish a migration move_slot(keys_too=False) began."""
    with source.client() as src, target.client() as dst:
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        target_id = dst.execute_command("CLUSTER", "MYID").decode()
        for node in (target, source):
            with node.client() as each:
                each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    local_cluster.wait_until_ok()


# -- queries: one call per shard, merged ---------------------------------------------------------
class Sample(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"

    title = attributes.Unicode()
    rank = attributes.Integer(index=True, null=True)
    when = attributes.DateTime(null=True, index=True)
    body = attributes.ByteStream(null=True)


def sample_rows() -> list[dict[str, Any]]:
    rng = random.Random(11)
    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return [{"title": f"t{i % 13}{rng.choice('abx')}", "rank": rng.choice([None, *range(10)]),
             "when": rng.choice([None, base + dt.timedelta(hours=rng.randrange(40))]),
             "body": rng.choice([None, b"", b"x" * rng.randrange(5)])}
            for i in range(90)]


def pks(records: Any) -> list[str]:
    return [str(record.pk) for record in records]


QUERIES: dict[str, Callable[[], Any]] = {
    "filter": lambda: sorted(pks(Sample.objects.filter(rank=3))),
    "in and range": lambda: sorted(pks(Sample.objects.filter(rank__in=[1, 2], when__gte=dt.datetime(
        2024, 1, 1, 10, tzinfo=dt.timezone.utc)))),
    "isnull": lambda: sorted(pks(Sample.objects.filter(when__isnull=True))),
    "exclude count": lambda: Sample.objects.exclude(rank__lt=5).count(),
    "sliced count": lambda: Sample.objects.filter(rank__gte=2)[3:10].count(),
    "count past the end": lambda: Sample.objects.all()[85:100].count(),
    "order desc, slice": lambda: pks(Sample.objects.filter(rank__gte=7).order_by(
        "-rank", "title")[:5]),
    "order with None first": lambda: pks(Sample.objects.order_by("when")[3:9]),
    "two desc": lambda: pks(Sample.objects.order_by("-when", "-rank")[:7]),
    "ordered ids": lambda: [str(i) for i in Sample.objects.order_by("rank", "-title").ids()],
    "exists": lambda: Sample.objects.filter(rank__in=[1, 2]).exists(),
    "exists not": lambda: Sample.objects.filter(rank=99).exists(),
    "text lookup": lambda: sorted(pks(Sample.objects.filter(title__contains="a"))),
    "startswith": lambda: sorted(pks(Sample.objects.filter(title__startswith="t1"))),
    "iterator": lambda: pks(Sample.objects.order_by("rank", "title").iterator(chunk_size=7)),
    "only": lambda: [(str(r.pk), r.title) for r in Sample.objects.only("title").order_by(
        "-rank")[:5]],
    "defer a stream": lambda: pks(Sample.objects.defer("body").order_by("title", "rank")[2:6]),
    "first": lambda: str(Sample.objects.order_by("rank").first().pk),  # type: ignore[union-attr]
    "last": lambda: str(Sample.objects.last().pk),  # type: ignore[union-attr]
    "get by title": lambda: Sample.objects.filter(title__startswith="t12").order_by(
        "-title").first().title,  # type: ignore[union-attr]
    "values": lambda: Sample.objects.order_by("-rank", "title")[:4].values("title", "rank"),
    "ids pinned": lambda: [str(i) for i in Sample.objects.filter(id__in=[
        Sample.objects.order_by("title")[i].pk for i in (5, 1, 70)]).ids()],
    "delete": lambda: (Sample.objects.filter(rank=3).delete(), Sample.objects.count()),
}


def run_queries(rows: list[dict[str, Any]], ids: list[Any] | None) -> tuple[dict[str, Any],
                                                                                 list[Any]]:
    made = Sample.objects.bulk_create([Sample(**row) if ids is None else Sample(id=i, **row)
                                       for i, row in zip(ids or [None] * len(rows), rows)])
    return {name: query() for name, query in QUERIES.items()}, [r.pk for r in made]


def test_queries_answer_on_a_cluster_as_on_one_server(
        redis_url: str, local_cluster: LocalCluster) -> None:
    """The same records (same ids) on one server and on the cluster: every query, lookup,
    order, slice, count, exists, iterator, only/defer and QuerySet.delete answers the same."""
    rows = sample_rows()
    configure.reset()
    try:
        standalone = redis.Redis.from_url(redis_url)
        standalone.flushdb()
        configure.connection_pool(client=standalone)
        expected, ids = run_queries(rows, None)
        flush(local_cluster)
        configure.connection_pool(url=local_cluster.url, cluster=True)
        answered, _ = run_queries(rows, ids)
    finally:
        configure.reset()
    assert expected["filter"] and expected["order desc, slice"]  # the data exercises them
    for name in QUERIES:
        assert answered[name] == expected[name], name


def nodes_of(cluster: RedisCluster, tags: Any) -> set[str]:
    """The primaries serving the slots of these hash tags."""
    return {cluster.nodes_manager.get_node_from_slot(key_slot(tag.encode())).name
            for tag in tags}


def test_a_query_pinned_to_ids_asks_only_their_shards(cluster: RedisCluster) -> None:
    records = Sample.objects.bulk_create([Sample(title=str(i), rank=i) for i in range(40)])
    by_shard: dict[str, list[Any]] = {}
    for record in records:
        by_shard.setdefault(record._key().split("}")[0] + "}", []).append(record.pk)
    (one_tag, one), (other_tag, other) = list(by_shard.items())[:2]

    def queries() -> None:
        assert Sample.objects.filter(id__in=[one[0], other[0]]).count() == 2
        assert Sample.objects.filter(id=one[0], rank__gte=0).exists()
        assert Sample.objects.filter(rank__gte=0).count() == 40

    queries()  # connections opened (the lean path keeps one per node, pipelines borrow)
    rounds = RoundTrips()
    queries()
    # one pipeline per node concerned: the two shards' nodes, one shard's, every node
    assert rounds.count == len(nodes_of(cluster, [one_tag, other_tag])) + 1 + len(
        nodes_of(cluster, Sample._meta.shard_prefixes()))


def test_an_ordered_slice_asks_each_shard_for_at_most_its_end(cluster: RedisCluster) -> None:
    from repocket.core.query import compile_query

    query = Sample.objects.filter(rank__gte=1).order_by("-rank")[20:30]
    gathered = compile_query(query.state, "records")
    assert len(gathered.calls) == 16  # one call per shard, sent together
    for shard, call in enumerate(gathered.calls):
        plan = msgpack.unpackb(call.args[3])
        assert (plan["offset"], plan["limit"]) == (0, 30)
        assert call.keys[0].startswith("{repocket:tests.cluster:Sample:" + f"{shard}" + "}")


def test_gathered_calls_recover_from_a_script_flush_on_every_primary(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    """A failover promotes a replica with an empty script cache; SCRIPT FLUSH is the same
    to a client: each node's pipelined EVALSHA answers NOSCRIPT and is resent as EVAL."""
    Sample.objects.bulk_create([Sample(title=str(i), rank=i) for i in range(30)])
    assert Sample.objects.filter(rank__lt=10).count() == 10
    for node in local_cluster.primaries:
        with node.client() as client:
            client.script_flush()
    assert Sample.objects.filter(rank__lt=10).count() == 10
    assert len(Sample.objects.get_many([r.pk for r in Sample.objects.all()])) == 30
    more = Sample.objects.bulk_create([Sample(title="late", rank=99) for _ in range(20)])
    assert Sample.objects.filter(rank=99).count() == 20 and all(r._persisted for r in more)


def test_a_failing_shard_of_a_bulk_write_leaves_the_others_written(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    """Bulk writes are atomic per shard: a shard whose id set is not a set (planted here)
    writes nothing and raises the typed error; the other shards' records are written and
    know it."""
    records = [Quarter(label=str(i)) for i in range(24)]
    broken = records[0]._key().split("}")[0] + "}"
    cluster.set(f"{broken}:ids", "not a set")
    with pytest.raises(errors.WrongKeyType):
        Quarter.objects.bulk_create(records)
    for record in records:
        in_broken = record._key().startswith(broken)
        assert record._persisted is not in_broken
        found = Quarter.objects.get(id=record.pk) if not in_broken else None
        assert in_broken or (found is not None and found.label == record.label)
    assert not [key for key in every_key(local_cluster)
                if key.startswith(broken) and not key.endswith(":ids")]


class Versioned(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"
        optimistic_lock = True
        shards = 4

    label = attributes.Unicode()


class Fed(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"
        changes = True

    label = attributes.Unicode()
    log = attributes.ByteStream(null=True)


def test_optimistic_lock_on_the_record_shard(cluster: RedisCluster) -> None:
    mine = Versioned.create(label="a")
    theirs = Versioned.objects.get(id=mine.id)
    assert theirs is not None and theirs.lock_version == 1
    theirs.label = "b"
    theirs.save()
    mine.label = "c"
    with pytest.raises(errors.StaleRecord):
        mine.save()
    with pytest.raises(errors.StaleRecord):
        mine.delete()
    assert Versioned.objects.get(id=mine.id).label == "b"  # type: ignore[union-attr]
    assert theirs.lock_version == 2
    theirs.delete()


class FedUnique(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"
        changes = True

    code = attributes.Unicode(unique=True)


def test_a_feed_of_a_model_with_unique_values_on_a_cluster(cluster: RedisCluster) -> None:
    """The claim protocol's saves (fenced) append to the record's shard's feed too; a
    refused save appends nothing."""
    record = FedUnique.create(code="a")
    record.code = "b"
    record.save()
    with pytest.raises(errors.UniqueViolation):
        FedUnique.create(code="b")
    record.delete()
    assert [(c.op, c.record_id) for c in FedUnique.objects.changes()] == [
        ("create", record.pk), ("update", record.pk), ("delete", record.pk)]


def feed_order(change: Any) -> tuple[int, int, int]:
    ms, _, seq = change.id.partition("-")
    return int(ms), int(seq), change.shard


def test_the_change_feed_is_one_stream_per_shard_read_merged(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    """Each write's entry goes to its shard's stream (in the write's script); changes()
    reads every shard's stream and merges them by entry id, pages of any size."""
    made = Fed.objects.bulk_create([Fed(label=f"l{i}") for i in range(24)])
    for record in made[:8]:
        record.label = "changed"
        record.save()
    assert Fed.objects.filter(label="l10").update(label="updated") == 1
    made[9].delete()
    made[11].append_log(b"appended")
    keys = every_key(local_cluster)
    assert "repocket:tests.cluster:Fed:changes" not in keys
    streams = {key for key in keys if key.endswith(":changes")}
    assert streams == {tag_of(Fed, record.pk) + ":changes" for record in made}
    list(Fed.objects.changes())  # connections
    rounds = RoundTrips()
    every = list(Fed.objects.changes())
    assert rounds.count == 16  # one XRANGE per shard: every page short, the end
    assert len(every) == 24 + 8 + 1 + 1 + 1
    assert every == sorted(every, key=feed_order)  # merged by entry id
    assert all(change.shard == zlib.crc32(str(change.record_id).encode()) % 16
               for change in every)
    by_record = {record.pk: [c.op for c in every if c.record_id == record.pk] for record in made}
    assert by_record[made[0].pk] == ["create", "update"]
    assert by_record[made[9].pk] == ["create", "delete"]
    assert [c.fields for c in every if c.record_id == made[10].pk][1:] == [("label",)]
    assert [c.fields for c in every if c.record_id == made[11].pk][1:] == [("log",)]
    assert list(Fed.objects.changes(count=2)) == every  # small pages: the same merge
    middle = every[20]
    after = list(Fed.objects.changes(since=middle.id))  # an entry id: after it in every shard
    assert after == [c for c in every if feed_order(c)[:2] > feed_order(middle)[:2]]
    assert list(Fed.objects.changes(since=every[-1])) == []
    assert Fed.objects.check().ok


def test_a_blocking_read_of_the_sharded_feed_sees_a_write_in_any_shard(
        cluster: RedisCluster) -> None:
    Fed.create(label="old")
    assert list(Fed.objects.changes(since="$", block=250)) == []  # waited, nothing new
    writes = [Fed(label=f"new{i}") for i in range(3)]

    def writer() -> None:
        time.sleep(0.3)
        for record in writes:
            record.save()

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[Any] = []
    for change in Fed.objects.changes(since="$", block=5000):
        seen.append(change.record_id)
        if len(seen) == 3:
            break
    thread.join()
    assert sorted(map(str, seen)) == sorted(str(r.pk) for r in writes)


def test_consumer_groups_on_every_shard_deliver_each_entry_once_and_ack(
        cluster: RedisCluster) -> None:
    made = Fed.objects.bulk_create([Fed(label=f"g{i}") for i in range(20)])
    group = Fed.objects.change_group("indexer")
    first, second = group.read("w1", count=7), group.read("w2", count=100)
    assert len(first) == 7 and len(second) == 13
    assert sorted(str(c.record_id) for c in first + second) == sorted(str(r.pk) for r in made)
    assert group.pending() == 20 and group.read("w2") == []
    assert group.ack(*first) == 7 and group.pending() == 13
    # w2 dies before acking: another worker claims its entries
    handled: list[Any] = []
    assert Fed.objects.change_group("indexer").process(handled.append, "w3", min_idle=0) == 13
    assert sorted(handled, key=feed_order) == sorted(second, key=feed_order)
    assert group.pending() == 0
    assert group.read("w1", block=150) == []  # waited, nothing new
    late = Fed(label="late")  # a new entry during a wait, in whatever shard

    def writer() -> None:
        time.sleep(0.3)
        late.save()

    thread = threading.Thread(target=writer)
    thread.start()
    assert [c.record_id for c in group.read("w1", block=5000)] == [late.pk]
    thread.join()
    assert len(Fed.objects.change_group("audit").read("a", count=100)) == 21


async def test_the_sharded_feed_awaited(cluster: RedisCluster) -> None:
    made = [await Fed.objects.acreate(label=f"a{i}") for i in range(5)]
    seen = [change async for change in Fed.objects.achanges()]
    assert [c.record_id for c in seen if c.op == "create"] and len(seen) == 5
    assert {c.record_id for c in seen} == {r.pk for r in made}
    group = await Fed.objects.achange_group("async")
    taken = await group.aread("w", count=10)
    assert len(taken) == 5 and await group.aack(*taken) == 5 and await group.apending() == 0
    await configure.aclose()


def test_ttl_per_shard_sweeps_in_the_shard_and_ttl_persist_are_one_call(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    """Every expiry key of a shard shares its hash tag: a deadline, its sweep, ttl() and
    persist() are one script call on the record's node."""
    import time
    import uuid

    gone = Note.create(title="gone", rank=1, body=b"b", ttl=0.001)
    tag = tag_of(Note, gone.pk)
    time.sleep(0.005)
    assert Note.objects.get(id=gone.pk) is None
    assert f"{tag}:ttl" in every_key(local_cluster)  # waiting for a write to its shard
    same_shard = next(rid for rid in iter(uuid.uuid4, None)
                      if tag_of(Note, rid) == tag)
    rounds = RoundTrips()
    live = Note.create(id=same_shard, title="live", rank=2, ttl=300)
    assert rounds.count == 1
    keys = {key for key in every_key(local_cluster) if key.startswith(tag)}
    assert keys == {f"{tag}:{live.pk}", f"{tag}:ids", f"{tag}:idx:rank", f"{tag}:idx:when:null",
                    f"{tag}:ttl", f"{tag}:ttl:entries"}  # gone's keys and entries swept
    rounds.reset()
    left = live.ttl()
    assert rounds.count == 1 and left is not None and 290 < left <= 300
    rounds.reset()
    assert live.persist() is True
    assert rounds.count == 1
    assert live.ttl() is None


# -- Pointers across shards ---------------------------------------------------------------------
class Topic(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"

    title = attributes.Unicode()
    lead = attributes.Pointer(Note, null=True)


class Reply(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"

    subject = attributes.Unicode()
    topic = attributes.Pointer(Topic, null=True)
    note = attributes.Pointer(Note, null=True)


def test_a_save_checks_its_pointer_targets_in_a_read_first(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    note = Note.create(title="target", rank=1)
    Reply.create(subject="s", note=note)
    gone = Note.create(title="gone", rank=2)
    gone_id = gone.pk
    gone.delete()
    before = every_key(local_cluster)
    orphan = Reply(subject="orphan")
    orphan._values["note"] = gone_id  # a target deleted since it was assigned
    with pytest.raises(errors.PointerTargetMissing, match="note"):
        orphan.save()
    with pytest.raises(errors.PointerTargetMissing):
        Reply.objects.bulk_create([Reply(subject="ok", note=note), orphan])
    assert every_key(local_cluster) == before  # nothing written, in any shard


def test_get_loads_pointer_targets_level_by_level(cluster: RedisCluster) -> None:
    lead = Note.create(title="lead", rank=3, body=b"stream")
    other = Note.create(title="other", rank=4)
    topic = Topic.create(title="topic", lead=lead)
    reply = Reply.create(subject="reply", topic=topic, note=other)
    Reply.objects.get(id=reply.pk, pointer_depth=2)  # connections and scripts
    rounds = RoundTrips()
    found = Reply.objects.get(id=reply.pk, pointer_depth=2)
    # the record, then its targets (topic, note), then theirs (lead): at most one
    # pipeline per node for each level
    assert found is not None and rounds.count <= 1 + 3 + 3
    assert isinstance(found._values["topic"], Topic) and found.note.title == "other"
    assert isinstance(found.topic._values["lead"], Note)
    assert found.topic.lead.body == b"stream"
    one = Reply.objects.get(id=reply.pk, pointer_depth=1)
    assert one is not None and isinstance(one._values["topic"], Topic)
    assert not isinstance(one.topic._values["lead"], Note)
    assert one.topic.lead.title == "lead"  # loaded on access
    flat = Reply.objects.get(id=reply.pk, pointer_depth=0)
    assert flat is not None and not isinstance(flat._values["topic"], Topic)
    assert flat.topic.title == "topic"
    many = Reply.objects.get_many([reply.pk, Reply().pk], pointer_depth=1)
    assert many[1] is None and many[0] is not None and many[0].note.title == "other"


def test_queries_load_pointer_targets_across_shards(cluster: RedisCluster) -> None:
    notes = Note.objects.bulk_create([Note(title=f"n{i}", rank=i) for i in range(6)])
    Reply.objects.bulk_create([Reply(subject=f"t{i}", note=notes[i % 6]) for i in range(12)])
    found = Reply.objects.order_by("subject").filter(subject__startswith="t1")
    assert [(r.subject, r.note.title) for r in found] == [
        ("t1", "n1"), ("t10", "n4"), ("t11", "n5")]
    assert all(isinstance(r._values["note"], Note) for r in found)
    shallow = list(Reply.objects.filter(subject="t3", pointer_depth=0))
    assert not isinstance(shallow[0]._values["note"], Note)
    assert shallow[0].note.title == "n3"
    notes[4].delete()
    dangling = Reply.objects.filter(subject="t4").first()
    assert dangling is not None and dangling.note is None


# -- unique constraints: global claims in the slot of the value ---------------------------------
class Member(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"
        unique_together = (("first", "last"),)

    email = attributes.Unicode(unique=True)
    price = attributes.Decimal(unique=True, null=True)
    first = attributes.Unicode(null=True)
    last = attributes.Unicode(null=True)
    visits = attributes.Integer(index=True, default=0)


class Quarterly(ActiveRecord):
    class Meta:
        namespace = "tests.cluster"
        shards = 4

    code = attributes.Unicode(unique=True)


def test_unique_values_are_global_across_shards(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    ann = Member.create(email="ann@example.com", price=decimal.Decimal("1.50"),
                        first="Ann", last="Lee")
    before = every_key(local_cluster)
    attempts = [Member(email="ann@example.com"),
                Member(email="bob@example.com", price=decimal.Decimal("1.5")),  # equal value
                Member(email="cy@example.com", first="Ann", last="Lee")]
    for attempt in attempts:  # other ids, so (mostly) other shards
        with pytest.raises(errors.UniqueViolation) as caught:
            attempt.save()
        assert caught.value.owner == str(ann.pk)
        assert every_key(local_cluster) == before  # nothing written, claims released
    with pytest.raises(errors.UniqueViolation):
        Member.objects.bulk_create([Member(email="new@example.com"),
                                    Member(email="ann@example.com")])
    with pytest.raises(errors.UniqueViolation):
        Member.objects.bulk_create([Member(email="twice@example.com"),
                                    Member(email="twice@example.com")])
    assert every_key(local_cluster) == before
    assert Member.objects.filter(email="ann@example.com").count() == 1


def test_a_changed_or_deleted_value_is_free_again(cluster: RedisCluster) -> None:
    ann = Member.create(email="ann@example.com", first="Ann", last="Lee")
    ann.email = "ann@new.example.com"
    ann.save()
    bob = Member.create(email="ann@example.com")  # the old value, released by the save
    with pytest.raises(errors.UniqueViolation):
        Member.create(email="ann@new.example.com")
    bob.delete()
    Member.create(email="ann@example.com", first="Ann", last="Other")  # released by delete
    found = Member.objects.get(email="ann@new.example.com")
    assert found is not None and found.pk == ann.pk


def test_a_save_touching_no_unique_value_is_one_round_trip(cluster: RedisCluster) -> None:
    ann = Member.create(email="ann@example.com", first="Ann", last="Lee")
    ann.visits = 1
    ann.save()  # connections and scripts
    ann.email = "ann@elsewhere.example.com"
    ann.save()
    rounds = RoundTrips()
    ann.visits = 2
    ann.save()
    assert rounds.count == 1
    rounds.reset()
    ann.email = "ann@example.com"
    ann.save()  # claim the new value, save, release the old: three round trips
    assert rounds.count == 3


def test_an_orphan_claim_is_taken_over_once_it_is_old(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """QuerySet.delete removes records by id and leaves their claims (an orphan: its
    holder does not hold the value); so does a save stopped between claim and write. A
    young orphan counts as taken (a save may still be writing); an old one is taken over."""
    Member.create(email="gone@example.com")
    assert Member.objects.filter(email="gone@example.com").delete() == 1
    with pytest.raises(errors.UniqueViolation):
        Member.create(email="gone@example.com")
    monkeypatch.setattr(claims, "GRACE_MS", 0)
    again = Member.create(email="gone@example.com")
    found = Member.objects.get(email="gone@example.com")
    assert found is not None and found.pk == again.pk
    with pytest.raises(errors.UniqueViolation):  # and now it is held for real
        Member.create(email="gone@example.com")


def _race_creates(url: str, values: list[str], seed: int, grace_ms: int, start: Any,
                  out: Any) -> None:
    """One racing process: creates a Member with every value, in an order of its own;
    reports the values it won, those it got a typed retriable error for, and how many
    of its writes were refused (a token revoked by a takeover)."""
    configure.connection_pool(url=url, cluster=True)
    claims.GRACE_MS = grace_ms
    refusals = [0]
    refused = claims.Grant.refused

    def counting(self: claims.Grant, *args: Any, **kwargs: Any) -> Any:
        refusals[0] += 1
        return refused(self, *args, **kwargs)

    claims.Grant.refused = counting  # type: ignore[method-assign]
    won: list[str] = []
    retriable: list[str] = []
    start.wait()
    for value in random.Random(seed).sample(values, len(values)):
        try:
            Member.create(email=value)
            won.append(value)
        except errors.UniqueViolation:
            pass
        except errors.RepocketConnectionError as exc:  # the claim kept changing hands
            assert "kept changing hands" in str(exc)
            retriable.append(value)
    out.put((won, retriable, refusals[0]))
    configure.reset()


def test_racing_processes_get_each_value_once(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    """8 processes create records with the same 200 values (spread over the claim buckets
    and the shards). Four keep the grace period (a live claim is never taken over); four
    have none, so they take over every claim whose record is not written yet (revoking
    its token first), and writes are refused as they race: still no value is ever held
    by two records, and every value is granted once (a value no process was granted is
    one a process got the typed retriable error for: free to take)."""
    values = [f"racer{i}@example.com" for i in range(200)]
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    processes = [context.Process(target=_race_creates, args=(
        local_cluster.url, values, seed, 0 if seed % 2 else claims.GRACE_MS, start, out))
        for seed in range(8)]
    for process in processes:
        process.start()
    start.set()
    results = [out.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    won = [value for won_, _retriable, _refusals in results for value in won_]
    assert len(won) == len(set(won))  # no value granted twice
    retriable = {value for _won, failed, _refusals in results for value in failed}
    assert set(values) - set(won) <= retriable
    for value in set(values) - set(won):
        Member.create(email=value)
    assert sorted(Member.objects.values_list("email", flat=True)) == sorted(values)
    report = Member.objects.check()
    assert report.ok, report.problems[:5]
    claimed = claim_hashes(cluster, "email")  # no claim left dangling, each its holder's
    assert sorted(claimed) == sorted(value.encode() for value in values)
    holders = {record.email: str(record.pk) for record in Member.objects.all()}
    assert all(claims.parse_token(token)[0] == holders[field_.decode()]
               for field_, token in claimed.items())


def claim_hashes(cluster: RedisCluster, group: str) -> dict[bytes, bytes]:
    """Every global claim of one constraint of Member: unique field -> stored token."""
    found: dict[bytes, bytes] = {}
    for bucket in range(keyspace.CLAIM_BUCKETS):
        found.update(cluster.hgetall(keyspace.claim_key(Member._meta.prefix, (group,), bucket)))
    return found


def fences(cluster: RedisCluster, model: type[ActiveRecord] = Member) -> dict[bytes, bytes]:
    """Every revoked claim token in the fence hashes of the model's shards."""
    found: dict[bytes, bytes] = {}
    for prefix in model._meta.shard_prefixes():
        found.update(cluster.hgetall(keyspace.fence_key(prefix)))
    return found


# -- fencing: a save stalled between its claim and its write -----------------------------------
def run_step(client: Any, step: Any) -> Any:
    """One step of a plan: a call, or a Gather's calls (an operation stopped there: its
    next step is returned, not run)."""
    if isinstance(step, Gather):
        return step.combine([run_step(client, call) for call in step.calls])
    assert isinstance(step, Call)
    return step.decode(sync.transport_for(client).run(step, step.args))


def test_a_save_stalled_after_its_claim_is_refused_once_taken_over(
        cluster: RedisCluster, local_cluster: LocalCluster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A claims a value and stalls before its write (a GC pause, the network); its claim
    is old enough to be taken over (GRACE_MS is 0 here) and B takes the value: B revokes
    A's token in A's shard first, so A's late write is refused, writes nothing, and A's
    save runs the protocol again: UniqueViolation naming B. Without the fence A's write
    would have given the value to a second record."""
    stalled = Member(email="stall@example.com")
    write = run_step(cluster, operations.compile_save(stalled))  # claimed; the write waits
    (token,) = claim_hashes(cluster, "email").values()
    assert token.startswith(f"{stalled.pk}@".encode())
    monkeypatch.setattr(claims, "GRACE_MS", 0)
    Member.create(email="warm@example.com")  # scripts loaded: round trips counted below
    rounds = RoundTrips()
    taker = Member.create(email="stall@example.com")
    assert rounds.count == 4  # claim (held), revoke in A's shard, claim again, write
    assert token in fences(cluster)
    rounds.reset()
    with pytest.raises(errors.UniqueViolation) as caught:
        sync.execute(cluster, write)  # A wakes up
    assert caught.value.owner == str(taker.pk)
    # the write refused, the protocol again: claim (held by B), revocation refused (B
    # holds it), then A's release of what it took (B's now: left alone)
    assert rounds.count == 4
    assert Member.objects.get(id=stalled.pk) is None
    found = list(Member.objects.filter(email="stall@example.com"))
    assert [record.pk for record in found] == [taker.pk]
    assert Member.objects.check().ok


def tokens(cluster: RedisCluster, model: type[ActiveRecord] = Member) -> dict[bytes, bytes]:
    """Every '<id>\\0<fields>' -> token in the token hashes of the model's shards."""
    found: dict[bytes, bytes] = {}
    for prefix in model._meta.shard_prefixes():
        found.update(cluster.hgetall(keyspace.tokens_key(prefix)))
    return found


def held_by(cluster: RedisCluster, record: Member) -> bytes:
    """The token the shard keeps for the record's email ('' when none)."""
    return tokens(cluster).get(f"{record.pk}\0email".encode(), b"")


def _holders_after_a_third_record_tries(value: str) -> list[Any]:
    """Y saves ``value`` (a UniqueViolation is fine); the records holding it after."""
    with contextlib.suppress(errors.UniqueViolation):
        Member.create(email=value, first="y", last="y")
    return [record.pk for record in Member.objects.filter(email=value)]


def test_two_saves_of_one_record_never_leave_a_value_unclaimed(
        cluster: RedisCluster) -> None:
    """S1 moves R from V to W while S2, a stale instance of R, sets V: S2's claim of V
    answers 'had' (R's own, token t) before S1 writes. S1's write moves R off V and
    retires t in R's shard, then releases V's claim only while it is still t; S2's write
    carrying t is refused, and S2 claims V again (a fresh token). Without the retirement
    R held V with no claim and a third record could take V too."""
    record = Member.create(email="u@example.com", first="r", last="r")
    stale = Member.objects.get(id=record.pk)  # S2: loaded when R held U
    record.email = "v@example.com"
    record.save()
    retired = held_by(cluster, record)
    assert retired
    moving = Member.objects.get(id=record.pk)
    moving.email = "w@example.com"
    stale.email = "v@example.com"
    s1 = run_step(cluster, operations.compile_save(moving))  # S1 claims W
    s2 = run_step(cluster, operations.compile_save(stale))   # S2 claims V: had t
    s1_release = run_step(cluster, s1)                       # S1 writes W, retires t
    assert retired in fences(cluster) and held_by(cluster, record) != retired
    sync.execute(cluster, s1_release)                        # V's claim was t: released
    sync.execute(cluster, s2)                                # refused, claims V again
    assert Member.objects.get(id=record.pk).email == "v@example.com"
    assert _holders_after_a_third_record_tries("v@example.com") == [record.pk]
    assert claim_hashes(cluster, "email")[b"v@example.com"].startswith(
        f"{record.pk}@".encode())


def test_a_release_leaves_a_claim_retaken_with_a_fresh_token(
        cluster: RedisCluster) -> None:
    """The same race, S2 re-claiming V before S1's release: S1 releases only the token it
    retired, so the claim S2 took afresh stays, and R holds V with its claim."""
    record = Member.create(email="v@example.com", first="r", last="r")
    stale = Member.objects.get(id=record.pk)
    moving = Member.objects.get(id=record.pk)
    moving.email = "w@example.com"
    s2_step = operations.compile_save(stale, whole=True)  # a whole save writes V back
    s1 = run_step(cluster, operations.compile_save(moving))
    s2 = run_step(cluster, s2_step)                       # had t
    retired = held_by(cluster, record)
    s1_release = run_step(cluster, s1)                    # S1 writes W, retires t
    s2_again = run_step(cluster, s2)                      # refused by t
    s2_write = run_step(cluster, s2_again)                # claims V afresh (t replaced)
    fresh = claim_hashes(cluster, "email")[b"v@example.com"]
    assert fresh != retired and fresh.startswith(f"{record.pk}@".encode())
    sync.execute(cluster, s1_release)                     # not t any more: left alone
    assert claim_hashes(cluster, "email")[b"v@example.com"] == fresh
    assert retired in fences(cluster)
    sync.execute(cluster, s2_write)                       # S2 writes V
    assert Member.objects.get(id=record.pk).email == "v@example.com"
    assert tokens(cluster)[f"{record.pk}\0email".encode()] == fresh
    assert _holders_after_a_third_record_tries("v@example.com") == [record.pk]


def test_a_delete_retires_the_token_a_stale_save_was_handed(
        cluster: RedisCluster) -> None:
    """S2 saves R whole (its claim of V answers 'had', token t) while S1 deletes R: the
    delete retires t in R's shard and releases V's claim (still t); S2's write carrying t
    is refused, claims V afresh and creates R again, holding V with its claim."""
    record = Member.create(email="v@example.com", first="r", last="r")
    stale = Member.objects.get(id=record.pk)
    s2 = run_step(cluster, operations.compile_save(stale, whole=True))  # had t
    retired = held_by(cluster, record)
    record.delete()
    assert retired in fences(cluster) and held_by(cluster, record) == b""
    assert b"v@example.com" not in claim_hashes(cluster, "email")
    assert claim_hashes(cluster, "first+last") == {}  # both of its claims released
    sync.execute(cluster, s2)
    assert Member.objects.get(id=record.pk).email == "v@example.com"
    assert _holders_after_a_third_record_tries("v@example.com") == [record.pk]
    assert Member.objects.check().ok


def test_a_fenced_write_of_a_value_the_record_does_not_hold_needs_its_token(
        cluster: RedisCluster) -> None:
    """The shard, not the client's view, decides: a write giving a record a unique value
    it does not hold there, with no token for it, is refused ('unclaimed') and writes
    nothing."""
    record = Member.create(email="u@example.com", first="r", last="r")
    record.email = "v@example.com"
    block = operations._save_block(record, whole=False)
    call = operations._save_call(Member, [block], lambda reply: reply,
                                 grant=claims.Grant({}, None))
    with pytest.raises(errors.RepocketConnectionError):
        sync.execute(cluster, call)
    assert Member.objects.get(id=record.pk).email == "u@example.com"
    assert list(Member.objects.filter(email="v@example.com")) == []


def test_a_save_giving_up_keeps_a_claim_another_save_of_its_record_wrote(
        cluster: RedisCluster) -> None:
    """S1 claims V for R (took t) and then finds first+last taken: it gives up. S2, another
    save of R, was handed t ('had') and wrote V. S1's undo revokes t in R's shard first,
    which refuses (R holds V), so V's claim stays: releasing it by token alone would have
    left R holding V unclaimed."""
    Member.create(email="q@example.com", first="q", last="q")
    record = Member.create(email="u@example.com", first="r", last="r")
    giving_up = Member.objects.get(id=record.pk)
    giving_up.email, giving_up.first, giving_up.last = "v@example.com", "q", "q"
    undo = run_step(cluster, operations.compile_save(giving_up))  # took V; first+last held
    other = Member.objects.get(id=record.pk)
    other.email = "v@example.com"
    other.save()                                                   # had t: writes V
    with pytest.raises(errors.UniqueViolation):
        sync.execute(cluster, undo)
    assert claim_hashes(cluster, "email")[b"v@example.com"].startswith(
        f"{record.pk}@".encode())
    assert _holders_after_a_third_record_tries("v@example.com") == [record.pk]
    assert Member.objects.check().ok


def test_a_save_changing_a_unique_value_costs_three_round_trips(
        cluster: RedisCluster) -> None:
    """Claim the new value, write (retiring the old value's token), release the old
    claim by that token: three round trips, and no claim left behind."""
    record = Member.create(email="one@example.com", first="o", last="o")
    record.email = "two@example.com"
    rounds = RoundTrips()
    record.save()
    assert rounds.count == 3
    assert list(claim_hashes(cluster, "email")) == [b"two@example.com"]
    assert Member.objects.check().ok


def test_a_stalled_save_of_an_existing_record_keeps_its_old_value(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for a change of value: the refused save writes nothing (the record keeps
    its old value and its claim), and a second attempt is refused as well."""
    ann = Member.create(email="ann@example.com")
    ann.email = "wanted@example.com"
    write = run_step(cluster, operations.compile_save(ann))
    monkeypatch.setattr(claims, "GRACE_MS", 0)
    bob = Member.create(email="wanted@example.com")
    with pytest.raises(errors.UniqueViolation) as caught:
        sync.execute(cluster, write)
    assert caught.value.owner == str(bob.pk)
    assert Member.objects.get(id=ann.pk).email == "ann@example.com"
    with pytest.raises(errors.UniqueViolation):
        ann.save()
    assert Member.objects.get(email="ann@example.com").pk == ann.pk
    assert Member.objects.check().ok


def test_a_stalled_bulk_create_writes_the_shards_it_still_may(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """bulk_create is atomic per shard batch: a batch relying on a revoked token is
    refused whole, runs the protocol again for its records and raises; the other
    shards' records are written."""
    batch = [Quarterly(code=f"q{i}") for i in range(12)]
    write = run_step(cluster, operations.compile_bulk_create(Quarterly, batch))
    victim = batch[0]
    monkeypatch.setattr(claims, "GRACE_MS", 0)
    taker = Quarterly.create(code=victim.code)
    with pytest.raises(errors.UniqueViolation) as caught:
        sync.execute(cluster, write)
    assert caught.value.owner == str(taker.pk)
    shard = Quarterly._meta.prefix_of(str(victim.pk))
    same = [r for r in batch if Quarterly._meta.prefix_of(str(r.pk)) == shard]
    others = [r for r in batch if r not in same]
    assert all(Quarterly.objects.get(id=r.pk) is None for r in same)
    assert all(Quarterly.objects.get(id=r.pk) is not None for r in others)
    assert Quarterly.objects.get(code=victim.code).pk == taker.pk
    for record in same[1:]:  # their claims were released: free to take
        Quarterly.create(code=record.code)
    assert Quarterly.objects.check().ok


def test_a_revocation_is_refused_when_the_holder_has_written(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """B judges A's claim an orphan (A not written yet, its claim old), but A writes
    before B's revocation runs in A's shard: the revocation refuses (A holds the value),
    nothing is fenced, and B's save raises UniqueViolation naming A."""
    first = Member(email="close@example.com")
    write = run_step(cluster, operations.compile_save(first))
    monkeypatch.setattr(claims, "GRACE_MS", 0)
    second = Member(email="close@example.com")
    revoke = run_step(cluster, operations.compile_save(second))  # held: revoke next
    assert isinstance(revoke, Call) and revoke.script.name == "revoke"
    sync.execute(cluster, write)  # A writes first
    with pytest.raises(errors.UniqueViolation) as caught:
        sync.execute(cluster, revoke)
    assert caught.value.owner == str(first.pk)
    assert fences(cluster) == {}
    direct = claims.Claim(Member, ("email",), ["close@example.com"], str(second.pk))
    token = claim_hashes(cluster, "email")[b"close@example.com"]
    assert sync.execute(cluster, direct.revoke(str(first.pk), token.decode())) == b"holds"
    assert fences(cluster) == {}
    assert Member.objects.get(email="close@example.com").pk == first.pk
    assert Member.objects.get(id=second.pk) is None and Member.objects.check().ok


async def test_the_asyncio_path_refuses_a_stalled_write(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The async executor runs the same plans: a write refused after a takeover."""
    client = configure.get_async_connection()
    stalled = Member(email="async@example.com")
    plan = operations.compile_save(stalled)
    assert isinstance(plan, Call)
    write = plan.decode(await aio.arun_call(client, plan, plan.args))
    monkeypatch.setattr(claims, "GRACE_MS", 0)
    taker = Member(email="async@example.com")
    await taker.asave()
    with pytest.raises(errors.UniqueViolation) as caught:
        await aio.aexecute(client, write)
    assert caught.value.owner == str(taker.pk)
    assert await Member.objects.aget(id=stalled.pk) is None
    assert (await Member.objects.aget(email="async@example.com")).pk == taker.pk  # type: ignore[union-attr]
    assert (await Member.objects.acheck()).ok
    await configure.aclose()


# -- check() and reindex(): every shard ----------------------------------------------------------
def test_check_walks_every_shard_and_repairs(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    notes = Note.objects.bulk_create([Note(title=str(i), rank=i, body=b"b") for i in range(40)])
    report = Note.objects.check(batch_size=7)
    assert report.ok and report.records == 40
    victim, listed, stale = notes[0], notes[1], notes[2]
    tag = victim._key().split("}")[0] + "}"
    cluster.srem(f"{listed._key().split('}')[0]}}}:ids", str(listed.pk))  # unlisted record
    cluster.sadd(f"{tag}:ids", "00000000-0000-1000-8000-000000000000")  # an id, no record
    cluster.delete(stale._key())  # its index entries and stream are left behind
    report = Note.objects.check()
    kinds = sorted(problem.kind for problem in report.problems)
    assert "unlisted-record" in kinds and "orphan-id" in kinds and "orphan-stream" in kinds
    assert "stale-entry" in kinds and not report.ok
    repaired = Note.objects.check(repair=True)
    assert repaired.repaired >= 4
    again = Note.objects.check()
    assert again.ok and again.records == 39
    assert Note.objects.filter(rank__gte=0).count() == 39
    assert Note.objects.reindex().ok


def test_check_reports_and_drops_orphan_claims(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    keep = Member.create(email="keep@example.com", first="K", last="P")
    Member.create(email="gone@example.com")
    Member.objects.filter(email="gone@example.com").delete()  # leaves its claim: an orphan
    assert Member.objects.check().ok  # too young to judge: maybe a save still writing
    monkeypatch.setattr(claims, "GRACE_MS", 0)
    report = Member.objects.check()
    assert [(p.kind, p.value) for p in report.problems] == [
        ("orphan-claim", b"gone@example.com")]
    repaired = Member.objects.check(repair=True)
    assert repaired.repaired == 1 and Member.objects.check().ok
    monkeypatch.setattr(claims, "GRACE_MS", 60_000)
    Member.create(email="gone@example.com")  # free again, without any takeover
    assert Member.objects.get(email="keep@example.com").pk == keep.pk


def test_check_finds_values_held_without_their_claim_and_claims_them(
        cluster: RedisCluster) -> None:
    """A value a record holds with no claim (or with a claim another record holds without
    holding the value) lets a second record take it: check() reports it, and repair
    claims it for the record (revoking the other record's token first); two records
    holding one value are a conflict, reported and never repaired."""
    free = Member.create(email="free@example.com")
    stolen = Member.create(email="stolen@example.com")
    email_key = {}  # unique field -> its claim hash
    for bucket in range(keyspace.CLAIM_BUCKETS):
        key = keyspace.claim_key(Member._meta.prefix, ("email",), bucket)
        email_key.update(dict.fromkeys(cluster.hkeys(key), key))
    cluster.hdel(email_key[b"free@example.com"], "free@example.com")
    ghost = "00000000-0000-4000-8000-000000000001"
    ghost_token = f"{ghost}@{int(time.time() * 1000)}@planted"
    cluster.hset(email_key[b"stolen@example.com"], "stolen@example.com", ghost_token)
    report = Member.objects.check()
    assert sorted((p.kind, p.record_id, p.value, p.holder) for p in report.problems) == [
        ("unclaimed-value", str(free.pk), b"free@example.com", ""),
        ("unclaimed-value", str(stolen.pk), b"stolen@example.com", ghost)]
    assert not report.ok
    repaired = Member.objects.check(repair=True)
    assert repaired.repaired == 2 and Member.objects.check().ok
    claimed = claim_hashes(cluster, "email")
    assert claims.parse_token(claimed[b"free@example.com"])[0] == str(free.pk)
    assert claims.parse_token(claimed[b"stolen@example.com"])[0] == str(stolen.pk)
    assert ghost_token.encode() in fences(cluster)  # the ghost's writes are refused
    with pytest.raises(errors.UniqueViolation):
        Member.create(email="free@example.com")

    # a second record holding a value: planted in another shard, behind repocket's back
    other = next(record for record in (Member(email=f"x{i}@example.com") for i in range(64))
                 if Member._meta.prefix_of(str(record.pk)) != Member._meta.prefix_of(
                     str(free.pk)))
    other.save()
    raw = cluster.hget(free._key(), "email")
    cluster.hset(other._key(), "email", raw)
    shard_hash = keyspace.unique_key(Member._meta.prefix_of(str(other.pk)), ("email",))
    for field_ in list(cluster.hkeys(shard_hash)):
        if cluster.hget(shard_hash, field_) == str(other.pk).encode():
            cluster.hdel(shard_hash, field_)
    cluster.hset(shard_hash, "free@example.com", str(other.pk))
    report = Member.objects.check(repair=True)
    conflicts = [(p.kind, p.value) for p in report.problems if p.kind == "unique-conflict"]
    assert conflicts == [("unique-conflict", b"free@example.com")]
    assert not report.ok
    assert claims.parse_token(claim_hashes(cluster, "email")[b"free@example.com"])[0] \
        == str(free.pk)  # left with the record that held it


def test_the_cluster_benchmark_counts_round_trips(
        redis_url: str, local_cluster: LocalCluster) -> None:
    """benchmarks/cluster.py on the suite's servers (small n, no writer processes): single
    record operations one round trip on both, a query one per primary on the cluster."""
    from benchmarks import cluster as bench

    configure.reset()
    try:
        lines: list[str] = []
        found = bench.run(n=12, url=redis_url, cluster_url=local_cluster.url, processes=0,
                          out=lines.append)
    finally:
        configure.reset()
    primaries = len(local_cluster.primaries)
    for name in ("create", "get", "save", "delete"):
        assert found["operations"]["standalone"][name][1] == 1.0
        assert found["operations"]["cluster"][name][1] == 1.0
    assert found["operations"]["standalone"]["count"][1] == 1.0
    assert found["operations"]["cluster"]["count"][1] == primaries
    assert found["shards"][1]["count"][1] == 1.0
    assert found["shards"][64]["order_by[:10]"][1] == primaries
    assert any(line.startswith("| order_by[:10] |") for line in lines)


def test_get_or_create_by_a_unique_value_creates_once(cluster: RedisCluster) -> None:
    ann, created = Member.objects.get_or_create(email="ann@example.com",
                                                defaults={"visits": 3})
    assert created and ann.visits == 3
    same, created = Member.objects.get_or_create(email="ann@example.com",
                                                 defaults={"visits": 9})
    assert not created and same.pk == ann.pk and same.visits == 3
    updated, created = Member.objects.update_or_create(email="ann@example.com",
                                                       defaults={"visits": 4})
    assert not created and updated.pk == ann.pk
    assert Member.objects.get(email="ann@example.com").visits == 4
    with pytest.raises(errors.UniqueViolation):  # found by email, contradicts the rest
        Member.objects.get_or_create(email="ann@example.com", first="Zed")

    values = [f"goc{i}@example.com" for i in range(8)]
    answers: dict[str, set[str]] = {value: set() for value in values}
    creations: list[str] = []
    failures: list[BaseException] = []

    def caller(seed: int) -> None:
        for value in random.Random(seed).sample(values, len(values)):
            try:
                record, made = Member.objects.get_or_create(email=value)
                answers[value].add(str(record.pk))
                if made:
                    creations.append(value)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    assert sorted(creations) == sorted(values)  # exactly one creator per value
    assert all(len(ids) == 1 for ids in answers.values())  # every caller got that record


def test_writes_during_a_resharding_are_neither_lost_nor_doubled(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    """Slots migrate (SETSLOT MIGRATING/IMPORTING, MIGRATE a few keys at a time, SETSLOT
    NODE: what redis-cli --cluster reshard does) while a writer creates and updates records:
    its calls are followed (MOVED, ASK) or refused whole (TRYAGAIN, a typed retriable
    error: the writer retries the same record); every acknowledged write is there once."""
    seed = Note.objects.bulk_create([Note(title="seed", rank=i) for i in range(64)])
    slots = sorted({key_slot(note._key().split("}")[0].encode() + b"}") for note in seed})[:2]
    stop = threading.Event()
    acknowledged: dict[str, int] = {}
    failures: list[BaseException] = []
    retried = [0]

    def writer() -> None:
        number = 0
        while not stop.is_set():
            note = Note(title=f"w{number}", rank=number)
            for _attempt in range(50):
                try:
                    note.save()
                    break
                except errors.RepocketConnectionError:
                    retried[0] += 1
                    time.sleep(0.01)
                except BaseException as exc:  # pragma: no cover - reported below
                    failures.append(exc)
                    return
            else:
                failures.append(AssertionError(f"{note.pk} never saved"))
                return
            acknowledged[str(note.pk)] = number
            number += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for slot in slots:
            migrate_slowly(local_cluster, slot)
    finally:
        stop.set()
        thread.join()
    assert not failures, failures[:3]
    assert len(acknowledged) >= 5  # the writer ran during the migrations
    notes = Note.objects.filter(title__startswith="w")
    assert sorted(str(n.pk) for n in notes) == sorted(acknowledged)  # none lost, none twice
    assert all(n.rank == acknowledged[str(n.pk)] for n in notes)
    assert Note.objects.count() == 64 + len(acknowledged)
    assert Note.objects.check().ok


def migrate_slowly(local_cluster: LocalCluster, slot: int) -> None:
    """Move ``slot`` to another primary a key at a time (with pauses for the writer)."""
    source, source_id = slot_owner(local_cluster, slot)
    target = next(n for n in local_cluster.primaries if n.port != source.port)
    with source.client() as src, target.client() as dst:
        target_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 2)
            if not keys:
                break
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS",
                                *keys)
            time.sleep(0.01)
        for node in (target, source):
            with node.client() as each:
                each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    local_cluster.wait_until_ok()


def test_explain_sums_the_shards(cluster: RedisCluster) -> None:
    Note.objects.bulk_create([Note(title=str(i), rank=i % 5) for i in range(50)])
    plan = Note.objects.filter(rank=2).explain()
    assert plan["chosen"].startswith("index") or "rank" in plan["chosen"]
    assert plan["examined at most"] == 10  # the shards' candidates, summed
    assert plan["strategy"] in ("gather", "stream")


# -- update(): the update script once per shard ------------------------------------------------
def test_update_runs_once_per_shard_and_sums_the_counts(cluster: RedisCluster) -> None:
    """A filter on an indexed field: one update call per shard, one pipeline per primary;
    the counts summed; indexes kept (the filter on the new values, check())."""
    Sample.objects.bulk_create([Sample(title=f"t{i}", rank=i % 5) for i in range(60)])
    Sample.objects.filter(rank=9).update(title="warm")  # connections and scripts
    rounds = RoundTrips()
    assert Sample.objects.filter(rank=2).update(title="dos") == 12
    assert rounds.count == len(nodes_of(cluster, Sample._meta.shard_prefixes()))
    assert sorted(r.rank for r in Sample.objects.filter(title="dos")) == [2] * 12
    assert Sample.objects.filter(rank__gte=3).update(rank=F("rank") + 10) == 24
    assert Sample.objects.filter(rank__gte=13).count() == 24
    assert Sample.objects.filter(rank__in=[3, 4]).count() == 0
    assert Sample.objects.filter(title__startswith="t").update(rank=None) == 48
    assert Sample.objects.filter(rank__isnull=True).count() == 48
    assert Sample.objects.filter(rank=7).update(title="none") == 0
    assert Sample.objects.none().update(title="none") == 0
    assert Sample.objects.check().ok


def test_an_update_pinned_to_ids_goes_to_their_shards_only(cluster: RedisCluster) -> None:
    records = Sample.objects.bulk_create([Sample(title=str(i), rank=i) for i in range(40)])
    by_shard: dict[str, list[Any]] = {}
    for record in records:
        by_shard.setdefault(record._key().split("}")[0] + "}", []).append(record.pk)
    (one_tag, one), (other_tag, other) = list(by_shard.items())[:2]
    missing = Sample().pk
    pinned = [one[0], other[0], missing]  # the last one does not exist
    third = next(record.pk for record in records if record.pk not in pinned)
    # the first passes open connections (a node's pipeline connection, once free, may be
    # kept by the next single call on that node: the lean path) and load scripts
    for counted in (False, False, True):
        rounds = RoundTrips()
        assert Sample.objects.filter(id=one[0]).update(rank=F("rank") * 2) == 1
        assert rounds.count == 1 or not counted  # one call, on the record's node
        rounds.reset()
        assert Sample.objects.filter(id__in=pinned).update(title="pinned") == 2
        assert rounds.count == len(nodes_of(cluster, [one_tag, other_tag, tag_of(
            Sample, missing)])) or not counted
        rounds.reset()  # an id and a condition: the query script, on the id's shard only
        assert Sample.objects.filter(id=third, rank__gte=0).update(title="both") == 1
        assert rounds.count == 1 or not counted
    assert {r.pk for r in Sample.objects.filter(title="pinned")} == {one[0], other[0]}
    assert Sample.objects.get(id=one[0]).rank == 8 * next(  # type: ignore[union-attr]
        r.rank for r in records if r.pk == one[0])
    assert Sample.objects.check().ok


def test_f_increments_from_threads_end_exact_on_a_cluster(cluster: RedisCluster) -> None:
    """8 threads x 40 increments of one record, and of every record of a filter spread
    over the shards: no update lost, the index in step."""
    one = Note.create(title="counter", rank=0)
    many = Note.objects.bulk_create([Note(title="many", rank=0) for _ in range(20)])
    failures: list[BaseException] = []
    counts: list[int] = []

    def increment() -> None:
        try:
            for _ in range(40):
                Note.objects.filter(id=one.pk).update(rank=F("rank") + 1)
                counts.append(Note.objects.filter(title="many").update(rank=F("rank") + 1))
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=increment) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    assert Note.objects.get(id=one.pk).rank == 320  # type: ignore[union-attr]
    assert counts == [20] * 320
    assert [r.rank for r in Note.objects.get_many([r.pk for r in many])] == [320] * 20
    assert Note.objects.filter(rank=320).count() == 21
    assert Note.objects.check().ok


def test_an_update_over_a_page_lists_each_shards_ids(
        cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """More candidates in a shard than a call examines: that shard's ids are listed, then
    updated a page at a time, each call checking the filter again."""
    from repocket.core import update

    monkeypatch.setattr(update, "PAGE", 2)
    Sample.objects.bulk_create([Sample(title="a" if i % 3 else "b", rank=i) for i in range(90)])
    assert Sample.objects.filter(title="a").update(rank=F("rank") + 1000) == 60
    assert Sample.objects.filter(rank__gte=1000).count() == 60
    assert {r.title for r in Sample.objects.filter(rank__gte=1000)} == {"a"}
    assert Sample.objects.filter(rank__lt=1000).count() == 30


def test_an_update_of_a_unique_constraints_field_is_refused_others_work(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    ann = Member.create(email="ann@example.com", first="Ann", last="A")
    before = every_key(local_cluster)
    rounds = RoundTrips()
    for values in ({"email": "new@example.com"}, {"price": decimal.Decimal("1.5")},
                   {"last": "B"}, {"visits": 2, "first": None}):
        with pytest.raises(errors.Unsupported, match=r"Member\.\w+: update\(\) .*Redis Cluster"):
            Member.objects.filter(id=ann.pk).update(**values)
    assert rounds.count == 0 and every_key(local_cluster) == before
    assert Member.objects.filter(email="ann@example.com").update(visits=F("visits") + 5) == 1
    assert Member.objects.get(id=ann.pk).visits == 5  # type: ignore[union-attr]


def test_an_update_of_a_pointer_reads_its_target_first(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    note, other = Note.create(title="n", rank=1), Note.create(title="o", rank=2)
    replies = Reply.objects.bulk_create([Reply(subject=f"r{i}", note=note) for i in range(6)])
    assert Reply.objects.filter(subject__startswith="r").update(note=other) == 6
    assert {r.note.pk for r in Reply.objects.get_many([r.pk for r in replies])} == {other.pk}
    gone = Note.create(title="gone", rank=3)
    gone_id = gone.pk
    gone.delete()
    before = every_key(local_cluster)
    with pytest.raises(errors.PointerTargetMissing, match="note"):
        Reply.objects.filter(subject="r1").update(note=gone_id)
    assert every_key(local_cluster) == before


async def test_aupdate_on_a_cluster(cluster: RedisCluster) -> None:
    records = await Note.objects.abulk_create([Note(title="x", rank=i) for i in range(30)])
    assert await Note.objects.filter(rank__lt=10).aupdate(rank=F("rank") + 100) == 10
    assert await Note.objects.filter(id=records[20].pk).aupdate(title="y") == 1
    assert await Note.objects.filter(rank__gte=100).acount() == 10
    found = await Note.objects.aget(id=records[20].pk)
    assert found is not None and found.title == "y"
    await configure.aclose()


# -- get_or_create by id: the record's shard is known from the id ------------------------------
def test_get_or_create_by_id_is_one_call_on_the_records_node(cluster: RedisCluster) -> None:
    wanted = Note().pk
    # connections and scripts, on the node of the shard of the id wanted
    warm = next(pk for pk in (Note().pk for _ in range(10_000))
                if tag_of(Note, pk) == tag_of(Note, wanted))
    Note.objects.get_or_create(id=warm, defaults={"title": "warm"})
    Note.objects.get_or_create(id=warm, defaults={"title": "warm"})
    rounds = RoundTrips()
    made, created = Note.objects.get_or_create(id=wanted, defaults={
        "title": "first", "rank": 1, "body": b"b"})
    assert created and made.pk == wanted and rounds.count == 1
    assert made._key().startswith(tag_of(Note, wanted))
    rounds.reset()
    found, created = Note.objects.get_or_create(id=wanted, defaults={"title": "second"})
    assert not created and rounds.count == 1  # the record itself, its stream, in one call
    assert (found.pk, found.title, found.rank, found.body) == (wanted, "first", 1, b"b")
    updated, created = Note.objects.update_or_create(id=wanted, defaults={"rank": 5})
    assert not created and updated.rank == 5 and Note.objects.get(id=wanted).rank == 5  # type: ignore[union-attr]
    assert Note.objects.filter(rank=5).count() == 1 and Note.objects.check().ok


def test_get_or_create_by_id_races_create_once(cluster: RedisCluster) -> None:
    wanted = [Note().pk for _ in range(6)]
    creations: list[Any] = []
    failures: list[BaseException] = []

    def caller(seed: int) -> None:
        for pk in random.Random(seed).sample(wanted, len(wanted)):
            try:
                record, made = Note.objects.get_or_create(id=pk, defaults={"title": str(seed)})
                assert record.pk == pk
                if made:
                    creations.append(pk)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    assert sorted(map(str, creations)) == sorted(map(str, wanted))  # one creator per id
    assert Note.objects.count() == 6


def test_get_or_create_by_id_checks_a_pointer_target_first(
        cluster: RedisCluster, local_cluster: LocalCluster) -> None:
    note = Note.create(title="n", rank=1)
    reply, created = Reply.objects.get_or_create(id=Reply().pk, defaults={"note": note})
    assert created and Reply.objects.get(id=reply.pk).note.pk == note.pk  # type: ignore[union-attr]
    gone_id = note.pk
    note.delete()
    before = every_key(local_cluster)
    with pytest.raises(errors.PointerTargetMissing, match="note"):
        Reply.objects.get_or_create(id=Reply().pk, defaults={"note": gone_id})
    assert every_key(local_cluster) == before
    # found: the defaults are not used, their targets not checked (as on one server)
    same, created = Reply.objects.get_or_create(id=reply.pk, defaults={"note": gone_id})
    assert not created and same.pk == reply.pk


async def test_aget_or_create_by_id_on_a_cluster(cluster: RedisCluster) -> None:
    wanted = Note().pk
    made, created = await Note.objects.aget_or_create(id=wanted, defaults={"title": "a"})
    assert created and made.pk == wanted
    found, created = await Note.objects.aget_or_create(id=wanted, defaults={"title": "b"})
    assert not created and found.title == "a"
    await configure.aclose()
