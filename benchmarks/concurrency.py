"""Concurrency: 64 workers doing create, get, filter and delete, asyncio and threads.

* ``raw-evalsha asyncio``: hand-written ``redis.asyncio`` EVALSHA of the baseline's scripts
  (``benchmarks/lua``, the very arguments ``RawEvalsha`` sends), 64 tasks;
* ``repocket asyncio``: ``acreate``, ``aget``, ``filter(...).alist()``, ``adelete``, 64 tasks;
* ``raw-evalsha threads`` and ``repocket threads``: the sync calls, 64 threads.

Each operation's items are split across the workers, each worker doing its share one
after the other; the wall time of the whole batch gives ops/s (filter: rows/s too).
Systems take turns within each repeat; a warm-up pass (scripts loaded, connections
open), then a pass that counts EVALSHA/EVAL calls per op (``INFO commandstats``), are
not timed. ``cpu µs/op`` is this
process's CPU time per op (where the client time goes: the rest is waiting on Redis).

    python -m benchmarks.concurrency [--url URL] [--n 1000] [--workers 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import redis.asyncio

from . import meter
from .data import BuildRec, Dataset, ProjectRec, make_dataset
from .systems.raw_redispy import RawEvalsha, _full
from .systems.repocket_models import _Repocket

OPS = ("create", "get", "filter", "delete")
WORKERS = 64


class _RepocketModels(_Repocket):
    name = "repocket-concurrency"
    codec = "compact"
    namespace = "bench_concurrency"
    patterns = ("repocket:bench_concurrency:*",)


class Contender:
    """One system in one mode: four operations, sync (threads) or async (tasks)."""

    name = ""
    mode = ""  # "asyncio" or "threads"
    patterns: tuple[str, ...] = ()

    def projects(self) -> list[Any]:
        raise NotImplementedError

    def create(self, rec: BuildRec, project: Any) -> Any:
        raise NotImplementedError

    def get(self, handle: Any) -> Any:
        raise NotImplementedError

    def filter(self, status: str) -> list[Any]:
        raise NotImplementedError

    def delete(self, handle: Any) -> Any:
        raise NotImplementedError


class BaselineAsync(Contender):
    name, mode = "raw-evalsha", "asyncio"

    def __init__(self, raw: RawEvalsha, url: str):
        self.raw, self.url = raw, url
        self.patterns = raw.patterns
        self.client: Any = None

    def projects(self) -> list[Any]:
        return self.raw.create_projects([ProjectRec(f"p{i}") for i in range(10)])

    def _client(self) -> Any:
        if self.client is None:
            self.client = redis.asyncio.Redis.from_url(self.url, max_connections=WORKERS * 2)
        return self.client

    async def create(self, rec: BuildRec, project: Any) -> Any:  # type: ignore[override]
        id_, call = self.raw.save_call(rec, project)
        await self._client().evalsha(*call)
        return id_

    async def get(self, handle: Any) -> Any:  # type: ignore[override]
        res = await self._client().evalsha(*self.raw.get_call(handle))
        return _full(handle, *res) if res else None

    async def filter(self, status: str) -> list[Any]:  # type: ignore[override]
        res = await self._client().evalsha(*self.raw.filter_call(status))
        return [_full(*r) for r in res if r]

    async def delete(self, handle: Any) -> Any:  # type: ignore[override]
        return await self._client().evalsha(*self.raw.delete_call(handle))


class BaselineThreads(Contender):
    name, mode = "raw-evalsha", "threads"

    def __init__(self, raw: RawEvalsha):
        self.raw = raw
        self.patterns = raw.patterns

    def projects(self) -> list[Any]:
        return self.raw.create_projects([ProjectRec(f"p{i}") for i in range(10)])

    def create(self, rec: BuildRec, project: Any) -> Any:
        return self.raw.save(rec, project)

    def get(self, handle: Any) -> Any:
        return self.raw.get(handle)

    def filter(self, status: str) -> list[Any]:
        return self.raw.filter(status)

    def delete(self, handle: Any) -> Any:
        return self.raw.delete(handle)


class RepocketAsync(Contender):
    name, mode = "repocket", "asyncio"

    def __init__(self, models: _Repocket):
        self.m = models
        self.patterns = models.patterns

    def projects(self) -> list[Any]:
        return [self.m.Project.create(name=f"p{i}") for i in range(10)]

    async def create(self, rec: BuildRec, project: Any) -> Any:  # type: ignore[override]
        return await self.m.Build.objects.acreate(**self.m._kwargs(rec, project))

    async def get(self, handle: Any) -> Any:  # type: ignore[override]
        return self.m._touch(await self.m.Build.objects.aget(id=handle.id))

    async def filter(self, status: str) -> list[Any]:  # type: ignore[override]
        return await self.m.Build.objects.filter(status=status).alist()  # type: ignore[no-any-return]

    async def delete(self, handle: Any) -> Any:  # type: ignore[override]
        return await handle.adelete()


class RepocketThreads(RepocketAsync):
    mode = "threads"

    def create(self, rec: BuildRec, project: Any) -> Any:  # type: ignore[override]
        return self.m.save(rec, project)

    def get(self, handle: Any) -> Any:  # type: ignore[override]
        return self.m.get(handle)

    def filter(self, status: str) -> list[Any]:  # type: ignore[override]
        return self.m.filter(status)

    def delete(self, handle: Any) -> Any:  # type: ignore[override]
        return self.m.delete(handle)


def _shares(items: Sequence[Any], workers: int) -> list[Sequence[Any]]:
    return [items[i::workers] for i in range(workers) if items[i::workers]]


def _in_order(shares: list[list[Any]], total: int, workers: int) -> list[Any]:
    out: list[Any] = [None] * total
    for w, results in enumerate(shares):
        out[w::workers] = results
    return out


class Driver:
    def __init__(self, workers: int):
        self.workers = workers
        self.loop = asyncio.new_event_loop()
        self.pool = ThreadPoolExecutor(workers)

    def close(self) -> None:
        self.loop.run_until_complete(_close_repocket())
        self.loop.close()
        self.pool.shutdown()

    def run(self, contender: Contender, op: Callable[..., Any],
            items: Sequence[Any]) -> list[Any]:
        """Every item through ``op``, split over the workers; results in item order."""
        shares = _shares(items, self.workers)
        if contender.mode == "asyncio":
            async def worker(share: Sequence[Any]) -> list[Any]:
                return [await op(*item) for item in share]

            async def everything() -> list[list[Any]]:
                return list(await asyncio.gather(*(worker(s) for s in shares)))

            done = self.loop.run_until_complete(everything())
        else:
            done = list(self.pool.map(lambda share: [op(*item) for item in share], shares))
        return _in_order(done, len(items), self.workers)


async def _close_repocket() -> None:
    from repocket import configure

    await configure.aclose()


class Measured:
    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {op: [] for op in OPS}
        self.cpu: dict[str, list[float]] = {op: [] for op in OPS}
        self.calls: dict[str, float] = {}
        self.rows = 0
        self.count: dict[str, int] = {}

    def rate(self, op: str, per_row: bool = False) -> float:
        count = self.rows if per_row else self.count[op]
        return statistics.median(count / s for s in self.seconds[op])

    def cpu_us(self, op: str) -> float:
        return statistics.median(self.cpu[op]) / self.count[op] * 1e6


def _scripts(stats: dict[str, tuple[int, int]]) -> int:
    return sum(stats.get(name, (0, 0))[0] for name in ("evalsha", "eval"))


def one_pass(driver: Driver, meter_client: redis.Redis, contender: Contender, ds: Dataset,
             projects: list[Any], result: Measured, counted: bool) -> None:
    steps: list[tuple[str, Callable[..., Any], Callable[[], Sequence[Any]]]] = []
    handles: list[Any] = []
    steps.append(("create", contender.create,
                  lambda: [(rec, projects[rec.project]) for rec in ds.builds]))
    steps.append(("get", contender.get, lambda: [(h,) for h in handles]))
    steps.append(("filter", contender.filter, lambda: [(s,) for s in ds.filters]))
    steps.append(("delete", contender.delete, lambda: [(h,) for h in handles]))
    for op, call, items_of in steps:
        items = items_of()
        before = meter.commandstats(meter_client) if counted else {}
        cpu, wall = time.process_time(), time.perf_counter()
        out = driver.run(contender, call, items)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if op == "create":
            handles[:] = out
        if op == "filter":
            result.rows = sum(len(rows) for rows in out)
        result.count[op] = len(items)
        if counted:
            after = meter.commandstats(meter_client)
            result.calls[op] = (_scripts(after) - _scripts(before)) / max(1, len(items))
        else:
            result.seconds[op].append(wall)
            result.cpu[op].append(cpu)


def run(url: str, n: int, workers: int, repeat: int) -> dict[str, Any]:
    meter_client = redis.Redis.from_url(url)
    raw = RawEvalsha()
    raw.setup(url)
    models = _RepocketModels()
    models.setup(url)
    contenders: list[Contender] = [BaselineAsync(raw, url), RepocketAsync(models),
                                   BaselineThreads(raw), RepocketThreads(models)]
    ds = make_dataset(n)
    driver = Driver(workers)
    results = {id(c): Measured() for c in contenders}
    try:
        projects = {id(c): c.projects() for c in contenders}
        for rep in range(repeat + 2):
            order = contenders[rep % len(contenders):] + contenders[:rep % len(contenders)]
            for contender in order:
                measured = results[id(contender)] if rep else Measured()  # 0: warm-up
                one_pass(driver, meter_client, contender, ds, projects[id(contender)],
                         measured, counted=rep == 1)
    finally:
        if isinstance(contenders[0], BaselineAsync) and contenders[0].client is not None:
            driver.loop.run_until_complete(contenders[0].client.aclose())
        driver.close()
        for c in contenders:
            meter.delete_keys(meter_client, c.patterns)
        raw.teardown()
        meter_client.close()
    rows = []
    for c in contenders:
        m = results[id(c)]
        rows.append({"system": c.name, "mode": c.mode,
                     **{f"{op}_ops_per_s": m.rate(op) for op in OPS},
                     "filter_rows_per_s": m.rate("filter", per_row=True),
                     **{f"{op}_scripts_per_op": m.calls.get(op) for op in OPS},
                     **{f"{op}_cpu_us_per_op": m.cpu_us(op) for op in OPS}})
    return {"workers": workers, "n": ds.n, "repeat": repeat, "rows": rows,
            "ratios": _ratios(rows)}


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    def row(system: str, mode: str) -> dict[str, Any]:
        return next(r for r in rows if r["system"] == system and r["mode"] == mode)

    keys = ["create_ops_per_s", "get_ops_per_s", "filter_rows_per_s", "delete_ops_per_s"]
    pairs = {"repocket asyncio / raw-evalsha asyncio": (("repocket", "asyncio"),
                                                        ("raw-evalsha", "asyncio")),
             "repocket asyncio / repocket threads": (("repocket", "asyncio"),
                                                     ("repocket", "threads")),
             "raw-evalsha asyncio / raw-evalsha threads": (("raw-evalsha", "asyncio"),
                                                           ("raw-evalsha", "threads"))}
    return {name: {k: row(*a)[k] / row(*b)[k] for k in keys} for name, (a, b) in pairs.items()}


def text(result: dict[str, Any]) -> str:
    lines = [f"Concurrency: {result['workers']} workers, n={result['n']}, "
             f"median of {result['repeat']} (ops/s; filter rows/s; EVALSHA+EVAL per op; "
             "client cpu µs/op)",
             f"{'system':<13}{'mode':<9}{'create':>9}{'get':>9}{'filter r/s':>12}"
             f"{'delete':>9}  {'scripts/op c g f d':<20}{'cpu µs/op c g f d'}"]
    for r in result["rows"]:
        calls = " ".join(f"{r[f'{op}_scripts_per_op']:.0f}" for op in OPS)
        cpu = " ".join(f"{r[f'{op}_cpu_us_per_op']:.0f}" for op in OPS)
        lines.append(f"{r['system']:<13}{r['mode']:<9}{r['create_ops_per_s']:>9.0f}"
                     f"{r['get_ops_per_s']:>9.0f}{r['filter_rows_per_s']:>12.0f}"
                     f"{r['delete_ops_per_s']:>9.0f}  {calls:<20}{cpu}")
    for name, ratios in result["ratios"].items():
        shown = ", ".join(f"{k.split('_')[0]} {v:.2f}x" for k, v in ratios.items())
        lines.append(f"{name}: {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.concurrency")
    p.add_argument("--url")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--workers", type=int, default=WORKERS)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    from repocket.tools.server import given_or_throwaway

    with given_or_throwaway(args.url, lambda line: print(line, file=sys.stderr)) as url:
        print(text(run(url, args.n, args.workers, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

