"""Writes that stay whole and bounded (issue 9): values and ByteStreams past the server's
string limit fail before any write with a typed error naming the field; bulk_create and
get split their work into calls by a budget; a field added to a model later is indexed
with its declared default when an old record is saved."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from repocket import ActiveRecord, attributes, errors
from repocket.core import ops
from repocket.exec import limits
from tests.conftest import RoundTrips, snapshot

MB = 1024 * 1024


class Log(ActiveRecord):
    class Meta:
        namespace = "limits"

    label = attributes.Unicode(index=True)
    code = attributes.Unicode(unique=True, null=True)
    body = attributes.ByteStream()


@pytest.fixture
def one_mb_limit(client: redis.Redis) -> Iterator[redis.Redis]:
    """The server's proto-max-bulk-len at its lowest, 1 MB (restored afterwards)."""
    before = client.config_get("proto-max-bulk-len")["proto-max-bulk-len"]
    client.config_set("proto-max-bulk-len", MB)
    limits._MAX_BYTES.pop(client, None)
    yield client
    client.config_set("proto-max-bulk-len", before)


def test_the_executor_reads_the_limit_once_per_client(one_mb_limit: redis.Redis) -> None:
    assert limits.max_bytes(one_mb_limit) == MB
    one_mb_limit.config_set("proto-max-bulk-len", 2 * MB)
    assert limits.max_bytes(one_mb_limit) == MB  # cached for the client


def test_a_save_whose_stream_would_pass_the_limit_writes_nothing(
        one_mb_limit: redis.Redis) -> None:
    log = Log.create(label="a", code="c1", body=b"x" * (MB // 2 + 10))
    log.label = "b"  # an indexed and a unique field change in the same save
    log.code = "c2"
    log.body = log.body + b"y" * (MB // 2)  # an APPEND past 1 MB
    before = snapshot(one_mb_limit)
    with pytest.raises(errors.ValueTooLarge) as raised:
        log.save()
    assert raised.value.field == "body" and raised.value.model == "Log"
    assert snapshot(one_mb_limit) == before  # not torn: hash, index, claim all as they were
    assert Log.objects.get(label="a").code == "c1"


def test_an_append_past_the_limit_writes_nothing(one_mb_limit: redis.Redis) -> None:
    log = Log.create(label="a", body=b"x" * (MB - 10))
    before = snapshot(one_mb_limit)
    with pytest.raises(errors.ValueTooLarge) as raised:
        log.append_body(b"y" * 20)
    assert raised.value.field == "body" and raised.value.value == MB + 10
    assert snapshot(one_mb_limit) == before
    assert log.append_body(b"y" * 10) == MB  # exactly the limit is fine


def test_a_value_past_the_limit_is_refused_in_python(one_mb_limit: redis.Redis,
                                                     roundtrips: RoundTrips) -> None:
    roundtrips.reset()
    with pytest.raises(errors.ValueTooLarge) as raised:
        Log.create(label="z" * (MB + 1))
    assert raised.value.field == "label"
    with pytest.raises(errors.ValueTooLarge) as raised:
        Log.create(label="a", body=b"z" * (MB + 1))
    assert raised.value.field == "body"
    assert roundtrips.count == 1  # the CONFIG GET; nothing else was sent
    assert Log.objects.count() == 0


class Leaf(ActiveRecord):
    class Meta:
        namespace = "limits"

    n = attributes.Integer(index=True)
    tag = attributes.Unicode(unique=True)


def test_bulk_create_is_split_by_a_work_budget(client: redis.Redis,
                                               roundtrips: RoundTrips) -> None:
    records = [Leaf(n=i, tag=f"t{i}") for i in range(3000)]
    call = ops.compile_bulk_create(Leaf, records)
    per_record = 4 + 2 * len(Leaf._meta.model_keys)
    assert len(call.args) < 3000 * 20  # the first call holds a budget's worth, not all
    first_batch = call.args[0]
    assert first_batch * per_record <= ops.WRITE_BUDGET < (first_batch + 1) * per_record
    Leaf.objects.bulk_create([Leaf(n=-1, tag="warm-up")])  # loads the script, reads the limit
    roundtrips.reset()
    Leaf.objects.bulk_create(records, batch_size=3000)
    expected_calls = -(-3000 // first_batch)
    assert roundtrips.count == expected_calls > 1
    assert Leaf.objects.count() == 3001
    assert client.zcard(Leaf._meta.model_keys[0]) == 3001


class Tree(ActiveRecord):
    class Meta:
        namespace = "limits"

    label = attributes.Unicode()
    left = attributes.Pointer("self", null=True)
    right = attributes.Pointer("self", null=True)


def test_a_wide_pointer_tree_loads_in_calls_bounded_by_the_read_budget(
        client: redis.Redis, roundtrips: RoundTrips, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "READ_BUDGET", 100)
    level = [Tree(label=f"leaf{i}") for i in range(256)]
    Tree.objects.bulk_create(level)
    depth = 0
    while len(level) > 1:
        level = [Tree(label=f"d{depth}.{i}", left=level[2 * i], right=level[2 * i + 1])
                 for i in range(len(level) // 2)]
        Tree.objects.bulk_create(level)
        depth += 1
    root_id = level[0].id
    Tree.objects.get(id=root_id, pointer_depth=0)  # loads the script
    roundtrips.reset()
    root = Tree.objects.get(id=root_id, pointer_depth=16)
    assert roundtrips.count == -(-511 // 100)  # 511 records, at most 100 per call
    leaves, todo = [], [root]
    while todo:
        node = todo.pop()
        if node.left is None:
            leaves.append(node.label)
        else:
            todo += [node.left, node.right]
    assert roundtrips.count == -(-511 // 100)  # every node was loaded by those calls
    assert sorted(leaves) == sorted(f"leaf{i}" for i in range(256))


def test_an_old_record_saved_after_a_field_was_added_indexes_its_default(
        client: redis.Redis) -> None:
    class Player(ActiveRecord):
        class Meta:
            namespace = "limits.evolve"

        name = attributes.Unicode()

    old = Player.create(name="ann")
    doomed = Player.create(name="bob")

    with pytest.warns(errors.ModelRedefined):
        class Player(ActiveRecord):  # type: ignore[no-redef]  # level added later, indexed
            class Meta:
                namespace = "limits.evolve"

            name = attributes.Unicode()
            level = attributes.Integer(index=True, default=3)
            rank = attributes.Unicode(unique=True, default="novice")

    index = Player._meta.model_keys[0]
    unique = Player._meta.model_keys[-1]
    loaded = Player.objects.get(id=old.id)
    assert loaded.level == 3
    loaded.name = "ann2"  # a partial save that does not touch level
    loaded.save()
    assert client.zrange(index, 0, -1, withscores=True) == [(str(old.id).encode(), 3.0)]
    assert client.hgetall(unique) == {b"novice": str(old.id).encode()}
    with pytest.raises(errors.UniqueViolation):  # the default is a value like any other
        Player.objects.get(id=doomed.id).save()
    loaded.delete()  # the default's entries go with the record
    assert client.exists(index, unique) == 0


def test_get_or_create_passes_the_limit_with_its_claim(one_mb_limit: redis.Redis) -> None:
    """get_or_create's call is the save's frame then the claim to find by: the limit is
    bound into the frame, the claim stays last."""
    before = snapshot(one_mb_limit)
    with pytest.raises(errors.ValueTooLarge) as raised:
        Log.objects.get_or_create(code="big", defaults={"label": "a", "body": b"z" * (MB + 1)})
    assert raised.value.field == "body"
    assert snapshot(one_mb_limit) == before
    made, created = Log.objects.get_or_create(code="ok", defaults={"body": b"z" * (MB // 2)})
    assert created
    found, created = Log.objects.get_or_create(code="ok", defaults={"label": "other"})
    assert not created and found.pk == made.pk and found.body == b"z" * (MB // 2)
