"""The data every system gets: the same projects and builds, built deterministically."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

STATUSES = ("ok", "failed", "running", "queued", "cancelled",
            "skipped", "timeout", "error", "retry", "flaky")
BATCH = 100  # records per bulk_create / get_many call
RANGE_LIMIT = 20  # rows per range query (the slice)
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class ProjectRec:
    name: str


@dataclass(frozen=True)
class BuildRec:
    project: int  # index into Dataset.projects
    number: int
    status: str
    ref: str  # the unique field
    started_at: dt.datetime
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Dataset:
    n: int
    projects: tuple[ProjectRec, ...]
    builds: tuple[BuildRec, ...]  # saved one by one
    bulk: tuple[BuildRec, ...]  # saved by bulk_create (other refs and numbers)
    # get_or_create's, one per saved build: every other one a saved build (found), the
    # others new refs (created)
    claims: tuple[BuildRec, ...]
    filters: tuple[str, ...]  # status per filter query
    ranges: tuple[tuple[int, int], ...]  # [lo, hi) per range query
    chunk: bytes  # what each append adds

    def expected_filter_rows(self, status: str) -> int:
        return sum(1 for b in self.builds if b.status == status)

    def expected_range_rows(self, lo: int, hi: int) -> int:
        return min(RANGE_LIMIT, sum(1 for b in self.builds if lo <= b.number < hi))

    @property
    def expected_creations(self) -> int:
        saved = {b.ref for b in self.builds}
        return sum(1 for c in self.claims if c.ref not in saved)


def _build(i: int, ref: str) -> BuildRec:
    line = f"step {i}: compiling module {i % 97} ... done\n".encode()
    return BuildRec(
        project=i % 10,
        number=i,
        status=STATUSES[i % len(STATUSES)],
        ref=ref,
        started_at=_EPOCH + dt.timedelta(seconds=37 * i, microseconds=i % 1000),
        stdout=line * 4,
        stderr=b"warning: deprecated flag\n" if i % 3 == 0 else b"",
    )


def make_dataset(n: int) -> Dataset:
    n = max(n, 10)
    queries = max(10, n // 10)
    window = max(RANGE_LIMIT, n // 5)
    span = max(1, n - window)
    return Dataset(
        n=n,
        projects=tuple(ProjectRec(f"project-{j}") for j in range(10)),
        builds=tuple(_build(i, f"build-{i}") for i in range(n)),
        bulk=tuple(_build(n + i, f"bulk-{i}") for i in range(n)),
        claims=tuple(_build(i, f"build-{i}") if i % 2 else _build(2 * n + i, f"claim-{i}")
                     for i in range(n)),
        filters=tuple(STATUSES[k % len(STATUSES)] for k in range(queries)),
        ranges=tuple(((k * 37) % span, (k * 37) % span + window) for k in range(queries)),
        chunk=b"appended output line\n",
    )
