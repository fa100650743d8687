"""Field values end to end (issue 9): null=True defaults, integers of any size against the
server's exact comparisons and double scores, Pointers given ids (no I/O until the save,
which checks the target in its own round trip), and typed errors for values Python's json
cannot nest or read."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest
import redis

from repocket import ActiveRecord, attributes, errors
from tests.conftest import RoundTrips, snapshot

from .models import Build, Project


# -- null=True: None unless a default says otherwise ------------------------------------------
class Nullable(ActiveRecord):
    class Meta:
        namespace = "tests.values"

    text = attributes.Unicode(null=True)
    email = attributes.Unicode(unique=True, null=True)
    raw = attributes.Bytes(null=True)
    number = attributes.Integer(null=True, index=True)
    ratio = attributes.Float(null=True)
    price = attributes.Decimal(null=True)
    at = attributes.DateTime(null=True)
    ref = attributes.UUID(null=True)
    data = attributes.JSON(null=True)
    project = attributes.Pointer(Project, null=True)
    log = attributes.ByteStream(null=True)
    given_none = attributes.Unicode(null=True, default=None)
    given_value = attributes.Integer(null=True, default=5)


class NotNull(ActiveRecord):
    """Fields without null=True keep their type's empty value (README, 0.1's behaviour)."""

    class Meta:
        namespace = "tests.values"

    text = attributes.Unicode()
    raw = attributes.Bytes()
    number = attributes.Integer()
    ratio = attributes.Float()
    price = attributes.Decimal()
    log = attributes.ByteStream()
    text_default_none = attributes.Unicode(default=None)  # the documented signature's default


NULL_FIELDS = ["text", "email", "raw", "number", "ratio", "price", "at", "ref", "data",
               "project", "log", "given_none"]


def test_null_fields_never_given_a_value_are_none_before_and_after_a_round_trip(
        client: redis.Redis) -> None:
    record = Nullable()
    for name in NULL_FIELDS:
        assert getattr(record, name) is None, name
    assert record.given_value == 5
    record.save()
    loaded = Nullable.objects.get(id=record.id)
    assert loaded is not None
    for name in NULL_FIELDS:
        assert getattr(loaded, name) is None, name
    assert loaded.given_value == 5
    assert Nullable.objects.filter(number__isnull=True).ids() == [record.id]
    # nothing stored for them: None is an absent hash field, and no stream key
    assert set(client.hkeys(record._key())) == {b"id", b"given_value"}
    assert client.exists(f"{record._key()}:field:log") == 0


def test_unique_null_fields_left_empty_do_not_collide(client: redis.Redis) -> None:
    first, second = Nullable.create(), Nullable.create()
    assert Nullable.objects.filter(email__isnull=True).count() == 2
    Nullable.create(email="a@b.c")
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation) as raised:
        Nullable.create(email="a@b.c")
    assert (raised.value.model, raised.value.field) == ("Nullable", "email")
    assert snapshot(client) == before
    assert {first.id, second.id} <= set(Nullable.objects.filter(email__isnull=True).ids())


def test_fields_without_null_keep_their_empty_values(client: redis.Redis) -> None:
    record = NotNull.create()
    loaded = NotNull.objects.get(id=record.id)
    assert loaded is not None
    for instance in (record, loaded):
        assert (instance.text, instance.raw, instance.number, instance.ratio, instance.price,
                instance.log, instance.text_default_none) == (
            "", b"", 0, 0.0, decimal.Decimal(0), b"", "")


def test_a_new_instance_with_a_none_stream_removes_an_older_stream_under_its_id(
        client: redis.Redis) -> None:
    old = Nullable.create(log=b"old bytes")
    Nullable(id=old.id).save()  # a new instance knows nothing: it writes every field
    loaded = Nullable.objects.get(id=old.id)
    assert loaded is not None and loaded.log is None
    assert client.exists(f"{old._key()}:field:log") == 0


# -- integers of any size -----------------------------------------------------------------------
class Big(ActiveRecord):
    class Meta:
        namespace = "tests.values"

    n = attributes.Integer(index=True)
    plain = attributes.Integer()
    claim = attributes.Integer(unique=True, null=True)


class CompactBig(Big):
    class Meta:
        namespace = "tests.values"
        codec = "compact"


EDGES = [2**63, 2**64, 10**30]
BIG_VALUES = sorted({sign * (edge + delta) for edge in EDGES for delta in (-1, 0, 1)
                     for sign in (1, -1)} | {0, 2**53, 2**53 + 1, -(2**53) - 1,
                                             int("9" * 400), -int("9" * 400)})
PROBES = [2**64, -(2**64), 2**63 - 1, -(2**63), 10**30 + 1, -(10**30), 2**53 + 1,
          int("9" * 400), 10**500, -(10**500), 0]
ORACLE = {
    "": lambda v, p: v == p, "__lt": lambda v, p: v < p, "__lte": lambda v, p: v <= p,
    "__gt": lambda v, p: v > p, "__gte": lambda v, p: v >= p,
}


@pytest.fixture(params=[Big, CompactBig], ids=["envelope", "compact"])
def big_rows(request: pytest.FixtureRequest, client: redis.Redis) -> dict[uuid.UUID, int]:
    model: type[Big] = request.param
    rows = {model.create(n=v, plain=v, claim=v).id: v for v in BIG_VALUES}
    request.node.model = model
    return rows


def _model(request: pytest.FixtureRequest) -> type[Big]:
    return request.node.model  # type: ignore[no-any-return]


@pytest.mark.parametrize("field", ["n", "plain", "claim"])
def test_integers_of_any_size_compare_exactly_on_the_server(
        request: pytest.FixtureRequest, big_rows: dict[uuid.UUID, int], field: str) -> None:
    model = _model(request)
    for probe in PROBES:
        for suffix, holds in ORACLE.items():
            expected = {rid for rid, v in big_rows.items() if holds(v, probe)}
            got = set(model.objects.filter(**{field + suffix: probe}).ids())
            assert got == expected, (field + suffix, probe)
            assert model.objects.filter(**{field + suffix: probe}).count() == len(expected)
        excluded = set(model.objects.exclude(**{field: probe}).ids())
        assert excluded == {rid for rid, v in big_rows.items() if v != probe}
    low, high = -(2**64), 10**30
    assert set(model.objects.filter(**{f"{field}__range": (low, high)}).ids()) == {
        rid for rid, v in big_rows.items() if low <= v <= high}
    wanted = [2**64 + 1, 2**64, -(2**63) - 1, 10**500]
    assert set(model.objects.filter(**{f"{field}__in": wanted}).ids()) == {
        rid for rid, v in big_rows.items() if v in wanted}


@pytest.mark.parametrize("field", ["n", "plain", "claim"])
def test_integers_of_any_size_order_exactly(request: pytest.FixtureRequest,
                                            big_rows: dict[uuid.UUID, int], field: str) -> None:
    model = _model(request)
    ascending = [rid for rid, _ in sorted(big_rows.items(), key=lambda item: item[1])]
    assert model.objects.order_by(field).ids() == ascending
    assert model.objects.order_by("-" + field).ids() == ascending[::-1]
    assert [r.n for r in model.objects.order_by(field)[3:9]] == sorted(big_rows.values())[3:9]


def test_integers_of_any_size_round_trip(request: pytest.FixtureRequest,
                                         big_rows: dict[uuid.UUID, int]) -> None:
    model = _model(request)
    for rid, value in big_rows.items():
        loaded = model.objects.get(id=rid)
        assert loaded is not None
        assert (loaded.n, loaded.plain, loaded.claim) == (value, value, value)
        assert type(loaded.n) is int


def test_unique_integers_sharing_one_double_are_distinct_claims(client: redis.Redis) -> None:
    Big.create(claim=2**64)
    Big.create(claim=2**64 + 1)  # the same double score, another value: no conflict
    before = snapshot(client)
    with pytest.raises(errors.UniqueViolation):
        Big.create(claim=2**64)
    assert snapshot(client) == before
    assert Big.objects.get(claim=2**64 + 1).claim == 2**64 + 1  # type: ignore[union-attr]


def test_a_huge_integer_is_a_validation_error_naming_the_field(client: redis.Redis) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        Big(n=10**5000)
    assert (raised.value.model, raised.value.field) == ("Big", "n")
    assert len(str(raised.value)) < 400
    with pytest.raises(errors.ValidationError):
        Big.objects.filter(n__lt=10**5000)


# -- Pointers given ids ----------------------------------------------------------------------
@pytest.fixture
def project(client: redis.Redis) -> Project:
    return Project.create(name="target")


@pytest.mark.parametrize("form", [lambda p: p.id, lambda p: str(p.id), lambda p: p.id.hex,
                                  lambda p: p], ids=["uuid", "text", "hex", "instance"])
def test_create_with_a_pointer_is_one_round_trip(project: Project, roundtrips: RoundTrips,
                                                 form: Any) -> None:
    Build.create(project=project)  # the script is loaded once, outside the count
    roundtrips.reset()
    build = Build.create(project=form(project))
    assert roundtrips.count == 1
    loaded = Build.objects.get(id=build.id)
    assert loaded is not None and loaded.project == project


def test_assigning_a_pointer_id_does_no_io(project: Project, roundtrips: RoundTrips) -> None:
    roundtrips.reset()
    build = Build(project=project.id)
    build.project = str(project.id)
    assert roundtrips.count == 0
    assert build.to_dict()["project"] == project.id
    assert build.matches({"project": project.id})
    assert build.project == project  # reading it loads the target
    assert roundtrips.count == 1


def test_pointer_cast_loads_the_target_as_in_0_1(project: Project) -> None:
    field = Build._meta.fields["project"]
    assert field.cast(str(project.id)) == project
    assert field.cast(project) is project
    with pytest.raises(errors.PointerTargetMissing):
        field.cast(uuid.uuid4())


def test_pointer_to_a_deleted_instance_says_deleted(client: redis.Redis, project: Project) -> None:
    build = Build(project=project)
    project.delete()
    before = snapshot(client)
    with pytest.raises(errors.UnsavedPointer) as raised:
        build.save()
    assert "deleted Project" in str(raised.value) and "unsaved" not in str(raised.value)
    assert (raised.value.model, raised.value.field) == ("Build", "project")
    with pytest.raises(errors.UnsavedPointer) as raised:
        Build.create(project=Project(name="never saved"))
    assert "unsaved Project" in str(raised.value)
    assert snapshot(client) == before
    project.save()  # saved again: a valid target once more
    assert Build.create(project=project).project is project


def test_a_pointer_id_whose_target_was_deleted_fails_the_save_untouched(
        client: redis.Redis, project: Project) -> None:
    build = Build(project=project.id)
    Project.objects.get(id=project.id).delete()  # type: ignore[union-attr]
    before = snapshot(client)
    with pytest.raises(errors.PointerTargetMissing) as raised:
        build.save()
    assert (raised.value.model, raised.value.field) == ("Build", "project")
    assert snapshot(client) == before


# -- values Python's json cannot nest --------------------------------------------------------
def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


DEEP_TEXT = ("[" * 100_000 + "]" * 100_000).encode()


def test_deep_json_on_write_is_a_validation_error(client: redis.Redis) -> None:
    deep = _nested(100_000)
    with pytest.raises(errors.ValidationError) as raised:
        Project(metadata=deep)
    assert (raised.value.model, raised.value.field) == ("Project", "metadata")
    with pytest.raises(errors.ValidationError):
        Project.objects.filter(metadata=deep)
    project = Project.create(metadata={"k": []})
    project.metadata["k"].append(deep)  # mutated in place after the assignment
    before = snapshot(client)
    with pytest.raises(errors.ValidationError) as raised:
        project.save()
    assert (raised.value.model, raised.value.field) == ("Project", "metadata")
    assert snapshot(client) == before
    assert "metadata=" in repr(project)  # a repr of it still prints


@pytest.mark.parametrize("codec", ["envelope", "compact"])
def test_deep_json_on_read_is_a_stored_data_error(client: redis.Redis, codec: str) -> None:
    model = Project if codec == "envelope" else _CompactProject
    record = model.create(name="deep")
    stored = (attributes.JSON().to_string([]).replace('"[]"', '"' + DEEP_TEXT.decode() + '"')
              .encode() if codec == "envelope" else DEEP_TEXT)
    client.hset(record._key(), "metadata", stored)
    with pytest.raises(errors.StoredDataError) as raised:
        model.objects.get(id=record.id)
    assert (raised.value.model, raised.value.field) == (model.__name__, "metadata")
    with pytest.raises(errors.StoredDataError):
        list(model.objects.filter(name="deep"))


class _CompactProject(ActiveRecord):
    class Meta:
        namespace = "tests.values"
        codec = "compact"

    name = attributes.Unicode()
    metadata = attributes.JSON()


# -- repr -------------------------------------------------------------------------------------
class Account(ActiveRecord):
    class Meta:
        namespace = "tests.values"

    name = attributes.Unicode(index=True)
    password = attributes.Bytes()
    avatar = attributes.ByteStream()
    joined = attributes.DateTime(null=True)


def test_record_repr_shows_bytes_by_length_only(client: redis.Redis) -> None:
    secret = b"$2b$10$N9qo8uLOickgx2ZMRZoMye"
    account = Account.create(name="harry", password=secret, avatar=b"\x89PNG" * 10,
                             joined=dt.datetime(2026, 1, 2))
    for instance in (account, Account.objects.get(id=account.id)):
        text = repr(instance)
        assert secret.decode() not in text and "PNG" not in text
        assert f"password=<{len(secret)} bytes>" in text and "avatar=<40 bytes>" in text
        assert "name='harry'" in text


def test_queryset_repr_is_truncated_after_20_records(client: redis.Redis,
                                                     roundtrips: RoundTrips) -> None:
    Account.objects.bulk_create([Account(name=f"user{i:03}") for i in range(100)])
    roundtrips.reset()
    text = repr(Account.objects.order_by("name"))
    assert roundtrips.count == 1
    assert text.count("<Account ") == 20 and "name='user019'" in text
    assert text.endswith("'...(remaining elements truncated)...']>")
    assert len(text) < 20 * 200
    evaluated = Account.objects.filter(name__startswith="user")
    assert len(evaluated) == 100
    roundtrips.reset()
    assert repr(evaluated).count("<Account ") == 20  # from the cache: no I/O
    assert roundtrips.count == 0
    few = repr(Account.objects.filter(name__in=[f"user{i:03}" for i in range(20)]))
    assert few.count("<Account ") == 20 and "truncated" not in few
    assert repr(Account.objects.filter(name="nobody")) == "<QuerySet []>"
