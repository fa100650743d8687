"""Stress: the longest single script call per operation, on adversarial shapes.

Redis runs one script at a time: while a call runs, every other client waits (and
past ``lua-time-limit`` gets ``BUSY``). repocket's promise is that no call runs
longer than about 50 ms for any input a caller can pass with default settings.
This fills a throwaway server with 10k and 100k records (1M with ``--huge``) of a
model shaped to hurt — few distinct values, one value shared by every record
(exact Integer scores and inexact Decimal ones), a unique field, a plain field —
plus a wide Pointer tree, and runs per size the operations known to have
blocked: huge ``__in`` lists, ordering over tie runs, the iterator, big batches,
deep gets. Per operation it reports the longest single script call (``SLOWLOG``,
which records every call over 1 ms; the median too when every call took over 1 ms),
how many script calls it took (``INFO commandstats``) and the operation's client time.

    python -m benchmarks.stress [--url URL] [--sizes 10000 100000] [--huge] [--json PATH]
"""

from __future__ import annotations

import argparse
import decimal
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from repocket import ActiveRecord, attributes, configure
from repocket.tools.server import given_or_throwaway

SLOW_US = 1000  # SLOWLOG threshold: script calls above 1 ms are logged
LIMIT_MS = 50.0


class Stressed(ActiveRecord):
    class Meta:
        namespace = "bench-stress"
        codec = "compact"

    code = attributes.Unicode(unique=True)
    status = attributes.Integer(index=True)  # 5 distinct values
    same = attributes.Integer(index=True)  # one value for every record
    amount = attributes.Decimal(index=True)  # one Decimal: scores are never exact
    label = attributes.Unicode()  # not indexed: a scan
    payload = attributes.Unicode()


class Leaf(ActiveRecord):
    """A node of a binary tree of Pointers, for deep gets."""

    class Meta:
        namespace = "bench-stress"
        codec = "compact"

    n = attributes.Integer()
    left = attributes.Pointer("self", null=True)
    right = attributes.Pointer("self", null=True)


def populate(target: int, batch: int = 2000) -> None:
    have = Stressed.objects.count()
    while have < target:
        size = min(batch, target - have)
        Stressed.objects.bulk_create(
            [Stressed(code=f"c{have + i}", status=(have + i) % 5, same=1,
                      amount=decimal.Decimal("0.1"), label=f"l{have + i}", payload="x" * 40)
             for i in range(size)], batch_size=batch)
        have += size
        print(f"\r  populated {have}/{target}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def grow_tree(leaves: int) -> Leaf:
    """A complete binary tree of about ``leaves`` nodes, built bottom up; its root."""
    level = Leaf.objects.bulk_create([Leaf(n=i) for i in range(leaves)], batch_size=2000)
    n = leaves
    while len(level) > 1:
        pairs = [level[i:i + 2] for i in range(0, len(level), 2)]
        level = Leaf.objects.bulk_create(
            [Leaf(n=n + i, left=pair[0], right=pair[1] if len(pair) > 1 else None)
             for i, pair in enumerate(pairs)], batch_size=2000)
        n += len(pairs)
    return level[0]


def script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "eval", "evalsha_ro", "eval_ro"))


def wait_until_idle(client: redis.Redis) -> None:
    """Until the server answers again (a script still running answers BUSY)."""
    while True:
        try:
            client.ping()
            return
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSY"):
                raise
            time.sleep(0.5)


def longest_call(client: redis.Redis, run: Callable[[], Any]) -> dict[str, Any]:
    """The longest script call ``run`` made (ms; 0 when none took over 1 ms), the number of
    script calls and the client time."""
    client.slowlog_reset()
    calls = script_calls(client)
    start = time.perf_counter()
    failed = ""
    try:
        run()
    except Exception as exc:  # reported in the table: what the caller would have met
        failed = type(exc).__name__
        wait_until_idle(client)  # a client timeout leaves the script running
    elapsed = time.perf_counter() - start
    calls = script_calls(client) - calls
    logged = sorted(entry["duration"] for entry in client.slowlog_get(100_000)
                    if entry["command"].split(b" ", 1)[0].upper().startswith(b"EVAL"))
    longest = logged[-1] if logged else 0
    median = statistics.median(logged) if len(logged) == calls and logged else 0
    return {"longest_ms": longest / 1000, "median_ms": median / 1000, "calls": calls,
            "client_s": elapsed, "error": failed}


def operations(size: int, root: Leaf) -> dict[str, Callable[[], Any]]:
    some_ids = Stressed.objects.filter(status=0)[:1000].ids()
    given = some_ids + [uuid.uuid1() for _ in range(2000 - len(some_ids))]
    codes = [f"c{i * 7 % size}" for i in range(1500)] + [f"x{i}" for i in range(1500)]
    labels = [f"nope{i}" for i in range(10_000)]
    objects = Stressed.objects

    def batch() -> None:
        made = objects.bulk_create([Stressed(code=f"b{i}", status=9, same=2, amount=1,
                                             label="b", payload="b")
                                    for i in range(50_000)], batch_size=50_000)
        assert len(made) == 50_000

    return {
        "filter(id__in=2,000 ids)": lambda: len(objects.filter(id__in=given)),
        "filter(unique__in=3,000)": lambda: len(objects.filter(code__in=codes)),
        "plain __in 10,000 values, count": lambda: objects.filter(label__in=labels).count(),
        "order_by(5 values)[:10]": lambda: list(objects.order_by("status")[:10]),
        "order_by(5 values)[mid:+10]": lambda: objects.order_by("-status")[
            size // 2:size // 2 + 10].ids(),
        "order_by(all equal Integer)[:10]": lambda: list(objects.order_by("same")[:10]),
        "order_by(all equal Decimal)[:10]": lambda: list(objects.order_by("amount")[:10]),
        "iterator(), first 2,000": lambda: sum(
            1 for _ in itertools.islice(objects.filter(status=1).iterator(), 2000)),
        "count()": objects.count,
        "filter(status=3).count()": lambda: objects.filter(status=3).count(),
        "exists() (plain field)": lambda: objects.filter(label="l7").exists(),
        "bulk_create(50,000, batch_size=50,000)": batch,
        "queryset delete of 50,000": lambda: objects.filter(status=9).delete(),
        "get(pointer_depth=16), wide tree": lambda: Leaf.objects.get(id=root.id,
                                                                     pointer_depth=16),
    }


def measure(client: redis.Redis, size: int, only: list[str] | None) -> dict[str, Any]:
    root = grow_tree(min(size, 32_768))
    result: dict[str, Any] = {"records": size}
    for name, run in operations(size, root).items():
        if only and not any(part in name for part in only):
            continue
        result[name] = longest_call(client, run)
        print(f"  {size:>9,} {name:<40} {result[name]}", file=sys.stderr)
    Leaf.objects.all().delete()
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    names = [k for k in results[0] if k != "records"]
    print("| operation | " + " | ".join(f"{r['records']:,} records" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for name in names:
        cells = []
        for r in results:
            cell = r.get(name)
            if cell is None:
                cells.append("-")
                continue
            longest = "<1" if cell["longest_ms"] == 0 else f"{cell['longest_ms']:.1f}"
            if cell["median_ms"]:
                longest += f" (median {cell['median_ms']:.1f})"
            flag = " **over 50 ms**" if cell["longest_ms"] > LIMIT_MS else ""
            failed = f" ({cell['error']})" if cell["error"] else ""
            cells.append(f"{longest} ms in {cell['calls']:,} calls{flag}{failed}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def run(url: str, sizes: list[int], only: list[str] | None, json_path: str | None) -> None:
    client = configure.connection_pool(url=url)
    client.config_set("slowlog-log-slower-than", SLOW_US)
    client.config_set("slowlog-max-len", 100_000)
    results = []
    load_before = os.getloadavg()[0]
    for size in sorted(sizes):
        populate(size)
        results.append(measure(client, size, only))
    print_table(results)
    load_after = os.getloadavg()[0]
    print(f"\n(machine load average {load_before:.1f} at the start, {load_after:.1f} at the end, "
          f"on {os.cpu_count()} cores: durations grow with it)")
    if json_path:
        with open(json_path, "w") as out:
            json.dump(results, out, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty Redis to fill (default: start a throwaway one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--huge", action="store_true", help="add 1,000,000 records (minutes)")
    parser.add_argument("--only", nargs="+", help="operations whose name contains one of these")
    parser.add_argument("--json")
    args = parser.parse_args()
    sizes = args.sizes + ([1_000_000] if args.huge else [])
    if args.url and redis.Redis.from_url(args.url).dbsize():
        sys.exit(f"{args.url} is not empty: this benchmark fills and keeps a model's data")
    with given_or_throwaway(args.url) as url:
        run(url, sizes, args.only, args.json)


if __name__ == "__main__":
    main()
