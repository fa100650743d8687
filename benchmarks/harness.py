"""Run every selected operation of every system on the same data, round-robin.

Pass 0 of each system is a warm-up that also counts round trips, reads
``INFO commandstats`` deltas and ``MEMORY USAGE``; the timed passes that follow
count nothing, so instrumentation never slows what is timed. Within a repeat the
systems go in lockstep, one operation each in turn (the first system rotating
between repeats), so that drift on a shared machine hits them alike and each
ratio can be taken between runs seconds apart.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from . import meter
from .data import BATCH, RANGE_LIMIT, Dataset
from .systems import OPS, NotSupported, System

ROW_OPS = ("filter", "range")  # reported per row as well: their ratio is on rows/s


@dataclass
class Cell:
    ops: int = 0
    rows: int = 0
    seconds: list[float] = field(default_factory=list)
    round_trips: float | None = None
    server_usec: float | None = None
    na: str | None = None
    error: str | None = None
    check: str | None = None

    def rates(self, per_row: bool = False) -> list[float]:
        count = self.rows if per_row else self.ops
        return [count / s for s in self.seconds if s > 0]

    def summary(self, per_row: bool = False) -> dict[str, float] | None:
        rates = self.rates(per_row)
        if not rates:
            return None
        return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


@dataclass
class SystemRun:
    system: System
    cells: dict[str, Cell] = field(default_factory=dict)
    bytes_per_record: float | None = None
    failed: str | None = None


@contextmanager
def _shielded() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _where(filename: str, func: str) -> str:
    if "_socket.socket" in func:
        return "socket wait"
    path = filename.replace("\\", "/")
    if "/redis/" in path or "hiredis" in func:
        return "redis-py"
    if "/repocket/" in path and "/benchmarks/" not in path:
        return "repocket"
    return "other"


def checked(run: SystemRun, op: str, phase: Callable[[str, int, Callable[[], Any]], Any],
            count: Callable[[], int], expected: int, what: str) -> None:
    """Run ``op`` through ``phase``; a count other than ``expected`` is noted on its cell."""
    def fn() -> int:
        got = count()
        if got != expected:
            run.cells[op].check = f"{what} {got}, expected {expected}"
        return got
    phase(op, run.cells[op].ops, fn)


def _batches(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


class Runner:
    def __init__(self, meter_client: redis.Redis, systems: list[System], dataset: Dataset,
                 ops: Sequence[str], repeat: int,
                 progress: Callable[[str], None] = lambda _msg: None,
                 profile: bool = False) -> None:
        self.meter = meter_client
        self.runs = [SystemRun(s) for s in systems]
        self.ds = dataset
        self.ops = [op for op in OPS if op in ops]
        self.repeat = repeat
        self.progress = progress
        self.after_warmup: Callable[[float], None] = lambda _seconds: None
        self.profile = profile
        self.profiles: dict[str, str] = {}
        self.profile_summary: dict[str, dict[str, dict[str, float]]] = {}

    @property
    def steps(self) -> int:
        profiled = sum(r.system.kind == "repocket" for r in self.runs) if self.profile else 0
        return ((self.repeat + 1) * len(self.runs) + profiled) * len(self.ops)

    def cleanup(self) -> int:
        removed = 0
        for run in self.runs:
            removed += meter.delete_keys(self.meter, run.system.patterns)
        return removed

    def run(self) -> list[SystemRun]:
        self.cleanup()  # leftovers of an earlier run that was killed (only with --force)
        try:
            started = time.perf_counter()
            for rep in range(self.repeat + 1):
                if rep == 1:  # the counted warm-up pass is done: its pace predicts the rest
                    self.after_warmup(time.perf_counter() - started)
                order = self.runs[rep % len(self.runs):] + self.runs[:rep % len(self.runs)]
                passes = [self._pass(run, counted=rep == 0) for run in order
                          if run.failed is None]
                while passes:  # lockstep: every system runs an operation before the next one
                    for p in list(passes):
                        if next(p, StopIteration) is StopIteration:
                            passes.remove(p)
            if self.profile:
                for run in self.runs:
                    if run.system.kind == "repocket" and run.failed is None:
                        self._profile(run)
        finally:
            with _shielded():  # a second Ctrl-C must not leave keys behind
                self.cleanup()
        return self.runs

    # ------------------------------------------------------------------
    def _profile(self, run: SystemRun) -> None:
        """One more pass with a profiler per operation; time split by where it is spent."""
        profilers: dict[str, cProfile.Profile] = {}
        for _ in self._pass(run, counted=False, profilers=profilers):
            pass
        summary: dict[str, dict[str, float]] = {}
        text = [f"Python-side profile of {run.system.name} (cProfile, one pass, n={self.ds.n})"]
        for op, profiler in profilers.items():
            n_ops = max(1, run.cells[op].ops)
            stats = pstats.Stats(profiler, stream=io.StringIO())
            split = dict.fromkeys(("socket wait", "repocket", "redis-py", "other"), 0.0)
            for (filename, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
                split[_where(filename, func)] += row[2] * 1e6 / n_ops
            summary[op] = split
            text.append(f"\n== {op}: " + ", ".join(f"{k} {v:.1f} µs" for k, v in split.items())
                        + " per op")
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(15)
            text.append(buf.getvalue().split("\n", 4)[-1])
        self.profiles[run.system.name] = "\n".join(text)
        self.profile_summary[run.system.name] = summary

    def _pass(self, run: SystemRun, counted: bool,
              profilers: dict[str, cProfile.Profile] | None = None) -> Iterator[None]:
        """One system's pass; it pauses after each operation (see run())."""
        try:
            yield from self._phases(run, counted, profilers)
        finally:
            meter.delete_keys(self.meter, run.system.patterns)

    def _phases(self, run: SystemRun, counted: bool,
                profilers: dict[str, cProfile.Profile] | None) -> Iterator[None]:
        s, ds = run.system, self.ds
        try:
            projects = s.create_projects(ds.projects)
        except Exception as exc:
            run.failed = f"create_projects: {type(exc).__name__}: {exc}"
            return
        yield
        mem0 = meter.memory_usage(self.meter, s.patterns) if counted else 0

        def phase(op: str, n_ops: int, fn: Callable[[], Any]) -> Any:
            selected = op in self.ops
            cell = run.cells.setdefault(op, Cell())
            if not selected:  # only save: the other operations need its records
                try:
                    return fn()
                except Exception as exc:
                    cell.error = f"{type(exc).__name__}: {exc}"[:300]
                    return None
            if cell.na is not None or cell.error is not None:
                self.progress(f"{s.name} {op}")
                return None
            profiler = None if profilers is None else profilers.setdefault(op, cProfile.Profile())
            gc.collect()
            stats0 = meter.commandstats(self.meter) if counted else {}
            try:
                if counted:
                    with meter.counting() as counter:
                        t0 = time.perf_counter()
                        result = fn()
                        elapsed = time.perf_counter() - t0
                    stats1 = meter.commandstats(self.meter)
                    cell.round_trips = counter.sends / n_ops
                    cell.server_usec = meter.server_usec(stats0, stats1, counter.commands) / n_ops
                else:
                    if profiler is not None:
                        profiler.enable()
                    t0 = time.perf_counter()
                    try:
                        result = fn()
                    finally:
                        elapsed = time.perf_counter() - t0
                        if profiler is not None:
                            profiler.disable()
                    if profiler is None:
                        cell.seconds.append(elapsed)
            except NotSupported as exc:
                cell.na = str(exc) or "not supported"
                result = None
            except Exception as exc:
                cell.error = f"{type(exc).__name__}: {exc}"[:300]
                result = None
            self.progress(f"{s.name} {op}")
            return result

        def counted_rows(op: str, n_ops: int, rows_fn: Callable[[], int], expected: int) -> None:
            if op not in self.ops:
                return

            def fn() -> int:
                rows = rows_fn()
                cell = run.cells[op]
                cell.ops, cell.rows = n_ops, rows
                if rows != expected:
                    cell.check = f"returned {rows} rows, expected {expected}"
                return rows
            phase(op, n_ops, fn)

        builds = ds.builds
        run.cells.setdefault("save", Cell()).ops = len(builds)
        handles = phase("save", len(builds),
                        lambda: [s.save(r, projects[r.project]) for r in builds])
        yield
        if not handles:
            cell = run.cells["save"]
            run.failed = cell.error or cell.na or "save returned nothing"
            return
        if counted:
            run.bytes_per_record = (meter.memory_usage(self.meter, s.patterns) - mem0) / len(builds)
        n = len(handles)
        counted_rows("get", n, lambda: sum(s.get(h) is not None for h in handles), n)
        yield
        counted_rows("filter", len(ds.filters),
                     lambda: sum(len(s.filter(st)) for st in ds.filters),
                     sum(ds.expected_filter_rows(st) for st in ds.filters))
        yield
        counted_rows("range", len(ds.ranges),
                     lambda: sum(len(s.range(lo, hi, RANGE_LIMIT)) for lo, hi in ds.ranges),
                     sum(ds.expected_range_rows(lo, hi) for lo, hi in ds.ranges))
        yield
        if "append" in self.ops:
            run.cells.setdefault("append", Cell()).ops = n
            phase("append", n, lambda: [s.append(h, ds.chunk) for h in handles])
            yield
        if "update_f" in self.ops:
            run.cells.setdefault("update_f", Cell()).ops = n
            checked(run, "update_f", phase, lambda: sum(s.update_f(h) for h in handles), n,
                    "records updated")
            yield
        counted_rows("get_many", n, lambda: sum(
            sum(r is not None for r in s.get_many(b)) for b in _batches(handles, BATCH)), n)
        yield
        if "get_or_create" in self.ops:
            run.cells.setdefault("get_or_create", Cell()).ops = len(ds.claims)
            checked(run, "get_or_create", phase, lambda: sum(
                s.get_or_create(c, projects[c.project])[1] for c in ds.claims),
                ds.expected_creations, "created")
            yield
        if "delete" in self.ops:
            run.cells.setdefault("delete", Cell()).ops = n
            phase("delete", n, lambda: [s.delete(h) for h in handles])
            yield
        if "bulk_create" in self.ops:
            run.cells.setdefault("bulk_create", Cell()).ops = len(ds.bulk)
            phase("bulk_create", len(ds.bulk), lambda: [
                s.bulk_create(b, projects) for b in _batches(ds.bulk, BATCH)])
