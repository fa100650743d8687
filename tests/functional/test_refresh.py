"""``refresh_from_db()`` (and ``arefresh_from_db``): reload a record's fields in one round
trip, as Django's; DoesNotExist when it is gone."""

from __future__ import annotations

import asyncio

import pytest
import redis

from repocket import ActiveRecord, attributes, configure, errors
from tests.conftest import RoundTrips


class Dial(ActiveRecord):
    class Meta:
        namespace = "refresh"

    name = attributes.Unicode()
    level = attributes.Integer()
    log = attributes.ByteStream()


@pytest.fixture
def dial(client: redis.Redis) -> Dial:
    return Dial.create(name="a", level=1, log=b"x")


def test_refresh_reloads_every_field_in_one_round_trip(dial: Dial,
                                                       roundtrips: RoundTrips) -> None:
    other = Dial.objects.get(id=dial.id)
    assert other is not None
    other.name, other.level = "b", 2
    other.save()
    other.append_log(b"yz")
    dial.level = 99  # unsaved: replaced, as in Django
    roundtrips.reset()
    dial.refresh_from_db()
    assert roundtrips.count == 1
    assert (dial.name, dial.level, dial.log) == ("b", 2, b"xyz")
    dial.append_log(b"!")  # the stream is known synced: the next save appends, not sets
    dial.save()
    assert Dial.objects.get(id=dial.id).log == b"xyz!"  # type: ignore[union-attr]


def test_refresh_of_some_fields_leaves_the_others(dial: Dial, roundtrips: RoundTrips) -> None:
    list(Dial.objects.all())  # query.lua cached: the round trip below is the refresh's
    other = Dial.objects.get(id=dial.id)
    assert other is not None
    other.name, other.level = "b", 2
    other.save()
    dial.level = 5
    roundtrips.reset()
    dial.refresh_from_db(fields=["name"])
    assert roundtrips.count == 1
    assert (dial.name, dial.level) == ("b", 5)


def test_refresh_of_a_deleted_record_raises_does_not_exist(dial: Dial) -> None:
    Dial.objects.get(id=dial.id).delete()  # type: ignore[union-attr]
    with pytest.raises(errors.DoesNotExist) as raised:
        dial.refresh_from_db()
    assert raised.value.model == "Dial"
    assert (dial.name, dial.level) == ("a", 1)  # nothing changed in memory


def test_refresh_refuses_an_unknown_field(dial: Dial) -> None:
    with pytest.raises(errors.UnknownField):
        dial.refresh_from_db(fields=["nope"])
    with pytest.raises(TypeError):
        dial.refresh_from_db(fields="name")


def test_arefresh_from_db(dial: Dial) -> None:
    other = Dial.objects.get(id=dial.id)
    assert other is not None
    other.level = 7
    other.save()

    async def refresh() -> None:
        await dial.arefresh_from_db()
        await configure.aclose()

    asyncio.run(refresh())
    assert dial.level == 7
