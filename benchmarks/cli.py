"""``python -m benchmarks``: run the suite and write the table, JSON, Markdown and chart."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from . import cluster, concurrency, contention, meter, report
from .data import BATCH, make_dataset
from .estimate import Estimate, duration
from .harness import Runner
from .systems import BASELINE_FOR, BASELINES, OPS, REGISTRY, System, load

RESULTS = Path(__file__).resolve().parent / "results"
# (records per operation, timed repeats): about two minutes on a busy 2-core machine by
# default; --full is the long run the README's figures come from
DEFAULT = (150, 3)
FULL = (1000, 5)
QUICK = (100, 2)


def _csv(choices: tuple[str, ...] | list[str]) -> Any:
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark repocket against hand-written redis-py and peer libraries.")
    p.add_argument("--url", help="an existing server (default: a throwaway redis-server on a "
                   "free loopback port); only keys under repocket:bench_* and repocket-bench:* "
                   "are written, and removed afterwards")
    p.add_argument("--force", action="store_true",
                   help="run even if the target database is not empty")
    p.add_argument("--ops", type=_csv(OPS), default=list(OPS), help=",".join(OPS))
    p.add_argument("--systems", type=_csv(list(REGISTRY)), default=list(REGISTRY),
                   help=",".join(REGISTRY) + " (the baselines are always added)")
    p.add_argument("--n", type=int, help=f"records per operation (default {DEFAULT[0]}, "
                   f"--full {FULL[0]}, --quick {QUICK[0]})")
    p.add_argument("--repeat", type=int, help=f"timed repeats (default {DEFAULT[1]}, "
                   f"--full {FULL[1]}, --quick {QUICK[1]})")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--full", action="store_true",
                        help=f"the long run the README's figures come from: n={FULL[0]}, "
                        f"{FULL[1]} repeats (over ten minutes on a busy 2-core machine)")
    length.add_argument("--quick", action="store_true",
                        help=f"a smoke run: n={QUICK[0]}, {QUICK[1]} repeats (tox -e bench)")
    p.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--markdown", type=Path, default=RESULTS / "latest.md")
    p.add_argument("--chart", type=Path, default=RESULTS / "latest.png")
    p.add_argument("--profile", action="store_true",
                   help="cProfile repocket's Python side (one extra pass per codec)")
    p.add_argument("--concurrency", type=int, default=64, metavar="WORKERS",
                   help="then create/get/filter/delete with this many asyncio tasks and "
                   "threads, repocket against hand-written redis.asyncio EVALSHA (0: skip)")
    p.add_argument("--writers", type=int, default=contention.WRITERS,
                   help="then the contention section: this many writer processes increment "
                   "the same counters and race get_or_create on the same values, repocket "
                   "against hand-written EVALSHA, a WATCH/MULTI retry loop and a naive "
                   "read-modify-write (0: skip)")
    p.add_argument("--cluster", action="store_true",
                   help="also the Redis Cluster section (benchmarks/cluster.py, alone: python "
                        "-m benchmarks.cluster): one server against a throwaway local cluster "
                        "of 3 primaries, query cost at 1/4/16/64 shards, writer processes "
                        "against 1 vs 3 primaries; a throwaway server and clusters of its own "
                        "even with --url")
    p.add_argument("--cluster-writers", type=int, default=cluster.PROCESSES, metavar="N",
                   help=f"writer processes of the cluster section's throughput part (default "
                        f"{cluster.PROCESSES}; 0: skip that part)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    n, repeat = FULL if args.full else QUICK if args.quick else DEFAULT
    args.n = args.n or n
    args.repeat = args.repeat or repeat
    return args


@contextmanager
def _target(url: str | None) -> Iterator[tuple[str, bool]]:
    if url:
        yield url, False
        return
    from repocket.tools.server import throwaway_redis

    with throwaway_redis(announce=lambda line: print(line, file=sys.stderr)) as tmp_url:
        yield tmp_url, True


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        self.done = 0
        self.total = total
        self.last = -1
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            self.bar = None

    def __call__(self, msg: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(msg.ljust(28))
            self.bar.update(1)
            return
        tenth = 10 * self.done // max(1, self.total)
        if tenth != self.last:  # without tqdm: a line every 10%
            self.last = tenth
            print(f"[{self.done}/{self.total}] {msg}", file=sys.stderr, flush=True)

    def note(self, line: str) -> None:
        """A line on stderr that does not tear the progress bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load_systems(names: list[str], url: str) -> tuple[list[System], dict[str, str]]:
    systems: list[System] = []
    skipped: dict[str, str] = {}
    for name in names:
        try:
            system = load(name)
        except ImportError as exc:
            hint = "" if name.startswith("repocket") else " (pip install '.[peers]')"
            skipped[name] = f"not installed: {exc}{hint}"
            continue
        try:
            system.setup(url)
        except Exception as exc:
            skipped[name] = f"setup failed: {type(exc).__name__}: {exc}"
            continue
        systems.append(system)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)
    return systems, skipped


def _describe_server(client: redis.Redis) -> str:
    """``Redis 7.0.15 at 10.0.0.5:6379/15``: what a --url points at (no credentials)."""
    info = client.info("server")
    product = "Valkey" if info.get("server_name") == "valkey" else "Redis"
    version = info.get("valkey_version") or info.get("redis_version")
    kw = client.connection_pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
    return f"{product} {version} at {where}/{kw.get('db', 0)}"


def _announce_plan(args: argparse.Namespace, systems: list[System],
                   estimate: Estimate) -> None:
    ops = len(args.ops)
    sections = " + the concurrency section" if args.concurrency > 0 else ""
    if args.writers > 0:
        sections += f" + the contention section ({args.writers} writer processes)"
    if args.cluster:
        sections += " + the cluster section"
    longer = "" if args.full else (
        f"; --full: about "
        f"{duration(_estimate(args, systems, *FULL).total)}")
    print(f"running {len(systems)} systems x {ops} operations, n={args.n} records, a warm-up "
          f"and {args.repeat} timed repeats{sections}: about {duration(estimate.total)} "
          f"on a busy 2-core machine{longer}", file=sys.stderr, flush=True)


def _estimate(args: argparse.Namespace, systems: list[System], n: int,
              repeat: int) -> Estimate:
    repocket = sum(s.kind == "repocket" for s in systems) if args.profile else 0
    return Estimate.of([s.name for s in systems], args.ops, n, repeat, args.concurrency > 0,
                       repocket, max(0, args.writers),
                       cluster.estimate(n, args.cluster_writers) if args.cluster else 0.0)


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in REGISTRY if n in args.systems or n in BASELINES]
    if any(BASELINE_FOR[op] not in args.systems for op in args.ops):
        print(f"(the baselines {', '.join(BASELINES)} are always run)", file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with _target(args.url) as (url, throwaway):
            return _run(args, names, url, throwaway)
    except KeyboardInterrupt:
        print("\ninterrupted: the benchmark keys were removed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, names: list[str], url: str, throwaway: bool) -> int:
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    client = redis.Redis.from_url(url)
    try:
        size = client.dbsize()
        if size and not args.force:
            print(f"refusing: the target database holds {size} keys. Point --url at an empty "
                  "database (e.g. redis://host:6379/15), or pass --force: the suite only writes "
                  "and deletes keys matching repocket:bench_* and repocket-bench:*.",
                  file=sys.stderr)
            return 2
        if not throwaway:
            print(f"using {_describe_server(client)} (--url)", file=sys.stderr)
        systems, skipped = _load_systems(names, url)
        if not any(s.name in BASELINES for s in systems):
            print("the hand-written baselines did not start", file=sys.stderr)
            return 1
        estimate = _estimate(args, systems, args.n, args.repeat)
        _announce_plan(args, systems, estimate)
        clock = time.perf_counter()
        dataset = make_dataset(args.n)
        runner = Runner(client, systems, dataset, args.ops, args.repeat, profile=args.profile)
        progress = _Progress(runner.steps, enabled=not args.no_progress)
        runner.progress = progress
        runner.after_warmup = lambda seconds: progress.note(
            f"the warm-up pass took {duration(seconds)}: about "
            f"{duration(estimate.remaining_after_warmup(seconds))} to go at this pace")
        try:
            runs = runner.run()
        finally:
            progress.close()
            for s in systems:
                s.teardown()
        info = client.info("server")
        versions: dict[str, str] = {"python": platform.python_version(),
                                    "redis-server": str(info.get("redis_version"))}
        for dist in ("redis", "hiredis"):
            if v := _version(dist):
                versions[dist if dist != "redis" else "redis-py"] = v
        for s in systems:
            versions.update(s.versions())
        meta = {
            "command": " ".join(["python -m benchmarks", *args.argv]),
            "started": started,
            "machine": _machine(), "versions": versions,
            "target": "throwaway redis-server" if throwaway else "user server (--url)",
            "n": dataset.n, "repeat": args.repeat, "batch": BATCH,
            "leftover_keys": len(meter.scan_keys(client, [p for s in systems for p in s.patterns])),
        }
        result = report.build(runs, meta, [op for op in OPS if op in args.ops], skipped)
        if args.concurrency > 0:
            result["concurrency"] = concurrency.run(url, args.n, args.concurrency, args.repeat)
        if args.writers > 0:
            result["contention"] = contention.run(url, args.n, args.writers, args.repeat)
        cluster_lines: list[str] = []
        if args.cluster:
            result["cluster"] = cluster.run(args.n, processes=args.cluster_writers,
                                            out=cluster_lines.append)
        if runner.profile_summary:
            result["profile"] = runner.profile_summary
        print(report.text(result))
        if "concurrency" in result:
            print("\n" + concurrency.text(result["concurrency"]))
        if "contention" in result:
            print("\n" + contention.text(result["contention"]))
        if cluster_lines:
            print("\n".join(cluster_lines))
        for path in (args.json, args.markdown, args.chart):
            path.parent.mkdir(parents=True, exist_ok=True)
        report.write_json(result, args.json)
        args.markdown.write_text(report.markdown(result) + "".join(
            f"\n```\n{section.text(result[name])}\n```\n"
            for name, section in (("concurrency", concurrency), ("contention", contention))
            if name in result) + "".join(f"{line}\n" for line in cluster_lines))
        why = report.chart(result, args.chart)
        print(f"\nwrote {args.json}, {args.markdown}"
              + (f" and {args.chart}" if why is None else f" ({why})"))
        for name, text in runner.profiles.items():
            path = args.json.parent / f"profile-{name}.txt"
            path.write_text(text)
            print(f"\nWhere {name}'s time goes, µs per op (cProfile; full profile in {path}):")
            print(report.profile_table(runner.profile_summary[name]))
        print("\n" + report.summary(result))
        if "contention" in result:
            print(contention.verdict(result["contention"]))
        print(f"\nfinished in {duration(time.perf_counter() - clock)} (estimated at the start: "
              f"{duration(estimate.total)})")
        return 0
    finally:
        client.close()
