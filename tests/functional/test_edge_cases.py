"""Edge cases found in review, each once a bug: a save after reading a dangling Pointer,
appending to a deferred stream, counting equal values spelled twice, duplicate ids in a
batch, list behaviour of an unevaluated queryset, iterator() with only()."""

from __future__ import annotations

import datetime as dt

import pytest
import redis

from repocket import ActiveRecord, attributes, errors
from tests.conftest import RoundTrips


class Target(ActiveRecord):
    class Meta:
        namespace = "te"

    name = attributes.Unicode()


class Holder(ActiveRecord):
    class Meta:
        namespace = "te"

    label = attributes.Unicode(index=True)
    ratio = attributes.Float(index=True)
    at = attributes.DateTime(index=True, null=True)
    target = attributes.Pointer(Target, null=True)
    log = attributes.ByteStream()


def test_saving_after_reading_a_dangling_pointer_keeps_the_stored_id(
        client: redis.Redis) -> None:
    target = Target.create(name="t")
    holder = Holder.create(label="h", target=target)
    target.delete()
    loaded = Holder.objects.get(id=holder.id)
    assert loaded.target is None  # the target is gone...
    loaded.label = "renamed"
    loaded.save()
    assert client.hexists(holder._key(), "target")  # ...but an unrelated save keeps its id
    back = Target.create(id=target.id, name="back")
    assert Holder.objects.get(id=holder.id).target == back
    loaded.target = None  # an explicit None clears it
    loaded.save()
    assert not client.hexists(holder._key(), "target")


def test_append_to_a_deferred_stream_returns_and_keeps_it_deferred(client: redis.Redis) -> None:
    holder = Holder.create(label="h", log=b"a")
    light = Holder.objects.only("label").get(label="h")
    assert light.append_log(b"b") == 2
    assert "log" not in light._values
    assert light.log == b"ab"  # loaded on access
    assert Holder.objects.get(id=holder.id).log == b"ab"


def test_deferred_fields_order_and_match_after_loading(client: redis.Redis) -> None:
    for i, label in enumerate("cab"):
        Holder.create(label=label, ratio=float(i))
    page = Holder.objects.only("label").order_by("label")[0:3]
    assert [h.label for h in page.order_by("-ratio")] == ["b", "a", "c"]
    assert page[0].matches({"ratio": 1.0})


def test_count_of_equal_values_spelled_twice(client: redis.Redis) -> None:
    Holder.create(label="zero", ratio=0.0, at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert Holder.objects.filter(ratio__in=[0.0, -0.0]).count() == 1
    same_instant = [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                    dt.datetime(2026, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))]
    assert Holder.objects.filter(at__in=same_instant).count() == 1
    assert len(Holder.objects.filter(at__in=same_instant)) == 1


def test_bulk_create_refuses_two_records_with_one_id(client: redis.Redis) -> None:
    first = Holder(label="dup1")
    with pytest.raises(errors.ValidationError) as refused:
        Holder.objects.bulk_create([first, Holder(id=first.id, label="dup2")])
    assert refused.value.field == "id"
    assert Holder.objects.count() == 0


def test_an_unevaluated_queryset_behaves_as_its_list(client: redis.Redis) -> None:
    Holder.create(label="x")
    assert Holder.objects.all() != []
    assert not (Holder.objects.all() != Holder.objects.all())  # noqa: SIM202 (__ne__)
    assert Holder.objects.all().pop().label == "x"
    with pytest.raises(errors.InvalidQuery):
        Holder.objects.all()[0:1].delete()


def test_iterator_honours_only(client: redis.Redis, roundtrips: RoundTrips) -> None:
    for label in "abcde":
        Holder.create(label=label, log=b"big" * 1000)
    list(Holder.objects.filter(label="a"))
    roundtrips.reset()
    loaded = list(Holder.objects.only("label").order_by("label").iterator(chunk_size=2))
    assert [h.label for h in loaded] == list("abcde")
    assert roundtrips.count == 1 + 3  # the ids, then 3 chunks
    assert all("log" not in h._values for h in loaded)
