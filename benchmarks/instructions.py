"""Server CPU instructions per operation, counted by valgrind's callgrind: the hand-written
EVALSHA baseline against repocket (both codecs), on a throwaway redis-server run under
callgrind. Only the instructions executed inside EVALSHA are counted (the counterpart of
INFO commandstats' usec_per_call), so the figures do not move with the machine's load, as
microseconds do on a shared machine: compare a script change by these. Each operation's
first call (script load, compile) is left out.

    python -m benchmarks.instructions [--n 100] [--ops save,get,...] [--systems ...]

Needs valgrind (Debian: apt-get install valgrind); runs about 50x slower than redis-server.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis

from .data import Dataset, make_dataset
from .systems.base import System
from .systems.raw_redispy import RawEvalsha
from .systems.repocket_models import RepocketCompact, RepocketEnvelope

OPS = ("save", "get", "append", "get_or_create", "update_f", "delete")
SYSTEMS: dict[str, Callable[[], System]] = {
    "raw-evalsha": RawEvalsha, "repocket-compact": RepocketCompact,
    "repocket-envelope": RepocketEnvelope}


class Callgrind:
    """redis-server under callgrind, counting inside EVALSHA only."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="repocket-callgrind-")
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--toggle-collect=evalShaCommand",
             f"--callgrind-out-file={self.dir}/out.%p", "redis-server", "--port",
             str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(300):  # valgrind starts slowly
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("redis-server under callgrind did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _control(self, flag: str) -> None:
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def zero(self) -> None:
        self._control("-z")

    def count(self) -> int:
        """The instructions counted since zero()."""
        before = set(glob.glob(f"{self.dir}/out.*"))
        self._control("-d")
        for _ in range(100):
            dumped = set(glob.glob(f"{self.dir}/out.*")) - before
            if dumped:
                time.sleep(0.2)  # let callgrind finish writing it
                with open(max(dumped, key=os.path.getmtime)) as dump:
                    text = dump.read()
                found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
                if found:
                    return int(found.group(1))
            time.sleep(0.1)
        raise RuntimeError("callgrind wrote no dump")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _run(system: System, op: str, items: list[Any], data: Dataset,
         projects: list[Any]) -> list[Any]:
    out = []
    for item in items:
        if op == "save":
            out.append(system.save(item, projects[item.project]))
        elif op == "get":
            system.get(item)
        elif op == "append":
            system.append(item, data.chunk)
        elif op == "get_or_create":
            system.get_or_create(item, projects[item.project])
        elif op == "update_f":
            system.update_f(item)
        elif op == "delete":
            system.delete(item)
    return out


def measure(n: int, ops: list[str], names: list[str]) -> dict[tuple[str, str], float]:
    """(op, system) -> instructions per call, every system on one server."""
    server = Callgrind()
    found: dict[tuple[str, str], float] = {}
    try:
        data = make_dataset(n)
        for name in names:
            system = SYSTEMS[name]()
            system.setup(server.url)
            projects = system.create_projects(data.projects)
            handles: list[Any] = []
            for op in ops:
                items: list[Any] = (list(data.builds) if op == "save" else
                                    list(data.claims) if op == "get_or_create" else handles)
                first = _run(system, op, items[:1], data, projects)  # loads the script
                server.zero()
                rest = _run(system, op, items[1:], data, projects)
                found[(op, name)] = server.count() / max(1, len(items) - 1)
                if op == "save":
                    handles = first + rest
    finally:
        server.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="records per operation (default 100)")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--systems", default=",".join(SYSTEMS))
    args = p.parse_args(argv)
    ops, names = args.ops.split(","), args.systems.split(",")
    found = measure(args.n, ops, names)
    print(f"{'op':14} " + " ".join(f"{name:>18}" for name in names)
          + "   x " + names[0])
    for op in ops:
        base = found[(op, names[0])]
        print(f"{op:14} " + " ".join(f"{found[(op, name)]:18,.0f}" for name in names)
              + "   " + " ".join(f"{found[(op, name)] / base:.2f}" for name in names[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
