"""Atomic writes (issue 12): no resurrection, get_or_create / update_or_create."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio

from repocket import ActiveRecord, attributes, configure, errors
from tests.conftest import RoundTrips, snapshot


class Account(ActiveRecord):
    class Meta:
        namespace = "tests.atomic"

    email = attributes.Unicode(unique=True)
    handle = attributes.Unicode(unique=True, null=True)
    name = attributes.Unicode()
    visits = attributes.Integer(index=True)
    log = attributes.ByteStream()


class Seat(ActiveRecord):
    class Meta:
        namespace = "tests.atomic"
        unique_together = (("room", "number"),)

    room = attributes.Unicode(index=True)
    number = attributes.Integer()
    holder = attributes.Unicode()


def warm(client: redis.Redis) -> None:
    """Load the scripts first: a call after SCRIPT FLUSH costs one NOSCRIPT more."""
    Account.objects.get_or_create(email="warm@x")
    Seat.objects.get_or_create(room="warm", number=0)


# -- no resurrection --------------------------------------------------------------------------
def test_stale_save_of_a_deleted_record_raises_and_writes_nothing(client: redis.Redis) -> None:
    account = Account.create(email="a@x", name="a", visits=1, log=b"l")
    stale = Account.objects.get(id=account.id)
    account.delete()
    stale.visits = 2
    before = snapshot(client)
    with pytest.raises(errors.DoesNotExist) as raised:
        stale.save()
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Account", "id", account.id)
    assert snapshot(client) == before
    assert Account.objects.filter(visits=2).count() == 0  # no index entry either


def test_force_insert_creates_it_again_whole(client: redis.Redis) -> None:
    account = Account.create(email="a@x", name="a", visits=1, log=b"l")
    stale = Account.objects.get(id=account.id)
    account.delete()
    stale.visits = 2
    stale.save(force_insert=True)
    again = Account.objects.get(id=account.id)
    assert again is not None and again.to_dict() == stale.to_dict()
    assert again.log == b"l"
    assert Account.objects.get(email="a@x") == again  # the unique claim is back
    assert Account.objects.check().ok


# -- get_or_create ----------------------------------------------------------------------------
def test_get_or_create_creates_then_finds_in_one_round_trip_each(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    warm(client)
    roundtrips.reset()
    created, was_created = Account.objects.get_or_create(
        email="b@x", defaults={"name": "bee", "visits": 3, "log": b"hi"})
    assert roundtrips.count == 1 and was_created
    roundtrips.reset()
    found, was_created = Account.objects.get_or_create(
        email="b@x", defaults={"name": "other", "visits": 9})
    assert roundtrips.count == 1 and not was_created
    assert found.pk == created.pk
    assert (found.name, found.visits, found.log) == ("bee", 3, b"hi")  # defaults unused
    assert found._persisted
    found.visits = 4
    found.save()  # a found record saves its changed fields
    assert Account.objects.get(id=created.pk).visits == 4
    assert Account.objects.count() == 2  # warm's and this one


def test_get_or_create_by_unique_together(client: redis.Redis, roundtrips: RoundTrips) -> None:
    warm(client)
    roundtrips.reset()
    seat, created = Seat.objects.get_or_create(room="A", number=1, defaults={"holder": "ann"})
    assert created and roundtrips.count == 1
    same, created = Seat.objects.get_or_create(room="A", number=1, defaults={"holder": "bob"})
    assert not created and same.pk == seat.pk and same.holder == "ann"
    other, created = Seat.objects.get_or_create(room="A", number=2)
    assert created and other.pk != seat.pk
    assert roundtrips.count == 3


def test_found_record_that_contradicts_other_lookups_is_a_unique_violation(
        client: redis.Redis) -> None:
    Account.create(email="c@x", name="cee")
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:
        Account.objects.get_or_create(email="c@x", name="not cee")
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Account", "email", "c@x")
    assert snapshot(client) == before


def test_lookups_compare_as_the_fields_clean_them(client: redis.Redis) -> None:
    """A lookup given as text for an Integer finds the record it names."""
    seat, created = Seat.objects.get_or_create(room="B", number="7")
    assert created and seat.number == 7
    same, created = Seat.objects.get_or_create(room="B", number="7", holder="")
    assert not created and same.pk == seat.pk


def test_create_violating_another_unique_field_writes_nothing(client: redis.Redis) -> None:
    Account.create(email="d@x", handle="dee")
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:
        Account.objects.get_or_create(email="e@x", defaults={"handle": "dee"})
    assert raised.value.field == "handle"
    assert snapshot(client) == before


def test_get_or_create_on_a_planted_wrong_type_is_typed_and_writes_nothing(
        client: redis.Redis) -> None:
    warm(client)
    unique_key = "repocket:tests.atomic:Account:uniq:email"
    assert client.type(unique_key) == b"hash"
    client.delete(unique_key)
    client.rpush(unique_key, b"planted")
    before = snapshot(client)
    with pytest.raises(errors.WrongKeyType):
        Account.objects.get_or_create(email="f@x")
    assert snapshot(client) == before


def test_without_a_unique_lookup_it_queries_then_creates(client: redis.Redis) -> None:
    first, created = Account.objects.get_or_create(name="nobody", visits=7,
                                                   defaults={"email": "g@x"})
    assert created and first.email == "g@x"
    again, created = Account.objects.get_or_create(name="nobody", visits=7,
                                                   defaults={"email": "h@x"})
    assert not created and again.pk == first.pk
    found, created = Account.objects.get_or_create(visits__gte=7)
    assert not created and found.pk == first.pk


def test_race_of_eight_threads_creates_exactly_once(client: redis.Redis) -> None:
    start = threading.Barrier(8)
    results: list[tuple[uuid.UUID, bool]] = []
    failures: list[BaseException] = []

    def racer(n: int) -> None:
        try:
            start.wait()
            for round_ in range(20):
                record, created = Account.objects.get_or_create(
                    email=f"race{round_}@x", defaults={"name": f"thread {n}"})
                results.append((record.pk, created))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(results) == 160
    assert sum(created for _, created in results) == 20  # one creation per email
    assert len({pk for pk, _ in results}) == 20  # every caller got that record
    assert Account.objects.count() == 20
    assert Account.objects.check().ok


def race_in_a_process(url: str, start: Any, emails: list[str]) -> list[tuple[str, bool]]:
    """A spawned process: get_or_create every email once the others are ready."""
    configure.connection_pool(url=url, socket_timeout=30)
    start.wait()
    answers = [Account.objects.get_or_create(email=email) for email in emails]
    configure.reset()
    return [(str(record.pk), created) for record, created in answers]


def test_race_of_eight_processes_creates_exactly_once(client: redis.Redis,
                                                      redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    emails = [f"proc{i}@x" for i in range(10)]
    with context.Manager() as manager:
        start = manager.Barrier(8)
        with context.Pool(8) as pool:
            jobs = [pool.apply_async(race_in_a_process, (redis_url, start, emails))
                    for _ in range(8)]
            answers = [job.get(timeout=300) for job in jobs]
    for at in range(len(emails)):
        per_email = [answer[at] for answer in answers]
        assert sum(created for _, created in per_email) == 1
        assert len({pk for pk, _ in per_email}) == 1
    assert Account.objects.count() == len(emails)
    assert Account.objects.check().ok


def test_get_or_create_by_id_is_one_atomic_call(client: redis.Redis,
                                                roundtrips: RoundTrips) -> None:
    warm(client)
    record_id = uuid.uuid4()
    roundtrips.reset()
    made, created = Account.objects.get_or_create(id=record_id, defaults={"email": "i@x"})
    assert created and made.pk == record_id and roundtrips.count == 1
    found, created = Account.objects.get_or_create(id=record_id, defaults={"email": "j@x"})
    assert not created and found.email == "i@x" and roundtrips.count == 2
    assert Account.objects.get(email="j@x") is None


# -- update_or_create -------------------------------------------------------------------------
def test_update_or_create_creates_then_updates(client: redis.Redis) -> None:
    record, created = Account.objects.update_or_create(email="u@x", defaults={"visits": 1})
    assert created and record.visits == 1
    again, created = Account.objects.update_or_create(email="u@x", defaults={"visits": 5})
    assert not created and again.pk == record.pk and again.visits == 5
    assert Account.objects.get(id=record.pk).visits == 5
    assert Account.objects.filter(visits=5).count() == 1  # the index follows
    assert Account.objects.check().ok


def test_update_or_create_moving_the_unique_lookup_updates_the_record_it_names(
        client: redis.Redis) -> None:
    """defaults may change the field looked up by (Django: found by the lookups, then the
    defaults assigned): the record renamed is the one the lookup names, not one holding
    the new value, and no record is created beside it."""
    renamed = Account.create(email="old@x", name="old")
    moved, created = Account.objects.update_or_create(email="old@x",
                                                      defaults={"email": "new@x"})
    assert not created and moved.pk == renamed.pk and moved.email == "new@x"
    assert Account.objects.count() == 1 and Account.objects.get(email="old@x") is None
    assert Account.objects.check().ok


def test_update_or_create_onto_a_value_another_record_holds_raises_and_writes_nothing(
        client: redis.Redis) -> None:
    """Before the fix the lookup followed the defaults: record 'other' was found by the new
    value and updated instead of raising."""
    Account.create(email="mine@x", name="mine")
    Account.create(email="taken@x", name="other")
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:
        Account.objects.update_or_create(email="mine@x",
                                         defaults={"email": "taken@x", "name": "changed"})
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Account", "email", "taken@x")
    assert snapshot(client) == before


def test_get_or_create_finds_by_the_lookups_and_creates_with_the_defaults(
        client: redis.Redis) -> None:
    """As Django: the lookups find, the defaults (winning over the lookups) create."""
    first, created = Account.objects.get_or_create(email="look@x", defaults={"email": "made@x"})
    assert created and first.email == "made@x"
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:  # look@x still absent: creates
        Account.objects.get_or_create(email="look@x", defaults={"email": "made@x"})
    assert (raised.value.field, raised.value.value) == ("email", "made@x")
    assert snapshot(client) == before


# -- asyncio ----------------------------------------------------------------------------------


async def test_async_twins(aclient: Any) -> None:
    record, created = await Account.objects.aget_or_create(email="z@x", defaults={"name": "z"})
    assert created
    found, created = await Account.objects.aget_or_create(email="z@x")
    assert not created and found.pk == record.pk and found.name == "z"
    updated, created = await Account.objects.aupdate_or_create(email="z@x",
                                                               defaults={"name": "zz"})
    assert not created and updated.name == "zz"
    stale = await Account.objects.aget(id=record.pk)
    await record.adelete()
    stale.name = "back"
    with pytest.raises(errors.DoesNotExist):
        await stale.asave()
    await stale.asave(force_insert=True)
    assert (await Account.objects.aget(id=record.pk)).name == "back"
