"""bulk_create (one round trip per atomic batch, all-or-nothing unique checks) and
get_many (one round trip, order kept, None for missing ids)."""

from __future__ import annotations

import uuid

import pytest
import redis

from repocket import ActiveRecord, attributes, errors
from tests.conftest import RoundTrips, snapshot

ITEM = "repocket:tb:Item"


class Bin(ActiveRecord):
    class Meta:
        namespace = "tb"

    label = attributes.Unicode(index=True)


class Item(ActiveRecord):
    class Meta:
        namespace = "tb"

    sku = attributes.Unicode(unique=True)
    n = attributes.Integer(index=True, null=True)
    bin = attributes.Pointer(Bin, null=True)
    data = attributes.ByteStream(null=True)


class Pair(ActiveRecord):
    class Meta:
        namespace = "tb"
        unique_together = [("a", "b")]  # noqa: RUF012

    a = attributes.Unicode()
    b = attributes.Integer()


def warm_up() -> None:
    """Loads the scripts, so round trips count EVALSHAs only."""
    Item.objects.bulk_create([Item(sku="warm-up")])
    Item.objects.get_many([uuid.uuid4()])
    Item.objects.filter(sku="warm-up").delete()


def test_bulk_create_is_one_round_trip_per_batch(client: redis.Redis,
                                                 roundtrips: RoundTrips) -> None:
    box = Bin.create(label="box")
    warm_up()
    items = [Item(sku=f"s{i}", n=i % 4 if i % 5 else None, bin=box if i % 2 else None,
                  data=b"d%d" % i) for i in range(10)]
    roundtrips.reset()
    returned = Item.objects.bulk_create(items, batch_size=4)
    assert roundtrips.count == 3
    assert returned == items
    assert Item.objects.count() == 10
    assert client.hlen(f"{ITEM}:uniq:sku") == 10
    assert client.zcard(f"{ITEM}:idx:n") == 8
    assert client.scard(f"{ITEM}:idx:n:null") == 2
    assert Item.objects.filter(n=3).count() == 2  # 3 and 7
    stored = Item.objects.get(sku="s3")
    assert (stored.n, stored.bin.label, stored.data) == (3, "box", b"d3")
    # the instances are saved ones: a later save is an update, entries move
    items[3].n = 100
    items[3].save()
    assert Item.objects.filter(n=100).ids() == [items[3].id]
    assert items[3].id not in Item.objects.filter(n=3).ids()
    assert items[3].append_data(b"+") == 3
    assert Item.objects.get(id=items[3].id).data == b"d3+"


def test_default_batch_size(client: redis.Redis, roundtrips: RoundTrips) -> None:
    warm_up()
    roundtrips.reset()
    Item.objects.bulk_create(Item(sku=f"x{i}", n=i) for i in range(1100))
    assert roundtrips.count == 3  # 500 + 500 + 100
    assert Item.objects.count() == 1100
    assert Item.objects.filter(n__gte=1000).count() == 100
    roundtrips.reset()
    assert Item.objects.filter(n__gte=50).delete() == 1050
    assert roundtrips.count == 1 + 3  # the ids, then atomic batches of 500
    assert Item.objects.count() == 50
    assert client.hlen(f"{ITEM}:uniq:sku") == 50
    assert client.zcard(f"{ITEM}:idx:n") == 50


def test_duplicate_inside_a_batch_writes_nothing(client: redis.Redis) -> None:
    Item.create(sku="kept")
    before = snapshot(client)
    batch = [Item(sku="a", n=1), Item(sku="b", n=2), Item(sku="a", n=3)]
    with pytest.raises(errors.UniqueViolation) as caught:
        Item.objects.bulk_create(batch)
    assert caught.value.field == "sku" and caught.value.value == "a"
    assert snapshot(client) == before
    assert not any(item._persisted for item in batch)
    pairs = [Pair(a="x", b=1), Pair(a="x", b=2), Pair(a="y", b=1), Pair(a="x", b=1)]
    with pytest.raises(errors.UniqueViolation) as caught:
        Pair.objects.bulk_create(pairs)
    assert caught.value.field == "a,b"
    assert snapshot(client) == before


def test_duplicate_of_stored_data_writes_nothing_of_the_batch(client: redis.Redis) -> None:
    Item.create(sku="taken", n=1)
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as caught:
        Item.objects.bulk_create([Item(sku="free1", n=2), Item(sku="taken", n=3),
                                  Item(sku="free2", n=4)])
    assert caught.value.value == "taken"
    assert snapshot(client) == before
    assert Item.objects.filter(sku__in=["free1", "free2"]).count() == 0


def test_each_batch_is_atomic_on_its_own(client: redis.Redis) -> None:
    Item.create(sku="taken")
    records = [Item(sku="b1"), Item(sku="b2"),  # batch 1: fine
               Item(sku="b3"), Item(sku="taken"),  # batch 2: refused as a whole
               Item(sku="b5"), Item(sku="b6")]  # batch 3: never sent
    with pytest.raises(errors.UniqueViolation):
        Item.objects.bulk_create(records, batch_size=2)
    assert sorted(Item.objects.values_list("sku", flat=True)) == ["b1", "b2", "taken"]
    assert client.hlen(f"{ITEM}:uniq:sku") == 3
    assert [r._persisted for r in records] == [True, True, False, False, False, False]


def test_missing_pointer_target_writes_nothing(client: redis.Redis) -> None:
    box = Bin.create(label="gone")
    stale = Bin.objects.get(id=box.id)
    box.delete()
    before = snapshot(client)
    with pytest.raises(errors.PointerTargetMissing):
        Item.objects.bulk_create([Item(sku="p1"), Item(sku="p2", bin=stale)])
    assert snapshot(client) == before


def test_bulk_create_bad_input(client: redis.Redis) -> None:
    with pytest.raises(errors.InvalidQuery):
        Item.objects.bulk_create([Item(sku="z")], batch_size=0)
    with pytest.raises(errors.RepocketError):
        Item.objects.bulk_create([Item(sku="z"), Bin(label="not an item")])
    assert Item.objects.count() == 0
    assert Item.objects.bulk_create([]) == []


def test_get_many_is_one_round_trip_in_order_with_none_for_missing(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    box = Bin.create(label="box")
    items = [Item.create(sku=f"g{i}", bin=box if i != 1 else None, data=b"x" * i)
             for i in range(4)]
    warm_up()
    missing = uuid.uuid1()
    wanted = [items[2].id, missing, str(items[0].id), items[3].id, items[2].id, items[1].id]
    roundtrips.reset()
    found = Item.objects.get_many(wanted)
    assert roundtrips.count == 1
    assert [f.sku if f else None for f in found] == ["g2", None, "g0", "g3", "g2", "g1"]
    assert found[2].bin.label == "box" and found[1 + 4].bin is None
    assert found[3].data == b"xxx"
    assert roundtrips.count == 1, "pointers came in the same round trip"
    assert Item.objects.get_many([]) == []
    roundtrips.reset()
    shallow = Item.objects.get_many([items[0].id], pointer_depth=0)
    assert roundtrips.count == 1
    assert shallow[0].bin.label == "box"
    assert roundtrips.count == 2
    with pytest.raises(errors.InvalidId):
        Item.objects.get_many(["nope"])
