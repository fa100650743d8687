"""Bad input against a real server: every failure is a typed repocket error that names the
model, the field and the value, and the keyspace is byte-for-byte unchanged afterwards."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from repocket import ActiveRecord, errors
from tests.conftest import RoundTrips, snapshot

from .models import Build, CompactBuild, Measure, Node, Project

UID = "970773fa-4de1-11e5-86f4-6c4008a70392"
MODELS: tuple[type[ActiveRecord], ...] = (Project, Build, CompactBuild, Node, Measure)


class World:
    def __init__(self, client: redis.Redis):
        self.client = client
        self.project = Project.create(name="p", git_uri=b"git://x", metadata={"k": [1]})
        self.build = Build.create(project=self.project, stdout=b"out", stderr=b"err",
                                  started_at=dt.datetime(2020, 1, 1, 12))
        self.measure = Measure.create(label="m", ratio=1.5, price="1.10", ref=UID,
                                      data={"x": 1}, blob=b"\xff")
        self.node = Node.create(label="n")
        self.compact = CompactBuild.create(project=self.project, number=3, stdout=b"c")

    def build_keys(self) -> dict[str, str]:
        hash_key = Build._meta.record_key(self.build.id)
        return {"hash": hash_key, "ids": Build._meta.ids_key,
                "stream": f"{hash_key}:field:stdout"}


@pytest.fixture
def world(client: redis.Redis) -> World:
    return World(client)


@pytest.fixture
def unchanged(world: World) -> Iterator[None]:
    """The keyspace after the test body equals the keyspace before it."""
    before = snapshot(world.client)
    yield
    assert snapshot(world.client) == before
    assert_only_model_keys(world.client)


def assert_only_model_keys(client: redis.Redis) -> None:
    prefixes = tuple(f"{model._meta.prefix}:".encode() for model in MODELS)
    outside = [key for key in client.scan_iter(count=1000) if not key.startswith(prefixes)]
    assert outside == []


def check(err: errors.FieldError, model: str, field: str, value: Any) -> None:
    assert err.model == model
    assert err.field == field
    if value != value:  # NaN
        assert err.value is value
    else:
        assert err.value == value
    assert model in str(err)
    assert field in str(err)


# -- wrong Python values, at construction, assignment and in lookups ------------------------
BAD_VALUES: list[tuple[type[ActiveRecord], str, Any]] = [
    (Project, "name", 5), (Project, "name", b"\xff\xfe"), (Project, "name", "lone \ud800"),
    (Project, "name", None), (Project, "name", ["list"]), (Project, "name", 1.5),
    (Project, "git_uri", 5), (Project, "git_uri", "lone \udfff"), (Project, "git_uri", None),
    (Project, "metadata", {1, 2}), (Project, "metadata", object()),
    (Project, "metadata", float("nan")), (Project, "metadata", {"k": [float("inf")]}),
    (Project, "metadata", {"k": b"bytes"}),
    (Measure, "count", "abc"), (Measure, "count", 1.5), (Measure, "count", True),
    (Measure, "count", "9" * 5000),  # beyond Python's int <-> text digit limit
    (Measure, "count", "1e3"), (Measure, "count", "x" * 10_240),
    (Measure, "count", None),
    (Measure, "ratio", float("nan")), (Measure, "ratio", "nan"), (Measure, "ratio", "abc"),
    (Measure, "ratio", 10**400), (Measure, "ratio", True), (Measure, "ratio", None),
    (Measure, "price", decimal.Decimal("NaN")), (Measure, "price", float("nan")),
    (Measure, "price", "abc"), (Measure, "price", "Infinity"), (Measure, "price", [1]),
    (Measure, "at", "yesterday"), (Measure, "at", dt.date(2020, 1, 1)), (Measure, "at", 5),
    (Measure, "ref", "nope"), (Measure, "ref", UID + ":x"), (Measure, "ref", 5),
    (Measure, "blob", 5), (Measure, "blob", None), (Measure, "label", 5),
    (Build, "project", 42), (Build, "project", "not-an-id"), (Build, "project", UID + "*"),
    (Build, "stdout", 5), (Build, "stdout", None), (Build, "stdout", "\ud800"),
]


def _id(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 30 else text[:27] + "..."


@pytest.mark.parametrize(("model", "name", "value"), BAD_VALUES,
                         ids=[f"{m.__name__}.{n}={_id(v)}" for m, n, v in BAD_VALUES])
def test_wrong_value_is_a_validation_error(world: World, unchanged: None,
                                           model: type[ActiveRecord], name: str,
                                           value: Any) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        model(**{name: value})
    check(raised.value, model.__name__, name, value)

    loaded = model.objects.all()[0]
    before = loaded.to_dict()
    with pytest.raises(errors.ValidationError) as raised:
        setattr(loaded, name, value)
    check(raised.value, model.__name__, name, value)
    assert loaded.to_dict() == before
    loaded.save()  # the instance still holds only valid values; nothing changed

    with pytest.raises(errors.ValidationError):
        loaded[name] = value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# an Integer lookup bound of any size is valid (compared exactly), as in Django
LOOKUP_VALUES = [(m, n, v) for m, n, v in BAD_VALUES
                 if v is not None and not m._meta.fields[n].is_stream
                 and not (n == "count" and _is_int(v))]


@pytest.mark.parametrize(("model", "name", "value"), LOOKUP_VALUES,
                         ids=[f"{m.__name__}.{n}={_id(v)}" for m, n, v in LOOKUP_VALUES])
def test_wrong_value_in_filter_and_get_is_a_validation_error(
        world: World, unchanged: None, model: type[ActiveRecord], name: str, value: Any) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        model.objects.filter(**{name: value})
    check(raised.value, model.__name__, name, value)
    with pytest.raises(errors.ValidationError):
        model.objects.get(**{name: value})


def test_byte_streams_cannot_be_filtered_on(world: World, unchanged: None) -> None:
    for value in (b"", 5):
        with pytest.raises(errors.InvalidQuery) as raised:
            Build.objects.filter(stdout=value)
        check(raised.value, "Build", "stdout", value)


def test_pointer_lookup_with_another_models_instance_is_refused(world: World,
                                                                 unchanged: None) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        Build.objects.filter(project=world.node)
    check(raised.value, "Build", "project", world.node)


BAD_IDS = [UID + ":x", "*", UID[:-1] + "*", "{" + UID + "}", " " + UID, UID + " ", UID + "\n",
           UID + "\t", "\n" + UID, "x" * 10_240, "", "repocket:tests:Project:ids", 12]


@pytest.mark.parametrize("bad", BAD_IDS, ids=_id)
def test_bad_id_is_an_invalid_id_everywhere(world: World, unchanged: None, bad: Any) -> None:
    with pytest.raises(errors.InvalidId) as raised:
        Project(id=bad, name="x")
    check(raised.value, "Project", "id", bad)
    with pytest.raises(errors.InvalidId) as raised:
        Project.objects.get(id=bad)
    check(raised.value, "Project", "id", bad)
    with pytest.raises(errors.InvalidId):
        Project.objects.get(pk=bad)
    with pytest.raises(errors.InvalidId):
        Project.objects.filter(id=bad)
    with pytest.raises(errors.ValidationError) as raised:
        Build.objects.filter(project=bad)
    check(raised.value, "Build", "project", bad)
    loaded = Project.objects.get(id=world.project.id)
    with pytest.raises(errors.InvalidId):
        loaded.id = bad
    assert loaded.id == world.project.id


def test_ten_kilobyte_text_is_stored_and_found(world: World) -> None:
    text = "é" * 10_240
    project = Project.create(name=text)
    assert Project.objects.get(id=project.id).name == text
    assert [p.id for p in Project.objects.filter(name=text)] == [project.id]


# -- unknown fields ---------------------------------------------------------------------
def test_unknown_keyword_to_the_constructor(world: World, unchanged: None) -> None:
    with pytest.raises(errors.UnknownField) as raised:
        Project(name="x", colour="red")
    check(raised.value, "Project", "colour", "red")
    assert "name" in str(raised.value)  # lists the valid fields
    assert isinstance(raised.value, AttributeError)


@pytest.mark.parametrize("method", ["filter", "get"])
def test_unknown_keyword_to_filter_and_get(world: World, unchanged: None, method: str) -> None:
    with pytest.raises(errors.UnknownField) as raised:
        getattr(Project.objects, method)(colour="red")
    check(raised.value, "Project", "colour", "red")
    assert "metadata" in str(raised.value)


def test_unknown_field_in_matches_order_by_and_item_access(world: World,
                                                           unchanged: None) -> None:
    with pytest.raises(errors.UnknownField):
        world.project.matches({"colour": "red"})
    with pytest.raises(errors.UnknownField):
        Project.objects.all().order_by("-colour")
    with pytest.raises(KeyError):
        world.project["colour"] = "red"
    with pytest.raises(KeyError):
        world.project["colour"]


# -- None for a non-null field -------------------------------------------------------------
def test_none_for_a_null_false_unicode(world: World, unchanged: None) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        Project.create(name=None)
    check(raised.value, "Project", "name", None)
    loaded = Project.objects.get(id=world.project.id)
    with pytest.raises(errors.ValidationError):
        loaded.name = None
    assert loaded.name == "p"


# -- JSON that cannot be encoded, including after assignment ---------------------------------
@pytest.mark.parametrize("poison", [{1, 2}, object(), float("nan"), float("-inf"), b"raw"],
                         ids=["set", "object", "nan", "-inf", "bytes"])
def test_json_mutated_in_place_is_caught_at_save(world: World, unchanged: None,
                                                 poison: Any) -> None:
    loaded = Project.objects.get(id=world.project.id)
    loaded.metadata["k"].append(poison)
    with pytest.raises(errors.ValidationError) as raised:
        loaded.save()
    check(raised.value, "Project", "metadata", loaded.metadata)

    fresh = Project(name="fresh", metadata={"ok": []})
    fresh.metadata["ok"].append(poison)
    with pytest.raises(errors.ValidationError) as raised:
        fresh.save()
    check(raised.value, "Project", "metadata", fresh.metadata)
    assert Project.objects.get(id=fresh.id) is None


def test_self_referencing_json_is_a_validation_error(world: World, unchanged: None) -> None:
    loops: dict[str, Any] = {}
    loops["me"] = loops
    with pytest.raises(errors.ValidationError):
        Project(name="x", metadata=loops)
    loaded = Project.objects.get(id=world.project.id)
    loaded.metadata["me"] = loaded.metadata
    with pytest.raises(errors.ValidationError):
        loaded.save()


# -- pointers ----------------------------------------------------------------------------
def test_pointer_to_an_unsaved_instance(world: World, unchanged: None) -> None:
    target = Project(name="never saved")
    build = Build(project=target)
    with pytest.raises(errors.UnsavedPointer) as raised:
        build.save()
    check(raised.value, "Build", "project", target)
    loaded = Build.objects.get(id=world.build.id)
    loaded.project = target
    with pytest.raises(errors.UnsavedPointer):
        loaded.save()
    with pytest.raises(errors.UnsavedPointer):
        Build.create(project=target)


def test_pointer_to_a_record_deleted_before_save(world: World) -> None:
    doomed = Project.create(name="doomed")
    build = Build(project=doomed)
    loaded = Build.objects.get(id=world.build.id)
    loaded.project = doomed
    assert Project.objects.get(id=doomed.id).delete() == 1  # another handle deletes it
    before = snapshot(world.client)
    for record in (build, loaded):  # a first save, and a partial save of a loaded record
        with pytest.raises(errors.PointerTargetMissing) as raised:
            record.save()
        assert (raised.value.model, raised.value.field) == ("Build", "project")
        assert str(doomed.id) in str(raised.value.value)
        assert snapshot(world.client) == before
    assert Build.objects.get(id=world.build.id).project == world.project


def test_pointer_assigned_the_id_of_a_missing_record(world: World, unchanged: None,
                                                     roundtrips: RoundTrips) -> None:
    """An id is kept as it is (no I/O on assignment); the save script finds the target
    missing, in the save's own round trip, before writing anything."""
    missing = uuid.uuid4()
    target_key = Project._meta.record_key(missing)
    build = Build(project=str(missing))
    assert roundtrips.count == 0
    with pytest.raises(errors.PointerTargetMissing) as raised:
        build.save()
    assert roundtrips.count == 1
    check(raised.value, "Build", "project", target_key)
    with pytest.raises(errors.PointerTargetMissing):
        Build.create(project=missing)
    loaded = Build.objects.get(id=world.build.id)
    loaded.project = missing
    with pytest.raises(errors.PointerTargetMissing):
        loaded.save()
    assert Build.objects.get(id=world.build.id).project == world.project


def test_reading_a_pointer_assigned_a_missing_id_keeps_the_id(world: World,
                                                             unchanged: None) -> None:
    """Reading the field says None, but the unsaved instance keeps the id it was given:
    its save still reports the missing target instead of storing None."""
    build = Build(project=uuid.uuid4())
    assert build.project is None
    with pytest.raises(errors.PointerTargetMissing):
        build.save()


def test_pointer_assigned_an_existing_id_loads_the_target(world: World) -> None:
    build = Build(project=str(world.project.id))
    assert isinstance(build.project, Project) and build.project.name == "p"


# -- the wrong Redis type under a key repocket owns ---------------------------------------
def _save(world: World, loaded: Build) -> Any:
    loaded.ended_at = dt.datetime(2021, 1, 1)
    loaded.stdout += b"+more"
    return loaded.save()


OPERATIONS: dict[str, Callable[[World, Build], Any]] = {
    "save": _save,
    "delete": lambda world, loaded: loaded.delete(),
    "append": lambda world, loaded: loaded.append_stdout(b"+more"),
    "get": lambda world, loaded: Build.objects.get(id=loaded.id),
    "filter": lambda world, loaded: list(Build.objects.filter()),  # querysets are lazy
    "filter-by": lambda world, loaded: list(Build.objects.filter(project=world.project)),
}
CASES = [(op, kind) for op in OPERATIONS for kind in ("hash", "ids", "stream")
         if not (kind == "ids" and op in ("append", "get"))]  # those never touch the id set


@pytest.mark.parametrize(("op", "kind"), CASES, ids=[f"{op}-{kind}" for op, kind in CASES])
@pytest.mark.parametrize("intruder", ["list", "other"])
def test_wrong_key_type_is_refused_and_nothing_changes(world: World, op: str, kind: str,
                                                       intruder: str) -> None:
    loaded = Build.objects.get(id=world.build.id)
    key = world.build_keys()[kind]
    world.client.delete(key)
    if intruder == "list":
        world.client.rpush(key, "x")
    elif kind == "stream":
        world.client.hset(key, "x", "y")
    else:
        world.client.set(key, "x")
    before = snapshot(world.client)
    with pytest.raises(errors.WrongKeyType) as raised:
        OPERATIONS[op](world, loaded)
    err = raised.value
    assert err.model == "Build"
    assert err.key == key, f"the error should name the offending key {key!r}: {err}"
    assert err.field == ("stdout" if kind == "stream" else "")
    assert key in str(err)
    assert snapshot(world.client) == before
    assert_only_model_keys(world.client)


def test_wrong_type_under_a_pointer_target_key(world: World) -> None:
    target_key = Project._meta.record_key(world.project.id)
    world.client.delete(target_key)
    world.client.rpush(target_key, "x")
    before = snapshot(world.client)
    with pytest.raises(errors.WrongKeyType) as raised:
        Build.objects.get(id=world.build.id)
    assert raised.value.key == target_key
    with pytest.raises(errors.WrongKeyType) as refused:  # a list is there, not a record
        Build(project=world.project).save()
    assert refused.value.key == target_key and refused.value.field == "project"
    assert snapshot(world.client) == before


# -- records deleted meanwhile ---------------------------------------------------------------
def test_append_on_a_record_deleted_meanwhile(world: World) -> None:
    loaded = Build.objects.get(id=world.build.id)
    Build.objects.get(id=world.build.id).delete()
    before = snapshot(world.client)
    with pytest.raises(errors.DoesNotExist) as raised:
        loaded.append_stdout(b"late")
    err = raised.value
    assert err.model == "Build"
    assert err.field == "stdout"
    assert str(world.build.id) in str(err.value)
    assert snapshot(world.client) == before
    assert loaded.stdout == b"out"  # the failed append did not touch the instance


# -- garbage stored in a hash field --------------------------------------------------------
GARBAGE = [
    (Build, "started_at", b'{"type": "DateTime", "value": "yesterday"}'),
    (Build, "started_at", b"not json at all"),
    (Build, "project", b'{"type": "Pointer", "value": "../../etc"}'),
    (Project, "name", b'{"type": "Unicode", "value": 12}'),
    (Project, "name", b"\xff\xfe"),
    (Project, "git_uri", b'{"type": "Bytes", "value": "***", "encoding": "base64"}'),
    (Project, "metadata", b'{"type": "JSON", "value": "{not json"}'),
    (Measure, "count", b'{"type": "Integer", "value": "1.5"}'),
    (Measure, "ratio", b'{"type": "Float", "value": "abc"}'),
    (Measure, "price", b'{"type": "Decimal", "value": "1,5"}'),
    (Measure, "ref", b'{"type": "UUID", "value": "nope"}'),
    (CompactBuild, "number", b"twelve"),
    (CompactBuild, "project", b"not-a-uuid"),
    (Project, "name", b"[" * 100_000),
]


@pytest.mark.parametrize(("model", "name", "raw"), GARBAGE,
                         ids=[f"{m.__name__}.{n}={_id(r)}" for m, n, r in GARBAGE])
def test_garbage_in_a_hash_field_is_a_stored_data_error(world: World, model: type[ActiveRecord],
                                                        name: str, raw: bytes) -> None:
    record = model.objects.all()[0]
    key = model._meta.record_key(record.pk)
    world.client.hset(key, name, raw)
    before = snapshot(world.client)
    for read in (lambda: model.objects.get(id=record.pk), lambda: list(model.objects.filter())):
        with pytest.raises(errors.StoredDataError) as raised:
            read()
        err = raised.value
        assert (err.model, err.field, err.key, err.value) == (model.__name__, name, key, raw)
        assert key in str(err) and name in str(err)
    assert snapshot(world.client) == before


# -- the keyspace stays inside the model prefixes --------------------------------------------
def test_no_key_is_written_outside_the_model_prefixes(world: World) -> None:
    node_a = Node.create(label="a")
    node_b = Node.create(label="b", next=node_a)
    node_a.next = node_b
    node_a.save()
    loaded = Build.objects.get(id=world.build.id, pointer_depth=2)
    loaded.append_stdout(b"x" * 100)
    loaded.stdout = b"replaced"
    loaded.save()
    world.measure.data = {"nested": [1, {"k": "v"}]}
    world.measure.save()
    list(Build.objects.filter(project=world.project))
    list(Measure.objects.filter(ratio=1.5, price="1.1"))
    CompactBuild.objects.get(id=world.compact.id).append_stdout(b"\x00\xff")
    # a stored pointer naming a key outside the prefixes is never followed or written
    world.client.hset(Node._meta.record_key(node_b.id), "next",
                      b'{"type": "Pointer", "value": "x:y"}')
    with pytest.raises(errors.StoredDataError):
        Node.objects.get(id=node_b.id)
    world.build.delete()
    node_a.delete()
    assert_only_model_keys(world.client)
    assert world.client.exists(Build._meta.record_key(world.build.id)) == 0
