"""Server-side refusals: over maxmemory (the #!lua shebang makes Redis refuse the
whole script before it runs) and wrong key types surface as typed errors and
leave the keyspace exactly as it was; a server that may evict keys is warned about."""

from __future__ import annotations

import logging

import pytest
import redis

from repocket import errors
from repocket.exec.registry import registry
from tests.conftest import RoundTrips, snapshot

from .models import Build, Project


def test_over_maxmemory_writes_are_refused_whole_and_reads_still_work(
        client: redis.Redis) -> None:
    project = Project.create(name="kept")
    build = Build.create(project=project, stdout=b"log")
    before = snapshot(client)
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(errors.OutOfMemory) as raised:
            Build.create(project=project, stdout=b"x" * 10_000)
        assert "Build" in str(raised.value)
        assert isinstance(raised.value, redis.exceptions.OutOfMemoryError)
        with pytest.raises(errors.OutOfMemory):
            build.append_stdout(b"more")
        loaded = Build.objects.get(id=build.id)  # read-only scripts run under OOM
        assert loaded.stdout == b"log"
        assert [b.id for b in Build.objects.filter(project=project)] == [build.id]
    finally:
        client.config_set("maxmemory", 0)
    assert snapshot(client) == before


def test_wrong_type_under_a_stream_key_fails_before_any_write(client: redis.Redis) -> None:
    project = Project.create(name="p")
    build = Build(project=project, stdout=b"new bytes", stderr=b"err")
    client.rpush(f"{build._key()}:field:stderr", "not a string")
    before = snapshot(client)
    with pytest.raises(errors.WrongKeyType) as raised:
        build.save()
    assert raised.value.model == "Build"
    assert raised.value.field == "stderr"
    assert raised.value.key.endswith(":field:stderr")
    assert snapshot(client) == before


def test_an_eviction_policy_other_than_noeviction_is_warned_about_once(
        client: redis.Redis, roundtrips: RoundTrips, caplog: pytest.LogCaptureFixture) -> None:
    client.config_set("maxmemory-policy", "allkeys-lru")
    registry.clear()  # as in a new process: the server was not asked yet
    roundtrips.reset()
    try:
        with caplog.at_level(logging.WARNING, logger="repocket"):
            project = Project.create(name="evictable")
            assert roundtrips.count == 1  # the question travels with the first call
            Project.objects.get(id=project.id)
            Project.create(name="again")
        warnings = [record for record in caplog.records if record.name == "repocket"]
        assert len(warnings) == 1, warnings
        assert "allkeys-lru" in warnings[0].getMessage()
        assert "noeviction" in warnings[0].getMessage()
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        registry.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="repocket"):
        Project.create(name="kept")
    assert [record for record in caplog.records if record.name == "repocket"] == []
