"""Saturation: 8 client processes at once, request/response, saves then gets.

Issue 8's question: with many clients, what throughput does one Redis give repocket
against the hand-written EVALSHA baseline, and how much server time does each operation
take (the figure a high-throughput service hits first: one Redis core sustains
1e6 / server µs per op)? Each process runs a system's ``save`` of ``n`` records, then its
``get`` of them, the processes starting each phase together (a barrier) once each has
saved and read one record (the first call of a script in a process generates and loads
it). Reported per
system and phase: ops/s (all processes' operations over the wall time from the common
start to the last process's end, median of the repeats), server µs per op (``INFO
commandstats`` of the commands the clients sent, between the phase's barriers) and the
ratio to the baseline. The machine's cores are shared by the clients and the server.

    python -m benchmarks.saturation [--url URL] [--processes 8] [--n 1000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

import redis

from . import meter
from .data import make_dataset
from .systems import load

PROCESSES = 8
SYSTEMS = ("raw-evalsha", "repocket-compact", "repocket-envelope")
PHASES = ("save", "get")


def _client(url: str, system_name: str, worker: int, n: int, barrier: Any, results: Any) -> None:
    """One client process: set up, then each phase between two barriers."""
    system = load(system_name)
    system.setup(url)
    data = make_dataset(n)
    projects = system.create_projects(data.projects)
    records = [dataclasses.replace(rec, ref=f"sat{worker}-{rec.ref}") for rec in data.builds]
    # warm up: the first call of each script in a process generates and loads it
    warm = dataclasses.replace(data.bulk[0], ref=f"sat{worker}-warm-up")
    system.get(system.save(warm, projects[warm.project]))
    handles: list[Any] = []
    for phase in PHASES:
        barrier.wait()  # the parent has read the server's counters
        start = time.perf_counter()
        if phase == "save":
            handles = [system.save(rec, projects[rec.project]) for rec in records]
        else:
            for handle in handles:
                system.get(handle)
        results.put((phase, start, time.perf_counter(), len(records)))
        barrier.wait()  # every client is done: the parent reads the counters again


@dataclasses.dataclass
class Phase:
    rates: list[float] = dataclasses.field(default_factory=list)
    server_usec: list[float] = dataclasses.field(default_factory=list)


def run_system(url: str, system_name: str, processes: int, n: int) -> dict[str, Phase]:
    """One run of ``processes`` clients of one system; its keys are removed afterwards."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes + 1), context.Queue()
    clients = [context.Process(target=_client, args=(url, system_name, w, n, barrier, results))
               for w in range(processes)]
    for client in clients:
        client.start()
    monitor = redis.Redis.from_url(url)
    out: dict[str, Phase] = {phase: Phase() for phase in PHASES}
    try:
        for phase in PHASES:
            before = meter.commandstats(monitor)
            barrier.wait()  # go
            barrier.wait()  # all done
            after = meter.commandstats(monitor)
            ends = [results.get(timeout=60) for _ in clients]
            ops = sum(count for _, _, _, count in ends)
            wall = max(end for _, _, end, _ in ends) - min(start for _, start, _, _ in ends)
            sent = collections.Counter({"evalsha": ops})
            out[phase].rates.append(ops / wall)
            out[phase].server_usec.append(meter.server_usec(before, after, sent) / ops)
    finally:
        for client in clients:
            client.join(timeout=60)
        system = load(system_name)
        meter.delete_keys(monitor, system.patterns)
    return out


def run(url: str, processes: int = PROCESSES, n: int = 1000, repeat: int = 2) -> dict[str, Any]:
    phases: dict[str, dict[str, Phase]] = {name: {p: Phase() for p in PHASES} for name in SYSTEMS}
    for _ in range(repeat):
        for name in SYSTEMS:  # systems take turns: drift on a shared machine hits them alike
            for phase, found in run_system(url, name, processes, n).items():
                phases[name][phase].rates += found.rates
                phases[name][phase].server_usec += found.server_usec
    rows = []
    for phase in PHASES:
        base = statistics.median(phases["raw-evalsha"][phase].rates)
        base_usec = statistics.median(phases["raw-evalsha"][phase].server_usec)
        for name in SYSTEMS:
            rate = statistics.median(phases[name][phase].rates)
            usec = statistics.median(phases[name][phase].server_usec)
            rows.append({"op": phase, "system": name, "ops_per_s": rate, "ratio": rate / base,
                         "server_usec": usec, "server_ratio": usec / base_usec,
                         "one_core_ops": 1e6 / usec if usec else None})
    return {"processes": processes, "n": n, "repeat": repeat, "cores": os.cpu_count(),
            "load": os.getloadavg()[0], "rows": rows}


def text(result: dict[str, Any]) -> str:
    lines = [f"Saturation: {result['processes']} client processes, {result['n']} records each, "
             f"{result['repeat']} repeats, {result['cores']} cores (load {result['load']:.1f} "
             "at the end)",
             f"{'op':5} {'system':18} {'ops/s':>9} {'x base':>7} {'server µs/op':>13} "
             f"{'x base':>7} {'one core ops/s':>15}"]
    for row in result["rows"]:
        lines.append(f"{row['op']:5} {row['system']:18} {row['ops_per_s']:9,.0f} "
                     f"{row['ratio']:7.2f} {row['server_usec']:13.1f} {row['server_ratio']:7.2f} "
                     f"{row['one_core_ops'] or 0:15,.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.saturation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing, empty server (default: a throwaway one)")
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument("--n", type=int, default=1000, help="records per process")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    if args.url:
        print(text(run(args.url, args.processes, args.n, args.repeat)))
        return 0
    from repocket.tools.server import RedisServer

    with RedisServer() as server:
        print(f"started a throwaway server: {server}", file=sys.stderr)
        print(text(run(server.url, args.processes, args.n, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
