"""How long a run will take, said before it starts and refined after its warm-up pass.

The costs below are milliseconds per record for one timed pass of an operation, measured by
a run of n=200, 3 repeats on the 2-core development machine while other test suites
kept it at a load average of about 8 (get_or_create and update_f: estimated from save and
append; 0.0 where a system cannot run the operation). An idle machine is two to three times
faster; the estimate printed after the warm-up pass uses this machine's own pace instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MS_PER_RECORD: dict[str, dict[str, float]] = {
    "raw-evalsha": {"save": 2.0, "get": 0.8, "filter": 0.2, "range": 0.5, "append": 0.3,
                    "get_many": 0.1, "delete": 0.3, "bulk_create": 0.2,
                    "get_or_create": 1.5, "update_f": 0.6},
    "raw-pipeline": {"save": 1.7, "get": 1.3, "filter": 0.3, "range": 0.7, "append": 0.3,
                     "get_many": 0.1, "delete": 0.8, "bulk_create": 0.3,
                     "get_or_create": 0.0, "update_f": 0.6},
    "repocket-envelope": {"save": 2.0, "get": 0.6, "filter": 0.8, "range": 0.5, "append": 0.7,
                          "get_many": 0.2, "delete": 0.9, "bulk_create": 0.4,
                          "get_or_create": 1.8, "update_f": 1.0},
    "repocket-compact": {"save": 1.5, "get": 0.6, "filter": 0.5, "range": 0.6, "append": 0.9,
                         "get_many": 0.1, "delete": 0.9, "bulk_create": 0.3,
                         "get_or_create": 1.5, "update_f": 1.0},
    "walrus": {"save": 4.3, "get": 1.1, "filter": 1.4, "range": 6.2, "append": 6.9,
               "get_many": 2.0, "delete": 4.7, "bulk_create": 3.2,
               "get_or_create": 0.0, "update_f": 0.0},
    "rom": {"save": 1.8, "get": 2.7, "filter": 0.8, "range": 2.4, "append": 2.9,
            "get_many": 0.2, "delete": 3.8, "bulk_create": 2.0,
            "get_or_create": 0.0, "update_f": 0.0},
    "redis-om": {"save": 0.9, "get": 1.9, "filter": 0.0, "range": 0.0, "append": 1.5,
                 "get_many": 1.1, "delete": 0.3, "bulk_create": 0.3,
                 "get_or_create": 0.0, "update_f": 0.0},
    "limpyd": {"save": 13.6, "get": 4.6, "filter": 0.2, "range": 0.5, "append": 1.1,
               "get_many": 3.5, "delete": 10.1, "bulk_create": 15.7,
               "get_or_create": 0.0, "update_f": 0.0},
}
UNKNOWN_SYSTEM_MS = 5.0  # per record and operation, for a system not in the table
# Around each timed phase: collecting garbage, reading INFO, cleaning a pass's keys (on a
# loaded machine every round trip also waits for the CPU), and the counted warm-up's extra
# work, as a factor on the passes' time.
STEP_SECONDS = 0.12
OVERHEAD = 1.1
CONCURRENCY_MS_PER_RECORD = 13.0  # one pass of the four contenders, 64 workers
# The contention section: ms per operation of one writer (six contenders, 2 cores shared by
# the writers), and the writer processes' start.
CONTENTION_MS_PER_WRITER_OP = 0.3
CONTENTION_START_SECONDS = 3.0
FIXED_SECONDS = 6.0  # imports, the server, the systems' set-up, the report and chart


def pass_seconds(systems: Sequence[str], ops: Sequence[str], n: int) -> float:
    """One timed pass of every system over the selected operations."""
    ms = sum(MS_PER_RECORD.get(s, {}).get(op, UNKNOWN_SYSTEM_MS) for s in systems for op in ops)
    return ms * n / 1000


@dataclass(frozen=True)
class Estimate:
    """A run's expected seconds, by part, at the pace of the machine the table was made on."""

    one_pass: float  # every system once over the operations, overhead included
    repeat: int
    profile: float  # the profiled passes (--profile)
    concurrency: float  # the concurrency section
    contention: float = 0.0  # the contention section (writer processes)
    cluster: float = 0.0  # the cluster section (benchmarks.cluster.estimate)

    @classmethod
    def of(cls, systems: Sequence[str], ops: Sequence[str], n: int, repeat: int,
           concurrency: bool, profiled_systems: int = 0, writers: int = 0,
           cluster: float = 0.0) -> Estimate:
        steps = STEP_SECONDS * len(systems) * len(ops)
        one_pass = pass_seconds(systems, ops, n) * OVERHEAD + steps
        profile = profiled_systems * pass_seconds(["repocket-compact"], ops, n) * 2
        tasks = CONCURRENCY_MS_PER_RECORD * n * (repeat + 2) / 1000 if concurrency else 0.0
        contention = (CONTENTION_START_SECONDS + 6 * CONTENTION_MS_PER_WRITER_OP * writers * n
                      * (repeat + 1) / 1000) if writers else 0.0
        return cls(one_pass, repeat, profile, tasks, contention, cluster)

    @property
    def total(self) -> float:
        """The whole run: a counted warm-up pass, the timed ones, the rest."""
        return (FIXED_SECONDS + self.one_pass * (self.repeat + 1) + self.profile
                + self.concurrency + self.contention + self.cluster)

    def remaining_after_warmup(self, warmup_seconds: float) -> float:
        """What is left once the warm-up took ``warmup_seconds``, at that pace."""
        pace = warmup_seconds / self.one_pass if self.one_pass > 0 else 1.0
        rest = (self.one_pass * self.repeat + self.profile + self.concurrency + self.contention
                + self.cluster + FIXED_SECONDS / 2)
        return rest * pace


def duration(seconds: float) -> str:
    """``45 s``, ``2 min 10 s``, ``13 min``: a rough duration for a person."""
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes, rest = divmod(round(seconds / 10) * 10, 60)
    if minutes >= 10 or rest == 0:
        return f"{round(seconds / 60)} min"
    return f"{minutes} min {rest} s"
