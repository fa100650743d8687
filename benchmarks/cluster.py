"""The Redis Cluster section: ``python -m benchmarks.cluster`` (or ``python -m benchmarks
--cluster``) starts a throwaway standalone server and a throwaway local cluster (or uses
``--url``/``--cluster-url``) and measures, in one run:

1. per operation, ops/s and round trips per operation on one server and on the cluster
   (16 shards per model): single-record operations should cost the same one round trip;
2. query cost as the shard count grows (1, 4, 16, 64 shards): ops/s and round trips of a
   count and of an ordered slice;
3. write throughput of N client processes against a cluster of 1 primary and of 3
   primaries (the machine's core count is printed next to it).

Round trips come from repocket's own instrumentation hook (``configure.instrument``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from repocket import ActiveRecord, attributes, configure
from repocket.tools.server import LocalCluster, RedisServer

SHARD_COUNTS = (1, 4, 16, 64)
PROCESSES = 4  # writer processes of the throughput part
SECONDS = 3.0  # how long they write, against each cluster
# For the run's announced duration, on the busy 2-core machine: starting a throwaway
# server and local cluster, seeding the models; ms per n of the operations and queries;
# each throughput cluster's start and the writer processes' spawn.
START_SECONDS = 6.0
MS_PER_N = 40.0
THROUGHPUT_START_SECONDS = 5.0
OPERATIONS = ("create", "get", "save", "count", "order_by[:10]", "delete")


def _model(shards: int) -> type[ActiveRecord]:
    """A benchmark model split into ``shards`` shards on a cluster."""
    meta = type("Meta", (), {"namespace": "benchmarks.cluster", "shards": shards})
    return type(f"Reading{shards}", (ActiveRecord,), {
        "__module__": __name__, "Meta": meta,
        "sensor": attributes.Unicode(index=True),
        "value": attributes.Integer(index=True),
        "note": attributes.Unicode()})


MODELS = {shards: _model(shards) for shards in SHARD_COUNTS}


class Meter:
    """Round trips of the repocket calls made while it listens."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.calls = 0

    def __call__(self, report: Any) -> None:
        self.round_trips += report.round_trips
        self.calls += 1


def _timed(action: Callable[[int], Any], n: int) -> tuple[float, float]:
    """(ops/s, round trips per op) of ``action(i)`` for i in range(n)."""
    meter = Meter()
    configure.instrument(meter)
    started = time.perf_counter()
    for i in range(n):
        action(i)
    elapsed = time.perf_counter() - started
    configure.instrument(None)
    return n / elapsed, meter.round_trips / n


def operations(model: type[ActiveRecord], n: int) -> dict[str, tuple[float, float]]:
    """ops/s and round trips per op of each operation, on the configured connection."""
    model.objects.bulk_create([model(sensor=f"s{i % 10}", value=i, note="seed")
                               for i in range(200)])  # the queries have something to find
    made: list[Any] = []
    results = {"create": _timed(lambda i: made.append(model.create(
        sensor=f"s{i % 10}", value=i, note="x")), n)}
    results["get"] = _timed(lambda i: model.objects.get(id=made[i].pk), n)

    def save(i: int) -> None:
        made[i].note = f"y{i}"
        made[i].save()

    results["save"] = _timed(save, n)
    results["count"] = _timed(lambda i: model.objects.filter(sensor=f"s{i % 10}").count(), n)
    results["order_by[:10]"] = _timed(
        lambda i: list(model.objects.order_by("-value")[:10]), n)
    results["delete"] = _timed(lambda i: made[i].delete(), n)
    return results


def shard_scaling(n: int) -> dict[int, dict[str, tuple[float, float]]]:
    """Query ops/s and round trips as the shard count grows (configured: a cluster)."""
    found = {}
    for shards, model in MODELS.items():
        model.objects.bulk_create([model(sensor=f"s{i % 10}", value=i, note="q")
                                   for i in range(400)])
        found[shards] = {
            "count": _timed(lambda i, m=model: m.objects.filter(sensor=f"s{i % 10}").count(),
                            n),
            "order_by[:10]": _timed(lambda i, m=model: list(m.objects.order_by("-value")[:10]),
                                    n)}
    return found


def _writer(url: str, seconds: float, seed: int, done: Any) -> None:
    configure.connection_pool(url=url, cluster=True)
    model = MODELS[16]
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        model.create(sensor=f"w{seed}", value=count, note="w")
        count += 1
    done.put(count)


def write_throughput(url: str, processes: int, seconds: float) -> float:
    """Creates per second of ``processes`` client processes writing for ``seconds``."""
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    workers = [context.Process(target=_writer, args=(url, seconds, seed, done))
               for seed in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(done.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


@contextmanager
def _servers(url: str | None, cluster_url: str | None) -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        if url is None:
            url = stack.enter_context(RedisServer()).url
        if cluster_url is None:
            cluster_url = stack.enter_context(LocalCluster(masters=3, replicas=0)).url
        yield url, cluster_url


def _flush_cluster(cluster_url: str) -> None:
    configure.connection_pool(url=cluster_url, cluster=True)
    client = configure.get_connection()
    for node in client.get_primaries():  # type: ignore[attr-defined]
        client.get_redis_connection(node).flushall()  # type: ignore[attr-defined]


def estimate(n: int, processes: int = PROCESSES, seconds: float = SECONDS) -> float:
    """Rough seconds the section takes (said before a run starts)."""
    throughput = 2 * (THROUGHPUT_START_SECONDS + seconds) if processes > 0 else 0.0
    return START_SECONDS + MS_PER_N * n / 1000 + throughput


def run(n: int = 200, url: str | None = None, cluster_url: str | None = None,
        processes: int = PROCESSES, seconds: float = SECONDS,
        out: Callable[[str], None] = print) -> dict[str, Any]:
    """Every part of the section; prints its tables through ``out`` and returns the
    figures. ``processes=0`` skips the write-throughput part."""
    results: dict[str, Any] = {"cores": os.cpu_count()}
    with _servers(url, cluster_url) as (standalone, cluster):
        configure.connection_pool(url=standalone)
        configure.get_connection().flushdb()
        alone = operations(MODELS[16], n)
        _flush_cluster(cluster)
        sharded = operations(MODELS[16], n)
        results["operations"] = {"standalone": alone, "cluster": sharded}
        out(f"\n## Redis Cluster: one server against a 3-primary cluster (16 shards), n={n}")
        out("| operation | one server ops/s | round trips | cluster ops/s | round trips |")
        out("|---|---|---|---|---|")
        for name in OPERATIONS:
            (a_ops, a_rt), (c_ops, c_rt) = alone[name], sharded[name]
            out(f"| {name} | {a_ops:,.0f} | {a_rt:.1f} | {c_ops:,.0f} | {c_rt:.1f} |")
        _flush_cluster(cluster)
        scaling = shard_scaling(max(n // 4, 10))
        results["shards"] = scaling
        out("\n| shards | count ops/s | round trips | order_by[:10] ops/s | round trips |")
        out("|---|---|---|---|---|")
        for shards, row in scaling.items():
            (c_ops, c_rt), (o_ops, o_rt) = row["count"], row["order_by[:10]"]
            out(f"| {shards} | {c_ops:,.0f} | {c_rt:.1f} | {o_ops:,.0f} | {o_rt:.1f} |")
        configure.reset()
        if processes > 0:
            results["writers"] = _throughput(processes, seconds, out)
    return results


def _throughput(processes: int, seconds: float, out: Callable[[str], None]) -> dict[int, float]:
    found = {}
    for masters in (1, 3):
        with LocalCluster(masters=masters, replicas=0) as cluster:
            found[masters] = write_throughput(cluster.url, processes, seconds)
    out(f"\n{processes} writer processes, creates/s ({os.cpu_count()} cores): "
        f"1 primary {found[1]:,.0f}, 3 primaries {found[3]:,.0f}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    p.add_argument("--url", help="a standalone server to use (and flush)")
    p.add_argument("--cluster-url", help="a cluster node to use (every primary is flushed)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--processes", type=int, default=PROCESSES,
                   help="writer processes (0: skip)")
    p.add_argument("--seconds", type=float, default=SECONDS)
    args = p.parse_args(argv)
    run(args.n, args.url, args.cluster_url, args.processes, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
