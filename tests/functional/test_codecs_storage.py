"""Both codecs round-trip every type through a real server; compact is smaller."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import uuid

import pytest
import redis

from repocket import ActiveRecord, attributes, configure

from .test_active_record import TRICKS

OFFSET = dt.timezone(dt.timedelta(hours=5, minutes=30))
VALUES = {
    "text": "Zoë ☃ \x00 end",
    "blob": b"\x00\xff\xfe binary \x80",
    "count": -(2**63),
    "ratio": 0.1 + 0.2,
    "tiny": 5e-324,
    "price": decimal.Decimal("12345678901234567890.000000000100"),
    "at": dt.datetime(2026, 11, 27, 11, 20, 13, 123456, tzinfo=OFFSET),
    "naive": dt.datetime(1999, 12, 31, 23, 59, 59, 1),
    "ref": uuid.UUID("970773fa-4de1-11e5-86f4-6c4008a70392"),
    "data": {"known_tricks": TRICKS, "nested": [1, 2.5, None, True, "é"]},
    "maybe": None,
}


@functools.cache  # one model per codec: defining it again would be a redefinition
def make_model(codec: str) -> type[ActiveRecord]:
    class Everything(ActiveRecord):
        class Meta:
            namespace = f"codec-{codec}"

        text = attributes.Unicode()
        blob = attributes.Bytes()
        count = attributes.Integer()
        ratio = attributes.Float()
        tiny = attributes.Float()
        price = attributes.Decimal()
        at = attributes.DateTime()
        naive = attributes.DateTime()
        ref = attributes.UUID()
        data = attributes.JSON()
        maybe = attributes.Unicode(null=True)

    Everything._meta.codec_name = codec
    return Everything


@pytest.mark.parametrize("codec", ["envelope", "compact"])
def test_every_type_round_trips_exactly(client: redis.Redis, codec: str) -> None:
    model = make_model(codec)
    record = model.create(**VALUES)
    loaded = model.objects.get(id=record.id)
    for name, value in VALUES.items():
        assert getattr(loaded, name) == value, name
        assert type(getattr(loaded, name)) is type(value), name
    assert loaded.at.utcoffset() == OFFSET.utcoffset(None)
    assert loaded.naive.tzinfo is None
    assert str(loaded.price) == "12345678901234567890.000000000100"
    # None is stored as an absent field, distinct from the empty string
    assert client.hexists(record._key(), "maybe") is False
    loaded.maybe = ""
    loaded.save()
    assert model.objects.get(id=record.id).maybe == ""


def test_compact_codec_stores_plain_values(client: redis.Redis) -> None:
    model = make_model("compact")
    record = model.create(**VALUES)
    stored = client.hgetall(record._key())
    assert stored[b"text"] == VALUES["text"].encode()
    assert stored[b"blob"] == VALUES["blob"]
    assert stored[b"count"] == b"-9223372036854775808"
    assert stored[b"at"] == b"2026-11-27T11:20:13.123456+05:30"
    assert stored[b"id"] == str(record.id).encode()


def test_global_codec_applies_to_models_without_meta_codec(client: redis.Redis) -> None:
    class Loose(ActiveRecord):
        class Meta:
            namespace = "codec-global"

        name = attributes.Unicode()

    configure.default_codec("compact")
    record = Loose.create(name="plain")
    assert client.hget(record._key(), "name") == b"plain"
    assert Loose.objects.get(id=record.id).name == "plain"


def test_bytes_per_record_of_each_codec(client: redis.Redis) -> None:
    """MEMORY USAGE of the tutorial's Harry under each codec (figures in the README)."""
    sizes = {}
    for codec in ("envelope", "compact"):
        class User(ActiveRecord):
            class Meta:
                namespace = f"memory-{codec}"

            name = attributes.Unicode()
            house_name = attributes.Unicode()
            email = attributes.Bytes()
            password = attributes.Bytes()
            metadata = attributes.JSON()

        User._meta.codec_name = codec
        harry = User.create(id="970773fa-4de1-11e5-86f4-6c4008a70392", name="Harry Potter",
                            email="harry@hogwards.uk", house_name="Gryffindor",
                            password=b"$2b$10$" + b"x" * 53, metadata={"known_tricks": TRICKS})
        sizes[codec] = client.memory_usage(harry._key(), samples=0)
    print(f"\nbytes per record (MEMORY USAGE): {sizes}")
    assert sizes["compact"] < sizes["envelope"]
