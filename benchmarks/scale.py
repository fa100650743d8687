"""Query cost against model size: O(result), not O(records).

For 10k, 100k and 1M records (``--sizes``) of one model, runs an indexed
equality filter and an indexed range + order_by + slice that each return 10
rows, a range returning 100 rows, a count, and a filter on a non-indexed field
(a paged scan), and reports per query: the server-side usec per script call
(``INFO commandstats``), the slowest single call (``SLOWLOG``), round trips,
and rows/s next to a hand-written EVALSHA filter over the same index.

    python -m benchmarks.scale [--url URL] [--sizes 10000 100000 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from repocket import ActiveRecord, attributes, configure
from repocket.tools.server import given_or_throwaway


class Event(ActiveRecord):
    class Meta:
        namespace = "bench-scale"
        codec = "compact"

    kind = attributes.Unicode(index=True)
    seq = attributes.Integer(index=True)
    payload = attributes.Unicode()
    note = attributes.Unicode()


# A skilled user's filter: one EVALSHA reading an index they maintain themselves.
HAND_WRITTEN_FILTER = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
local rows = {}
for i, id in ipairs(ids) do rows[i] = redis.call('HGETALL', ARGV[3] .. ':' .. id) end
return rows
"""


def populate(target: int, batch: int = 1000) -> None:
    have = Event.objects.count()
    groups = max(1, target // 10)
    while have < target:
        size = min(batch, target - have)
        Event.objects.bulk_create(
            [Event(kind=f"k{(have + i) % groups}", seq=have + i, payload="x" * 40,
                   note=f"n{(have + i) % 1000}") for i in range(size)], batch_size=batch)
        have += size
        print(f"\r  populated {have}/{target}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def server_usec(client: redis.Redis, run: Callable[[], Any], times: int) -> dict[str, float]:
    """Median client latency, server usec per script call and the slowest call."""
    client.config_resetstat()
    client.slowlog_reset()
    latencies = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        latencies.append(time.perf_counter() - start)
    stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    slowest = max((entry["duration"] for entry in client.slowlog_get(1024)
                   if entry["command"].startswith(b"EVALSHA")), default=0)
    calls = max(1, stats["calls"])
    return {"client_ms": statistics.median(latencies) * 1000,
            "server_usec_per_call": stats["usec"] / calls,
            "calls_per_query": calls / times, "slowest_call_ms": slowest / 1000}


def measure(client: redis.Redis, size: int, queries: int) -> dict[str, Any]:
    groups = max(1, size // 10)
    hand_sha = client.script_load(HAND_WRITTEN_FILTER)
    cases: dict[str, Callable[[int], Any]] = {
        "eq (10 rows)": lambda i: list(Event.objects.filter(kind=f"k{i % groups}")),
        "range+order+slice (10 rows)":
            lambda i: list(Event.objects.filter(seq__gte=(i * 7919) % size)
                           .order_by("-seq")[:10]),
        "range (100 rows)":
            lambda i: list(Event.objects.filter(seq__range=((i * 7919) % size,
                                                            (i * 7919) % size + 99))),
        "count (range of 1000)":
            lambda i: Event.objects.filter(seq__range=(i % size, i % size + 999)).count(),
        "hand-written EVALSHA range (100 rows)":
            lambda i: client.evalsha(hand_sha, 1, f"{Event._meta.prefix}:idx:seq",
                                     (i * 7919) % size, (i * 7919) % size + 99,
                                     Event._meta.prefix),
    }
    result: dict[str, Any] = {"records": size}
    for name, query in cases.items():
        counter = iter(range(10**9))
        result[name] = server_usec(client, lambda q=query, c=counter: q(next(c)), queries)
        if "100 rows" in name:
            result[name]["rows_per_s"] = 100 / (result[name]["client_ms"] / 1000)
    scan_times = max(3, queries // 50)
    result["non-indexed scan (paged)"] = server_usec(
        client, lambda: list(Event.objects.filter(note="n7")[:10]), scan_times)
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    names = [k for k in results[0] if k != "records"]
    header = f"{'query':<40}" + "".join(f"{r['records']:>22,}" for r in results)
    print(header)
    print(f"{'':<40}" + "".join(f"{'server us/call (max ms)':>22}" for _ in results))
    for name in names:
        cells = "".join(f"{r[name]['server_usec_per_call']:>14.0f} "
                        f"({r[name]['slowest_call_ms']:>4.1f})" for r in results)
        print(f"{name:<40}{cells}")
    for name in names:
        if "rows_per_s" in results[0][name]:
            print(f"rows/s {name:<33}" + "".join(f"{r[name]['rows_per_s']:>22,.0f}"
                                                 for r in results))


def run(url: str, sizes: list[int], queries: int, json_path: str | None) -> None:
    client = configure.connection_pool(url=url)
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 1024)
    results = []
    for size in sorted(sizes):
        populate(size)
        results.append(measure(client, size, queries))
        print(f"  measured {size} records", file=sys.stderr)
    print_table(results)
    if json_path:
        with open(json_path, "w") as out:
            json.dump(results, out, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty Redis to fill (default: start a throwaway one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.url and redis.Redis.from_url(args.url).dbsize():
        sys.exit(f"{args.url} is not empty: this benchmark fills and keeps a model's data")
    with given_or_throwaway(args.url) as url:
        run(url, args.sizes, args.queries, args.json)


if __name__ == "__main__":
    main()
