"""Each model operation is exactly one round trip (one EVALSHA), counted on the client."""

from __future__ import annotations

import redis

from repocket.exec.registry import registry, server_name
from tests.conftest import RoundTrips

from .models import Build, Node, Project


def test_create_save_get_delete_append_filter_are_one_round_trip_each(
        client: redis.Redis, roundtrips: RoundTrips) -> None:
    Project(name="warm-up").save()  # loads the script (SCRIPT LOAD + EVALSHA, one round trip)
    Build.objects.get(id=Project.create(name="x").id)
    len(Build.objects.filter(project=Project.objects.all()[0]))
    Build(project=Project.create(name="w")).save()
    Build.create(project=Project.objects.all()[0]).append_stdout(b"x")
    Build.create(project=Project.objects.all()[0]).delete()

    project = Project.create(name="repocket")
    roundtrips.reset()
    build = Build.create(project=project, stdout=b"out", stderr=b"err")
    assert roundtrips.count == 1, "create (hash + 2 streams + id set + pointer check)"

    roundtrips.reset()
    build.ended_at = build.started_at
    build.save()
    assert roundtrips.count == 1, "save"

    roundtrips.reset()
    loaded = Build.objects.get(id=build.id)
    assert roundtrips.count == 1, "get"
    assert loaded is not None
    assert loaded.project.name == "repocket"  # dereferenced in that same round trip
    assert (loaded.stdout, loaded.stderr) == (b"out", b"err")
    assert roundtrips.count == 1

    roundtrips.reset()
    assert loaded.append_stdout(b"+more") == len(b"out+more")
    assert roundtrips.count == 1, "append"

    roundtrips.reset()
    found = Build.objects.filter(project=project)
    assert roundtrips.count == 0, "querysets are lazy"
    found = list(found)
    assert roundtrips.count == 1, "filter"
    assert [b.id for b in found] == [build.id]
    assert found[0].project.name == "repocket"
    assert roundtrips.count == 1

    roundtrips.reset()
    assert loaded.delete() == 3
    assert roundtrips.count == 1, "delete"


def test_depth_two_chain_is_still_one_round_trip(client: redis.Redis,
                                                  roundtrips: RoundTrips) -> None:
    c = Node.create(label="c")
    b = Node.create(label="b", next=c)
    a = Node.create(label="a", next=b)
    Node.objects.get(id=a.id)
    roundtrips.reset()
    loaded = Node.objects.get(id=a.id, pointer_depth=2)
    assert roundtrips.count == 1
    assert loaded.next.next.label == "c"
    assert roundtrips.count == 1
    assert loaded.next.next.next is None
    assert roundtrips.count == 1


def test_script_flush_is_survived_transparently(client: redis.Redis,
                                                roundtrips: RoundTrips) -> None:
    project = Project.create(name="before flush")
    Project.objects.get(id=project.id)  # its script loaded: known to the registry
    client.script_flush()
    roundtrips.reset()
    assert Project.objects.get(id=project.id).name == "before flush"
    assert roundtrips.count == 2  # EVALSHA -> NOSCRIPT, then EVAL (runs and caches it)
    roundtrips.reset()
    assert Project.objects.get(id=project.id).name == "before flush"
    assert roundtrips.count == 1


def test_first_use_of_every_script_is_one_round_trip(client: redis.Redis,
                                                     roundtrips: RoundTrips) -> None:
    """A fresh process on a server with an empty script cache: SCRIPT LOAD (and, on the first
    call, INFO memory) travel with the EVALSHA, in the same round trip."""
    client.script_flush()
    client.config_resetstat()
    registry.clear()  # as in a new process
    roundtrips.reset()
    project = Project.create(name="first")
    assert roundtrips.count == 1, "save, first use (INFO memory + SCRIPT LOAD + EVALSHA)"
    roundtrips.reset()
    build = Build.create(project=project, stdout=b"x")
    assert roundtrips.count == 1, "save of another model, first use"
    firsts = {
        "get": lambda: Build.objects.get(id=build.id),
        "query": lambda: list(Build.objects.filter(project=project)),
        "append": lambda: build.append_stdout(b"y"),
        "delete": lambda: build.delete(),
    }
    for name, run in firsts.items():
        roundtrips.reset()
        run()
        assert roundtrips.count == 1, f"{name}, first use"
    stats = client.info("commandstats")
    assert "cmdstat_eval" not in stats  # never a NOSCRIPT answered by EVAL
    loaded = registry.server(server_name(client.connection_pool.connection_kwargs)).loaded
    assert len(loaded) == stats["cmdstat_script|load"]["calls"] >= 6  # one per script used
    assert client.script_exists(*loaded) == [True] * len(loaded)  # loaded for good
