"""Redis Cluster failover (a cluster of its own: a primary is killed): while no node serves
the dead primary's slots, repocket raises only typed retriable errors; writes resume once a
replica is promoted (its empty script cache answered by EVAL); no record is torn, no unique
value is held twice and check() finds nothing wrong."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from repocket import ActiveRecord, attributes, configure, errors
from repocket.tools.server import LocalCluster

pytestmark = pytest.mark.cluster


class Ledger(ActiveRecord):
    class Meta:
        namespace = "tests.cluster.failover"

    code = attributes.Unicode(unique=True)
    amount = attributes.Integer(index=True)
    note = attributes.Unicode()


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(masters=3, replicas=1) as cluster:
        configure.reset()
        configure.connection_pool(client=RedisCluster(
            startup_nodes=cluster.startup_nodes(), retry=Retry(NoBackoff(), 0)))
        yield cluster
        configure.reset()


def test_writes_resume_after_a_primary_is_killed(own_cluster: LocalCluster) -> None:
    records = Ledger.objects.bulk_create([Ledger(code=f"c{i}", amount=i, note="v0")
                                          for i in range(60)])
    own_cluster.primaries[0].kill()  # kill -9: its replica takes over after node-timeout
    errors_seen: list[type[BaseException]] = []
    written: dict[str, int] = {}
    started = time.monotonic()
    resumed_after = None
    rounds = 0
    while time.monotonic() - started < 20 and (resumed_after is None or rounds < 3):
        failures_before = len(errors_seen)
        for record in records:
            record.amount += 100
            record.note = f"v{rounds + 1}"
            try:
                record.save()
                written[str(record.pk)] = record.amount
            except errors.RepocketConnectionError as exc:  # retriable, typed
                errors_seen.append(type(exc))
                record.amount -= 100
        if len(errors_seen) == failures_before:
            resumed_after = resumed_after or time.monotonic() - started
            rounds += 1
        else:
            time.sleep(0.2)
    assert resumed_after is not None, f"writes did not resume: {errors_seen[-3:]}"
    assert errors_seen, "the killed primary's shards should have failed for a while"
    assert set(errors_seen) <= {errors.RepocketConnectionError, errors.RepocketTimeoutError,
                                errors.ServerBusy}
    for record in records:  # every record whole: its last acknowledged write, or a later one
        found = Ledger.objects.get(id=record.pk)
        assert found is not None and found.amount >= written.get(str(record.pk), 0)
        assert found.note.startswith("v") and found.code == record.code
    assert Ledger.objects.filter(amount__gte=0).count() == 60
    for i in range(60):
        assert Ledger.objects.filter(code=f"c{i}").count() == 1
    with pytest.raises(errors.UniqueViolation):
        Ledger.create(code="c7", amount=0, note="dup")
    report = Ledger.objects.check()
    assert report.ok, report.problems
