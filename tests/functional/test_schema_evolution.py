"""A field added to a model after records were saved: the server sees what Python reads
(an absent field is its declared default), ``reindex()`` indexes the old records under
it, ``check()`` agrees, and later saves and deletes keep the entries right."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from repocket import ActiveRecord, attributes, errors

PREFIX = "repocket:evolve:Player"


class Player(ActiveRecord):
    """The model today: ``level``, ``tier`` and ``badge`` were added after ``name``."""

    class Meta:
        namespace = "evolve"

    name = attributes.Unicode(index=True)
    level = attributes.Integer(default=3, index=True)
    tier = attributes.Unicode(default="gold", index=True)
    badge = attributes.Unicode(unique=True, null=True)
    score = attributes.Float(index=True)  # no default: its type's empty value, 0.0


def first_player(codec: str) -> type[ActiveRecord]:
    """Player as first deployed: a redefinition of the same model (it warns)."""
    with pytest.warns(errors.ModelRedefined):
        class Player(ActiveRecord):
            __qualname__ = "Player"

            class Meta:
                namespace = "evolve"

            name = attributes.Unicode(index=True)

    Player._meta.codec_name = codec
    return Player


@pytest.fixture(params=["envelope", "compact"])
def old_records(request: pytest.FixtureRequest, client: redis.Redis) -> list[Any]:
    codec = request.param
    Player._meta.codec_name = codec
    Player._meta.schema_cache.clear()
    first = first_player(codec)
    yield [first.create(name=f"p{i}") for i in range(4)]
    Player._meta.codec_name = None
    Player._meta.schema_cache.clear()


def test_python_reads_the_declared_defaults(old_records: list[Any]) -> None:
    loaded = Player.objects.get(id=old_records[0].id)
    assert (loaded.level, loaded.tier, loaded.badge, loaded.score) == (3, "gold", None, 0.0)


def test_check_reports_the_entries_old_records_lack_and_reindex_adds_them(
        client: redis.Redis, old_records: list[Any]) -> None:
    report = Player.objects.check()
    missing = {(p.key, p.record_id) for p in report.problems if p.kind == "missing-entry"}
    ids = {str(r.id) for r in old_records}
    for field in ("level", "tier", "score"):
        assert {i for key, i in missing if key == f"{PREFIX}:idx:{field}"} == ids, field
    assert not any(p.key.endswith(":idx:badge:null") for p in report.problems)
    assert not any("uniq" in p.key for p in report.problems)  # None is not constrained

    reindexed = Player.objects.reindex()
    assert reindexed.indexed == 4 and reindexed.conflicts == []
    assert Player.objects.check().ok
    for record in old_records:
        assert client.zscore(f"{PREFIX}:idx:level", str(record.id)) == 3
        assert client.zscore(f"{PREFIX}:idx:score", str(record.id)) == 0
        assert client.zscore(f"{PREFIX}:idx:tier", f"gold\0\0{record.id}".encode()) == 0
        assert client.sismember(f"{PREFIX}:idx:badge:null", str(record.id))
    assert Player.objects.filter(level=3).count() == 4
    assert Player.objects.filter(tier="gold").count() == 4
    assert Player.objects.filter(score__lt=1).count() == 4


def test_saves_and_deletes_of_old_records_keep_their_entries_right(
        client: redis.Redis, old_records: list[Any]) -> None:
    Player.objects.reindex()
    changed, untouched, deleted, _ = (Player.objects.get(id=r.id) for r in old_records)
    changed.level, changed.tier, changed.badge = 7, "silver", "b1"
    changed.save()
    untouched.name = "renamed"  # the defaults are written now; the entries stay
    untouched.save()
    deleted.delete()
    assert Player.objects.check().ok
    assert client.zrangebyscore(f"{PREFIX}:idx:level", 3, 3) == sorted(
        str(r.id).encode() for r in (untouched, old_records[3]))
    assert client.zscore(f"{PREFIX}:idx:tier", f"gold\0\0{changed.id}".encode()) is None
    assert not client.zrangebylex(f"{PREFIX}:idx:tier", f"[gold\0\0{deleted.id}",
                                  f"[gold\0\0{deleted.id}")
    assert Player.objects.get(badge="b1") == changed


def test_a_unique_field_added_with_a_default_is_a_conflict_to_resolve(
        client: redis.Redis) -> None:
    first = first_player("envelope")
    a, b = first.create(name="a"), first.create(name="b")

    with pytest.warns(errors.ModelRedefined):
        class Player(ActiveRecord):  # then given a unique field with a default
            __qualname__ = "Player"

            class Meta:
                namespace = "evolve"

            name = attributes.Unicode(index=True)
            handle = attributes.Unicode(default="anon", unique=True)

    report = Player.objects.reindex()
    (fields, value, holder, other), = report.conflicts  # both read "anon"
    assert fields == ["handle"] and value == b"anon" and {holder, other} == {
        str(a.id), str(b.id)}


def test_a_type_change_is_reindexed_from_text_to_number_entries(client: redis.Redis) -> None:
    with pytest.warns(errors.ModelRedefined):
        class Player(ActiveRecord):  # first: a text index
            __qualname__ = "Player"

            class Meta:
                namespace = "evolve"

            name = attributes.Unicode(index=True)
            level = attributes.Unicode(index=True)

    for level in ("9", "10", "2"):
        Player.create(name=f"p{level}", level=level)
    with pytest.warns(errors.ModelRedefined):
        class Player(ActiveRecord):  # type: ignore[no-redef]  # then: a number index
            __qualname__ = "Player"

            class Meta:
                namespace = "evolve"

            name = attributes.Unicode(index=True)
            level = attributes.Integer(index=True)

    report = Player.objects.check()
    assert [p.kind for p in report.problems].count("foreign-member") == 3  # text entries
    assert [p.kind for p in report.problems].count("missing-entry") == 3
    assert Player.objects.reindex().ok
    assert client.zrange(f"{PREFIX}:idx:level", 0, -1, withscores=True) == sorted(
        ((str(r.id).encode(), float(r.level)) for r in Player.objects.all()),
        key=lambda entry: entry[1])
    assert [p.level for p in Player.objects.filter(level__gt=5).order_by("level")] == [9, 10]
    assert Player.objects.check().ok
