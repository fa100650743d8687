"""Contention: writer processes on the same few records, the atomic way and the peers' way.

Issue 12's question: what happens when 8 processes write the same records at once?

Increments (each writer adds 1, ``k`` times, to the same few counters, taking them in
turn; the counters' ``n`` has a sorted index that must stay in step):

* ``repocket F increment``: ``Counter.objects.filter(id=...).update(n=F("n") + 1)``, one
  script per increment;
* ``raw-evalsha increment``: the hand-written script of the benchmark's
  ``update (F increment)`` row (``lua/update_f.lua``: HINCRBY + ZADD);
* ``WATCH/MULTI retry loop``: the read-modify-write a walrus or rom user writes, with raw
  redis-py (the peer libraries themselves are not used): WATCH the hash, HGET, then
  MULTI HSET + ZADD EXEC, again from the WATCH whenever another writer got in between;
* ``naive read-modify-write``: the same without WATCH: the updates it loses are the reason
  for all of the above.

Creations (each writer asks for the same ``values`` unique names, in the same order, so
that all of them race on each name at once):

* ``repocket get_or_create``: ``Counter.objects.get_or_create(name=..., defaults=...)``;
* ``check-then-create``: HGET the name's claim, create when absent, as a model without a
  unique constraint (walrus) must.

Reported per contender: ops/s (all writers' operations over the wall time from the common
start to the last writer's end, median of the repeats), retries, lost updates (expected
total minus the counters' final sum) and index mismatches, or creations per value
(exactly 1 is right), the records stored and whether every writer got the same record.
The writers are processes (``multiprocessing``, spawned once and reused), started
together by a barrier; the machine's core count is printed with the figures: with more
writers than cores, throughput measures the machine as much as the library.

    python -m benchmarks.contention [--url URL] [--n 150] [--writers 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import signal
import statistics
import sys
import time
import traceback
import uuid
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from . import meter

WRITERS = 8
COUNTERS = 4  # the "small set of counters" every writer increments
PREFIX = "repocket-bench:contention"
NAMESPACE = "bench_contention"
PATTERNS = (PREFIX + ":*", f"repocket:{NAMESPACE}:*")
UPDATE_SCRIPT = Path(__file__).resolve().parent / "lua" / "update_f.lua"
TIMEOUT = 300.0  # seconds a writer may take for one task before the section gives up

INCREMENTS = ("repocket F increment", "raw-evalsha increment", "WATCH/MULTI retry loop",
              "naive read-modify-write")
CREATIONS = ("repocket get_or_create", "check-then-create")
ATOMIC = {"repocket F increment", "raw-evalsha increment", "WATCH/MULTI retry loop",
          "repocket get_or_create"}


# -- the records, as repocket and as hand-written keys -------------------------------------
_MODEL: Any = None


def counter_model(url: str) -> Any:
    """The repocket model every writer and the parent use, defined once per process."""
    global _MODEL
    from repocket import ActiveRecord, attributes, configure

    if _MODEL is None:
        configure.connection_pool(url=url)
        meta = type("Meta", (), {"namespace": NAMESPACE, "codec": "compact"})
        _MODEL = type("Counter", (ActiveRecord,), {
            "__module__": __name__, "Meta": meta,
            "name": attributes.Unicode(unique=True),
            "n": attributes.Integer(index=True)})
    return _MODEL


@dataclass(frozen=True)
class RawKeys:
    """The hand-written layout: ``Counter:<id>`` hashes (name, n), the ``n`` sorted index,
    the id set and the unique ``name`` claims, under one prefix per contender."""

    prefix: str

    def hash(self, id_: str) -> str:
        return f"{self.prefix}:Counter:{id_}"

    @property
    def index(self) -> str:
        return f"{self.prefix}:Counter:z:n"

    @property
    def ids(self) -> str:
        return f"{self.prefix}:Counter:ids"

    @property
    def claims(self) -> str:
        return f"{self.prefix}:Counter:u:name"


def raw_keys(contender: str) -> RawKeys:
    slug = contender.split()[0].lower().replace("/", "-")
    return RawKeys(f"{PREFIX}:{slug}")


def raw_counters(client: redis.Redis, keys: RawKeys, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with client.pipeline(transaction=True) as pipe:
        for i, id_ in enumerate(ids):
            pipe.hset(keys.hash(id_), mapping={"name": f"counter-{i}", "n": 0})
            pipe.zadd(keys.index, {id_: 0})
            pipe.sadd(keys.ids, id_)
            pipe.hset(keys.claims, f"counter-{i}", id_)
        pipe.execute()
    return ids


# -- what one writer does ------------------------------------------------------------------
@dataclass
class Outcome:
    """One writer's share of a task."""

    started: float = 0.0
    ended: float = 0.0
    ops: int = 0
    retries: int = 0
    answers: list[tuple[str, str, bool]] = field(default_factory=list)  # value, id, created


def _increment_targets(ids: list[str], writer: int, k: int) -> list[str]:
    return [ids[(writer + i) % len(ids)] for i in range(k)]


def _repocket_increment(url: str, ids: list[str], writer: int, k: int, out: Outcome,
                        start: Callable[[], None]) -> None:
    from repocket import F

    model = counter_model(url)
    targets = _increment_targets(ids, writer, k)
    start()
    for id_ in targets:
        model.objects.filter(id=id_).update(n=F("n") + 1)
        out.ops += 1


def _evalsha_increment(url: str, ids: list[str], writer: int, k: int, out: Outcome,
                       start: Callable[[], None]) -> None:
    client, keys = redis.Redis.from_url(url), raw_keys("raw-evalsha increment")
    sha = client.script_load(UPDATE_SCRIPT.read_text())
    targets = _increment_targets(ids, writer, k)
    start()
    for id_ in targets:
        client.evalsha(sha, 2, keys.hash(id_), keys.index, id_, "n", 1)
        out.ops += 1
    client.close()


def _watch_increment(url: str, ids: list[str], writer: int, k: int, out: Outcome,
                     start: Callable[[], None]) -> None:
    client, keys = redis.Redis.from_url(url), raw_keys("WATCH/MULTI retry loop")
    targets = _increment_targets(ids, writer, k)
    client.ping()
    start()
    for id_ in targets:
        key = keys.hash(id_)
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    value = int(pipe.hget(key, "n")) + 1
                    pipe.multi()
                    pipe.hset(key, "n", value)
                    pipe.zadd(keys.index, {id_: value})
                    pipe.execute()
                    break
                except redis.WatchError:  # another writer changed it: read again
                    out.retries += 1
        out.ops += 1
    client.close()


def _naive_increment(url: str, ids: list[str], writer: int, k: int, out: Outcome,
                     start: Callable[[], None]) -> None:
    client, keys = redis.Redis.from_url(url), raw_keys("naive read-modify-write")
    targets = _increment_targets(ids, writer, k)
    client.ping()
    start()
    for id_ in targets:
        key = keys.hash(id_)
        value = int(client.hget(key, "n")) + 1  # type: ignore[arg-type]
        with client.pipeline(transaction=True) as pipe:
            pipe.hset(key, "n", value)
            pipe.zadd(keys.index, {id_: value})
            pipe.execute()
        out.ops += 1
    client.close()


def _repocket_get_or_create(url: str, values: list[str], out: Outcome,
                            start: Callable[[], None]) -> None:
    model = counter_model(url)
    start()
    for value in values:
        record, created = model.objects.get_or_create(name=value, defaults={"n": 0})
        out.answers.append((value, str(record.pk), bool(created)))
        out.ops += 1


def _check_then_create(url: str, values: list[str], out: Outcome,
                       start: Callable[[], None]) -> None:
    client, keys = redis.Redis.from_url(url), raw_keys("check-then-create")
    client.ping()
    start()
    for value in values:
        owner = client.hget(keys.claims, value)
        created = owner is None
        if created:  # another writer may be between the same HGET and this write
            id_ = str(uuid.uuid4())
            with client.pipeline(transaction=True) as pipe:
                pipe.hset(keys.hash(id_), mapping={"name": value, "n": 0})
                pipe.sadd(keys.ids, id_)
                pipe.hset(keys.claims, value, id_)
                pipe.execute()
        else:
            id_ = owner.decode()  # type: ignore[union-attr]
        out.answers.append((value, id_, created))
        out.ops += 1
    client.close()


def run_task(url: str, writer: int, task: tuple[str, dict[str, Any]],
             start: Callable[[], None]) -> Outcome:
    """One writer's part of a task; ``start`` returns once every writer is ready."""
    contender, params = task
    out = Outcome()

    def started() -> None:
        start()
        out.started = time.monotonic()

    if contender in INCREMENTS:
        work = {"repocket F increment": _repocket_increment,
                "raw-evalsha increment": _evalsha_increment,
                "WATCH/MULTI retry loop": _watch_increment,
                "naive read-modify-write": _naive_increment}[contender]
        work(url, params["ids"], writer, params["k"], out, started)
    elif contender == "repocket get_or_create":
        _repocket_get_or_create(url, params["values"], out, started)
    else:
        _check_then_create(url, params["values"], out, started)
    out.ended = time.monotonic()
    return out


def _writer(url: str, writer: int, tasks: Any, results: Any, barrier: Any) -> None:
    """A writer process: runs each task it is given between the common barrier and its
    result, until it gets None. Ctrl-C is the parent's to handle: it stops the writers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (task := tasks.get()) is not None:
        try:
            outcome: Outcome | str = run_task(url, writer, task,
                                              lambda: barrier.wait(timeout=TIMEOUT))
        except Exception:
            barrier.abort()  # the others stop waiting for this one
            outcome = traceback.format_exc()
        results.put((writer, outcome))


# -- the parent ----------------------------------------------------------------------------
class Writers:
    """``count`` writer processes, spawned once, each given every task."""

    def __init__(self, url: str, count: int) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited sockets or threads
        self.barrier = context.Barrier(count)
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(count)]
        self.processes = [context.Process(target=_writer, daemon=True,
                                          args=(url, i, self.tasks[i], self.results,
                                                self.barrier))
                          for i in range(count)]
        for process in self.processes:
            process.start()

    def run(self, task: tuple[str, dict[str, Any]]) -> list[Outcome]:
        for tasks in self.tasks:
            tasks.put(task)
        outcomes: list[Outcome | str | None] = [None] * len(self.tasks)
        try:
            for _ in self.tasks:
                writer, outcome = self.results.get(timeout=2 * TIMEOUT)
                outcomes[writer] = outcome
        except queue.Empty as exc:
            raise RuntimeError(f"{task[0]}: a writer did not answer") from exc
        failures = [o for o in outcomes if isinstance(o, str)]
        if failures:
            self.barrier.reset()
            raise RuntimeError(f"{task[0]}: a writer failed:\n{failures[0]}")
        return [o for o in outcomes if isinstance(o, Outcome)]

    def close(self) -> None:
        """Stop every writer (within seconds, even one in the middle of a task): nothing
        writes once this returns, so the keys can be removed."""
        for tasks in self.tasks:
            tasks.put(None)
        deadline = time.monotonic() + 5
        for process in self.processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join()


@dataclass
class Trials:
    """One contender's repeats."""

    name: str
    rates: list[float] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    mismatches: list[int] = field(default_factory=list)
    creations: list[int] = field(default_factory=list)  # per value, every repeat
    stored: list[int] = field(default_factory=list)
    disagreements: int = 0  # values for which the writers got different records


def _rate(outcomes: list[Outcome]) -> float:
    wall = max(o.ended for o in outcomes) - min(o.started for o in outcomes)
    return sum(o.ops for o in outcomes) / wall if wall > 0 else 0.0


class Section:
    def __init__(self, url: str, writers: int, k: int, values: int) -> None:
        self.url, self.k, self.values = url, k, values
        self.client = redis.Redis.from_url(url)
        self.writers = Writers(url, writers)

    def close(self) -> None:
        self.writers.close()
        meter.delete_keys(self.client, PATTERNS)
        self.client.close()

    def increments(self, contender: str, trials: Trials) -> None:
        meter.delete_keys(self.client, PATTERNS)
        if contender.startswith("repocket"):
            model = counter_model(self.url)
            ids = [str(model.create(name=f"counter-{i}", n=0).pk) for i in range(COUNTERS)]
        else:
            ids = raw_counters(self.client, raw_keys(contender), COUNTERS)
        outcomes = self.writers.run((contender, {"ids": ids, "k": self.k}))
        final, mismatches = self._final(contender, ids)
        trials.rates.append(_rate(outcomes))
        trials.retries.append(sum(o.retries for o in outcomes))
        trials.lost.append(len(outcomes) * self.k - sum(final))
        trials.mismatches.append(mismatches)

    def _final(self, contender: str, ids: list[str]) -> tuple[list[int], int]:
        """Each counter's final value, and how many the ``n`` index disagrees with."""
        if contender.startswith("repocket"):
            model = counter_model(self.url)
            records = [model.objects.get(id=id_) for id_ in ids]
            finals = [int(r.n) for r in records]
            indexed = sum(1 for r in records
                          if r.pk not in {o.pk for o in model.objects.filter(n=r.n)})
            return finals, indexed
        keys = raw_keys(contender)
        finals = [int(self.client.hget(keys.hash(id_), "n")) for id_ in ids]  # type: ignore[arg-type]
        scores = [self.client.zscore(keys.index, id_) for id_ in ids]
        return finals, sum(1 for v, s in zip(finals, scores, strict=True) if s != v)

    def creations(self, contender: str, trials: Trials) -> None:
        meter.delete_keys(self.client, PATTERNS)
        values = [f"value-{i}" for i in range(self.values)]
        outcomes = self.writers.run((contender, {"values": values}))
        created: Tally[str] = Tally()
        ids: dict[str, set[str]] = {v: set() for v in values}
        for o in outcomes:
            for value, id_, was_created in o.answers:
                created[value] += was_created
                ids[value].add(id_)
        trials.rates.append(_rate(outcomes))
        trials.creations += [created[v] for v in values]
        trials.disagreements += sum(1 for v in values if len(ids[v]) != 1)
        if contender.startswith("repocket"):
            trials.stored.append(counter_model(self.url).objects.count())
        else:
            trials.stored.append(int(self.client.scard(raw_keys(contender).ids)))


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cores() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cores": os.cpu_count(), "usable": usable}


def run(url: str, n: int, writers: int = WRITERS, repeat: int = 3) -> dict[str, Any]:
    """The section's result: every contender, a warm-up and ``repeat`` timed repeats,
    contenders taking turns within each repeat."""
    k, values = max(1, n), max(1, n)
    contenders = [*INCREMENTS, *CREATIONS]
    load_before = _load()
    section = Section(url, writers, k, values)
    trials = {c: Trials(c) for c in contenders}
    try:
        for rep in range(repeat + 1):
            order = contenders[rep % len(contenders):] + contenders[:rep % len(contenders)]
            for contender in order:
                measured = trials[contender] if rep else Trials(contender)  # 0: warm-up
                if contender in INCREMENTS:
                    section.increments(contender, measured)
                else:
                    section.creations(contender, measured)
    finally:
        section.close()
    rows = [_row(trials[c], writers) for c in contenders]
    return {"writers": writers, "counters": COUNTERS, "k": k, "values": values,
            "repeat": repeat, **cores(), "load": [load_before, _load()], "rows": rows}


def _row(t: Trials, writers: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": t.name, "kind": "increment" if t.name in INCREMENTS else "create",
        "atomic": t.name in ATOMIC,
        "ops_per_s": statistics.median(t.rates), "min": min(t.rates), "max": max(t.rates)}
    if t.name in INCREMENTS:
        row.update(retries=statistics.median(t.retries), lost_updates=max(t.lost),
                   lost_per_repeat=t.lost, index_mismatches=max(t.mismatches))
    else:
        row.update(creations_min=min(t.creations), creations_max=max(t.creations),
                   stored_max=max(t.stored), disagreements=t.disagreements)
    return row


# -- rendering -----------------------------------------------------------------------------
def _cores_line(result: dict[str, Any]) -> str:
    usable = result.get("usable")
    cores_ = f"{result['cores']} cores" + (
        f" ({usable} usable)" if usable and usable != result["cores"] else "")
    before, after = result["load"]
    return (f"{result['writers']} writer processes on this machine's {cores_}; load average "
            f"{before:.1f} at the start, {after:.1f} at the end; median of {result['repeat']} "
            "repeats (ops/s of all writers together)")


def text(result: dict[str, Any]) -> str:
    k, w = result["k"], result["writers"]
    lines = [f"Contention: {_cores_line(result)}",
             f"Increments: {w} writers x {k} on the same {result['counters']} counters "
             f"(expected total {w * k:,} per repeat)",
             f"  {'contender':<26}{'ops/s (min-max)':<24}{'retries':>9}{'lost updates':>14}"
             f"{'index mismatches':>18}"]
    for r in result["rows"]:
        if r["kind"] != "increment":
            continue
        rate = f"{r['ops_per_s']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f})"
        lines.append(f"  {r['name']:<26}{rate:<24}{r['retries']:>9,.0f}"
                     f"{r['lost_updates']:>14,}{r['index_mismatches']:>18,}")
    lines += [f"Creations: {w} writers x get_or_create of the same {result['values']} unique "
              "values, in the same order (1 creation per value is right)",
              f"  {'contender':<26}{'ops/s (min-max)':<24}{'creations/value':>16}"
              f"{'records stored':>16}{'writers disagree':>18}"]
    for r in result["rows"]:
        if r["kind"] != "create":
            continue
        rate = f"{r['ops_per_s']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f})"
        span = (f"{r['creations_min']}" if r["creations_min"] == r["creations_max"]
                else f"{r['creations_min']}-{r['creations_max']}")
        lines.append(f"  {r['name']:<26}{rate:<24}{span:>16}{r['stored_max']:>16,}"
                     f"{r['disagreements']:>18,}")
    lines.append("(lost updates: the expected total minus the counters' final sum, worst "
                 "repeat; records stored: worst repeat; writers disagree: values for which "
                 "writers got different records, all repeats)")
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> str:
    """One line for the run's summary: what went wrong under contention, and what did not."""
    rows = {r["name"]: r for r in result["rows"]}
    parts = []
    for name, row in rows.items():
        if row["kind"] == "increment":
            retries = f", {row['retries']:,.0f} retries" if row["retries"] else ""
            parts.append(f"{name} {row['lost_updates']:,} lost{retries}")
        else:
            span = (f"{row['creations_min']}" if row["creations_min"] == row["creations_max"]
                    else f"{row['creations_min']}-{row['creations_max']}")
            parts.append(f"{name} {span} creations per value")
    return (f"Contention ({result['writers']} writer processes, {result['cores']} cores; "
            "updates lost, worst repeat): " + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contention")
    p.add_argument("--url")
    p.add_argument("--n", type=int, default=150,
                   help="increments per writer, and values each writer asks for")
    p.add_argument("--writers", type=int, default=WRITERS)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    from repocket.tools.server import given_or_throwaway

    with given_or_throwaway(args.url, lambda line: print(line, file=sys.stderr)) as url:
        print(text(run(url, args.n, args.writers, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
