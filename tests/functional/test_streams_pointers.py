"""ByteStreams (atomic appends, stale saves, replacement, buffering), Pointers (depth, chains,
cycles, missing targets, lookups), typed ordering and the instance API, on a real server."""

from __future__ import annotations

import datetime as dt
import decimal
import multiprocessing
import threading
import uuid

import pytest
import redis

from repocket import ActiveRecord, attributes, configure, errors
from tests.conftest import RoundTrips, snapshot

from .models import Build, Measure, Node, Project

UTC = dt.timezone.utc


class Artifact(ActiveRecord):
    """Points at a Build, which has streams of its own and points further at a Project."""

    class Meta:
        namespace = "tests"

    build = attributes.Pointer(Build)
    log = attributes.ByteStream(null=True)


def stream_key(record: ActiveRecord, name: str) -> str:
    return f"{type(record)._meta.record_key(record.pk)}:field:{name}"


@pytest.fixture
def project(client: redis.Redis) -> Project:
    return Project.create(name="repocket", metadata={"k": 1})


@pytest.fixture
def build(project: Project) -> Build:
    return Build.create(project=project, stdout=b"out", stderr=b"err")


# -- ByteStream ------------------------------------------------------------------------------
def test_append_is_one_round_trip_and_atomic_on_the_server(client: redis.Redis, build: Build,
                                                           roundtrips: RoundTrips) -> None:
    build.append_stdout(b"")  # loads the script
    loaded = Build.objects.get(id=build.id)
    roundtrips.reset()
    assert loaded.append_stdout(b"\x00\xff-binary") == len(b"out\x00\xff-binary")
    assert roundtrips.count == 1
    assert loaded.stdout == b"out\x00\xff-binary"
    assert client.get(stream_key(build, "stdout")) == b"out\x00\xff-binary"
    roundtrips.reset()
    assert loaded.append_stderr("é") == len(b"err") + 2  # str is encoded as UTF-8
    assert roundtrips.count == 1
    assert Build.objects.get(id=build.id).stderr == "erré".encode()


def test_concurrent_appends_from_threads_lose_no_bytes(client: redis.Redis, build: Build) -> None:
    threads, per_thread = 8, 40
    errors_seen: list[BaseException] = []

    def appender(number: int) -> None:
        try:
            mine = Build.objects.get(id=build.id)
            for j in range(per_thread):
                mine.append_stdout(f"[{number}:{j}:{'x' * (j % 7)}]".encode())
        except BaseException as exc:  # pragma: no cover - reported below
            errors_seen.append(exc)

    def stale_saver() -> None:  # saves stale copies while the appends run
        try:
            for i in range(30):
                stale = Build.objects.get(id=build.id)
                stale.ended_at = dt.datetime(2020, 1, 1, 0, 0, i)
                stale.save()
        except BaseException as exc:  # pragma: no cover
            errors_seen.append(exc)

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
    workers.append(threading.Thread(target=stale_saver))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors_seen == []
    chunks = [f"[{n}:{j}:{'x' * (j % 7)}]".encode() for n in range(threads)
              for j in range(per_thread)]
    stored = Build.objects.get(id=build.id).stdout
    assert len(stored) == len(b"out") + sum(len(chunk) for chunk in chunks)
    assert client.strlen(stream_key(build, "stdout")) == len(stored)
    for chunk in chunks:
        assert stored.count(chunk) == 1
    for n in range(threads):  # each writer's chunks stay in its own order
        positions = [stored.index(f"[{n}:{j}:".encode()) for j in range(per_thread)]
        assert positions == sorted(positions)


def _process_appender(url: str, build_id: str, tag: int, count: int) -> None:
    configure.connection_pool(url=url)
    mine = Build.objects.get(id=build_id)
    for j in range(count):
        mine.append_stdout(_chunk(tag, j))


def _chunk(tag: int, j: int) -> bytes:
    return f"<{tag}.{j}>".encode() + bytes([tag]) * (j % 5)


def test_concurrent_appends_from_processes_lose_no_bytes(client: redis.Redis, redis_url: str,
                                                         build: Build) -> None:
    context = multiprocessing.get_context("spawn")
    tags, count = (1, 2, 3), 150
    processes = [context.Process(target=_process_appender,
                                 args=(redis_url, str(build.id), tag, count)) for tag in tags]
    for process in processes:
        process.start()
    local = Build.objects.get(id=build.id)
    for j in range(count):  # this process appends too
        local.append_stdout(_chunk(9, j))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    expected = len(b"out") + sum(len(_chunk(tag, j)) for tag in (*tags, 9) for j in range(count))
    stored = Build.objects.get(id=build.id).stdout
    assert len(stored) == expected
    for tag in (*tags, 9):
        for j in range(count):
            assert stored.count(_chunk(tag, j)) == 1


def test_stale_save_never_overwrites_bytes_appended_elsewhere(client: redis.Redis,
                                                              build: Build) -> None:
    stale = Build.objects.get(id=build.id)
    other = Build.objects.get(id=build.id)
    other.append_stdout(b"+other")
    stale.ended_at = dt.datetime(2021, 1, 1)
    stale.save()  # holds b"out" only; must leave the stream alone
    assert Build.objects.get(id=build.id).stdout == b"out+other"
    stale.stdout = stale.stdout + b"+stale"  # extends what it loaded: an append of the new part
    stale.save()
    assert Build.objects.get(id=build.id).stdout == b"out+other+stale"
    assert Build.objects.get(id=build.id).ended_at == dt.datetime(2021, 1, 1)


def test_stale_append_then_save_does_not_double_the_bytes(client: redis.Redis,
                                                          build: Build) -> None:
    loaded = Build.objects.get(id=build.id)
    loaded.append_stdout(b"+1")
    loaded.save()
    loaded.save()
    assert Build.objects.get(id=build.id).stdout == b"out+1"


def test_assigning_a_value_that_does_not_extend_the_loaded_one_replaces_it(
        client: redis.Redis, build: Build) -> None:
    other = Build.objects.get(id=build.id)
    loaded = Build.objects.get(id=build.id)
    other.append_stdout(b"+other")
    loaded.stdout = b"fresh start"
    loaded.save()
    assert Build.objects.get(id=build.id).stdout == b"fresh start"
    loaded.stdout = b""
    loaded.save()
    assert Build.objects.get(id=build.id).stdout == b""


def test_unsaved_instance_buffers_appends_until_save(client: redis.Redis, project: Project,
                                                     roundtrips: RoundTrips) -> None:
    Build.create(project=project).append_stdout(b"warm-up")
    record = Build(project=project)
    roundtrips.reset()
    assert record.append_stdout(b"12") == 2
    assert record.append_stdout(b"\xff") == 3
    assert roundtrips.count == 0
    assert client.exists(stream_key(record, "stdout")) == 0
    assert Build.objects.get(id=record.id) is None
    record.save()
    assert Build.objects.get(id=record.id).stdout == b"12\xff"
    assert record.append_stdout(b"3") == 4  # saved now: straight to Redis
    assert client.get(stream_key(record, "stdout")) == b"12\xff3"


def test_append_after_delete_buffers_and_save_recreates_the_stream(client: redis.Redis,
                                                                   build: Build) -> None:
    loaded = Build.objects.get(id=build.id)
    assert loaded.delete() == 3
    assert loaded.append_stdout(b"+again") == len(b"out+again")
    assert client.exists(stream_key(build, "stdout")) == 0
    loaded.save()
    again = Build.objects.get(id=build.id)
    assert (again.stdout, again.stderr) == (b"out+again", b"err")


def test_save_after_a_concurrent_delete_raises_and_writes_nothing(client: redis.Redis,
                                                                  build: Build) -> None:
    """No resurrection (issue 12): a stale instance's save finds 'gone' and raises."""
    loaded = Build.objects.get(id=build.id)
    Build.objects.get(id=build.id).delete()
    loaded.ended_at = dt.datetime(2022, 2, 2)
    before = snapshot(client)
    with pytest.raises(errors.DoesNotExist) as raised:
        loaded.save()
    assert (raised.value.model, raised.value.value) == ("Build", build.id)
    assert snapshot(client) == before  # nothing written: no hash, no stream, no index entry


def test_force_insert_recreates_the_whole_record(client: redis.Redis, build: Build) -> None:
    """save(force_insert=True) re-creates a deleted record whole, streams included."""
    loaded = Build.objects.get(id=build.id)
    Build.objects.get(id=build.id).delete()
    loaded.ended_at = dt.datetime(2022, 2, 2)
    loaded.save(force_insert=True)
    again = Build.objects.get(id=build.id)
    assert again is not None
    assert again.ended_at == dt.datetime(2022, 2, 2)
    assert again.project == build.project
    assert (again.stdout, again.stderr) == (b"out", b"err")


def test_new_instance_saved_over_an_existing_id_stores_its_own_stream(client: redis.Redis,
                                                                      build: Build) -> None:
    """After save() the stored record equals the instance, ByteStreams included."""
    replacement = Build(id=build.id, project=build.project, stdout=b"new", stderr=b"")
    replacement.save()
    stored = Build.objects.get(id=build.id)
    assert stored.stdout == replacement.stdout == b"new"
    assert stored.stderr == b""


def test_nullable_stream_none_deletes_the_key(client: redis.Redis, build: Build) -> None:
    artifact = Artifact.create(build=build, log=b"log")
    assert client.get(stream_key(artifact, "log")) == b"log"
    artifact.log = None
    artifact.save()
    assert client.exists(stream_key(artifact, "log")) == 0
    assert Artifact.objects.get(id=artifact.id).log is None
    artifact.append_log(b"x")
    assert Artifact.objects.get(id=artifact.id).log == b"x"


# -- Pointers ---------------------------------------------------------------------------------
def test_get_returns_the_target_with_its_own_streams(client: redis.Redis, build: Build,
                                                     roundtrips: RoundTrips) -> None:
    artifact = Artifact.create(build=build, log=b"a")
    Artifact.objects.get(id=artifact.id)
    roundtrips.reset()
    loaded = Artifact.objects.get(id=artifact.id, pointer_depth=2)
    assert loaded.build.stdout == b"out" and loaded.build.stderr == b"err"
    assert loaded.build.project.name == "repocket"
    assert roundtrips.count == 1
    shallow = Artifact.objects.get(id=artifact.id)  # depth 1: the build, not its project
    assert isinstance(shallow._values["build"], Build)
    assert shallow.build.stdout == b"out"
    assert isinstance(shallow.build._values["project"], uuid.UUID)
    roundtrips.reset()
    assert shallow.build.project.name == "repocket"  # loaded on first access
    assert roundtrips.count == 1


def test_depth_zero_leaves_an_id_that_loads_on_first_access(client: redis.Redis, build: Build,
                                                            roundtrips: RoundTrips) -> None:
    Build.objects.get(id=build.id)
    roundtrips.reset()
    loaded = Build.objects.get(id=build.id, pointer_depth=0)
    assert roundtrips.count == 1
    assert loaded._values["project"] == build.project.id
    assert loaded.to_dict()["project"] == build.project.id
    assert loaded.project.name == "repocket"
    assert roundtrips.count == 2
    assert loaded.project.name == "repocket"
    assert roundtrips.count == 2  # loaded once, then kept
    results = Build.objects.filter(pointer_depth=0)
    assert results[0]._values["project"] == build.project.id


def test_depth_two_chains_and_deeper_loads_lazily(client: redis.Redis) -> None:
    d = Node.create(label="d")
    c = Node.create(label="c", next=d)
    b = Node.create(label="b", next=c)
    a = Node.create(label="a", next=b)
    loaded = Node.objects.get(id=a.id, pointer_depth=2)
    assert loaded.next.label == "b"
    assert loaded.next.next.label == "c"
    assert loaded.next.next._values["next"] == d.id  # beyond depth 2: still an id
    assert loaded.next.next.next.label == "d"
    assert loaded.next.next.next.next is None


def test_cycle_terminates_and_links_the_same_instances(client: redis.Redis,
                                                       roundtrips: RoundTrips) -> None:
    a = Node.create(label="a")
    b = Node.create(label="b", next=a)
    a.next = b
    a.save()
    for depth in (1, 2, 16):
        roundtrips.reset()
        loaded = Node.objects.get(id=a.id, pointer_depth=depth)
        assert roundtrips.count == 1
        assert loaded.next.label == "b"
        assert loaded.next.next is loaded
    self_loop = Node.create(label="self")
    self_loop.next = self_loop
    self_loop.save()
    loaded = Node.objects.get(id=self_loop.id, pointer_depth=16)
    assert loaded.next is loaded
    by_label = {node.label: node for node in Node.objects.filter(pointer_depth=16)}
    assert by_label["a"].next is by_label["b"] and by_label["b"].next is by_label["a"]


def test_pointer_to_a_deleted_record_is_none(client: redis.Redis, build: Build) -> None:
    Project.objects.get(id=build.project.id).delete()
    assert Build.objects.get(id=build.id).project is None
    assert Build.objects.filter()[0].project is None
    lazy = Build.objects.get(id=build.id, pointer_depth=0)
    assert lazy.project is None


def test_filter_by_pointer_instance_or_id(client: redis.Redis, project: Project,
                                          build: Build) -> None:
    other = Project.create(name="other")
    Build.create(project=other)
    for lookup in (project, project.id, str(project.id), project.id.hex,
                   f"urn:uuid:{project.id}", str(project.id).upper()):
        found = Build.objects.filter(project=lookup)
        assert [record.id for record in found] == [build.id], lookup
        assert found[0].project.name == "repocket"
    assert Build.objects.get(project=project) == build
    assert len(Build.objects.filter(project=None)) == 0


def test_pointer_assigned_an_id_is_loaded(client: redis.Redis, project: Project) -> None:
    record = Build(project=str(project.id))
    assert record.project == project and record.project.name == "repocket"
    record.save()
    assert Build.objects.get(id=record.id).project.metadata == {"k": 1}


# -- ordering ---------------------------------------------------------------------------------
def _measures(**columns: list[object]) -> list[Measure]:
    names = list(columns)
    rows = list(zip(*columns.values(), strict=True))
    return [Measure.create(**dict(zip(names, row, strict=True))) for row in rows]


def test_integer_order_is_numeric(client: redis.Redis) -> None:
    _measures(count=[10, 2, -5, 1, 100])
    results = Measure.objects.all()
    assert [m.count for m in results.order_by("count")] == [-5, 1, 2, 10, 100]
    assert [m.count for m in results.order_by("-count")] == [100, 10, 2, 1, -5]


def test_float_and_decimal_order_is_numeric(client: redis.Redis) -> None:
    _measures(ratio=[0.5, -1.0, 10.0, float("inf"), float("-inf"), 9.75],
              price=["1.10", "1.9", "10", "-0.5", "2E+1", "0.0001"])
    results = Measure.objects.all()
    assert [m.ratio for m in results.order_by("ratio")] == [
        float("-inf"), -1.0, 0.5, 9.75, 10.0, float("inf")]
    assert [str(m.price) for m in results.order_by("price")] == [
        "-0.5", "0.0001", "1.10", "1.9", "10", "2E+1"]
    assert str(results.order_by("-price")[0].price) == "2E+1"


def test_datetime_order_is_chronological_across_naive_and_aware(client: redis.Redis) -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    moments = [
        dt.datetime(2020, 1, 1, 12, 0),  # naive, taken as UTC: 12:00Z
        dt.datetime(2020, 1, 1, 13, 0, tzinfo=plus2),  # 11:00Z
        dt.datetime(2020, 1, 1, 12, 30, tzinfo=UTC),  # 12:30Z
        None,
        dt.datetime(2020, 1, 1, 12, 0, 0, 1),  # naive, 1 µs after noon
    ]
    _measures(at=moments, label=["noon", "eleven", "half", "none", "noon+1us"])
    results = Measure.objects.all()
    assert [m.label for m in results.order_by("at")] == [
        "none", "eleven", "noon", "noon+1us", "half"]
    assert [m.label for m in results.order_by("-at")] == [
        "half", "noon+1us", "noon", "eleven", "none"]


def test_none_first_multi_key_and_descending(client: redis.Redis) -> None:
    _measures(label=["b", None, "a", "b", None], count=[1, 5, 3, 2, 4])
    results = Measure.objects.all()
    assert [(m.label, m.count) for m in results.order_by("label", "-count")] == [
        (None, 5), (None, 4), ("a", 3), ("b", 2), ("b", 1)]
    assert [(m.label, m.count) for m in results.order_by("-label", "count")] == [
        ("b", 1), ("b", 2), ("a", 3), (None, 4), (None, 5)]
    ordered = results.order_by("count")
    assert isinstance(ordered, type(results)) and ordered.model is Measure
    assert [m.count for m in ordered[1:3]] == [2, 3]
    assert [m.count for m in ordered[1:3].order_by("-count")] == [3, 2]


def test_order_by_pointer_uuid_and_bytes(client: redis.Redis) -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(4))
    for i, ref in enumerate(reversed(ids)):
        Measure.create(ref=ref, blob=bytes([i]))
    results = Measure.objects.all()
    assert [str(m.ref) for m in results.order_by("ref")] == ids
    assert [m.blob for m in results.order_by("-blob")] == [b"\x03", b"\x02", b"\x01", b"\x00"]


# -- the instance API ---------------------------------------------------------------------------
def test_matches(client: redis.Redis, build: Build, project: Project) -> None:
    loaded = Build.objects.get(id=build.id)
    assert loaded.matches({"project": project})
    assert loaded.matches({"project": project.id, "stdout": b"out"})
    assert not loaded.matches({"project": Project.create(name="x")})
    assert not loaded.matches({"stdout": b"other"})
    assert loaded.matches({})
    measure = Measure.create(price="1.10", ratio=-0.0)
    assert measure.matches({"price": decimal.Decimal("1.1"), "ratio": 0.0})
    with pytest.raises(errors.UnknownField):
        loaded.matches({"nope": 1})


def test_to_dict(client: redis.Redis, build: Build, project: Project) -> None:
    loaded = Build.objects.get(id=build.id)
    assert loaded.to_dict() == {
        "id": build.id, "project": project.id, "started_at": None, "ended_at": None,
        "stdout": b"out", "stderr": b"err"}
    assert Project.objects.get(id=project.id).to_dict() == {
        "id": project.id, "name": "repocket", "git_uri": b"", "metadata": {"k": 1}}


def test_equality_hash_and_repr(client: redis.Redis, build: Build, project: Project) -> None:
    loaded = Build.objects.get(id=build.id)
    assert loaded == build and loaded is not build
    assert hash(loaded) == hash(build)
    assert len({loaded, build, Build.objects.get(id=build.id)}) == 1
    assert build != Build(project=project)
    twin = Project(id=build.id, name="same id, other model")
    assert twin != build and build != twin
    assert build != str(build.id)
    text = repr(Project(name="x" * 500))
    assert text.startswith("<Project id=UUID(") and "name='xxx" in text
    assert len(text) < 300  # long values are shortened
    assert "stdout=<3 bytes>" in repr(loaded)  # bytes by their length: they may be secrets
    assert "b'out'" not in repr(loaded)


def test_item_access_and_key_error_naming_valid_fields(client: redis.Redis, build: Build) -> None:
    loaded = Build.objects.get(id=build.id)
    assert loaded["id"] == build.id
    assert loaded["stdout"] == b"out"
    assert loaded["project"].name == "repocket"
    loaded["ended_at"] = "2020-01-01T00:00:00"
    assert loaded.ended_at == dt.datetime(2020, 1, 1)
    with pytest.raises(KeyError) as raised:
        loaded["colour"]
    message = str(raised.value)
    assert "colour" in message
    for name in ("id", "project", "started_at", "ended_at", "stdout", "stderr"):
        assert name in message


@pytest.mark.parametrize("form", ["uuid", "canonical", "upper", "hex32", "urn", "bytes", "pk"])
def test_get_accepts_every_id_form(client: redis.Redis, project: Project, form: str) -> None:
    pid = project.id
    lookups = {
        "uuid": {"id": pid}, "canonical": {"id": str(pid)}, "upper": {"id": str(pid).upper()},
        "hex32": {"id": pid.hex}, "urn": {"id": pid.urn}, "bytes": {"id": str(pid).encode()},
        "pk": {"pk": str(pid)},
    }[form]
    found = Project.objects.get(**lookups)
    assert found == project and found.name == "repocket"
    assert found.id == pid and isinstance(found.id, uuid.UUID)


def test_get_of_a_missing_id_is_none_and_bad_depth_is_invalid_query(client: redis.Redis) -> None:
    assert Project.objects.get(id=uuid.uuid4()) is None
    with pytest.raises(errors.InvalidQuery):
        Project.objects.get(id=uuid.uuid4(), pointer_depth=-1)
    with pytest.raises(errors.InvalidQuery):
        Project.objects.filter(pointer_depth=17)


def test_get_by_other_fields_and_multiple_objects(client: redis.Redis) -> None:
    Project.create(name="same")
    Project.create(name="same")
    single = Project.create(name="single")
    assert Project.objects.get(name="single") == single
    assert Project.objects.get(name="missing") is None
    with pytest.raises(errors.MultipleObjectsReturned):
        Project.objects.get(name="same")
