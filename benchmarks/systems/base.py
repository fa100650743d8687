"""The interface every benchmarked system implements.

A system gets the URL of the target server in :meth:`System.setup` and then one
call per operation. ``handle`` is whatever the system needs to find a record
again (an instance, an id...). An operation a system cannot do raises
:class:`NotSupported`; a footnote in :attr:`System.notes` says how an operation
was done when it is not the obvious way (for example a loop instead of a bulk
call), so the table never hides a difference in the work done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..data import BuildRec, ProjectRec

OPS = ("save", "get", "filter", "range", "append", "get_many", "delete", "bulk_create",
       "get_or_create", "update_f")
# How the reports name an operation whose identifier is not what a reader calls it.
LABELS = {"update_f": "update (F increment)"}


def label(op: str) -> str:
    return LABELS.get(op, op)


class NotSupported(Exception):
    """The system cannot do this operation; the message says why (shown as n/a)."""


class System:
    name: ClassVar[str] = ""
    kind: ClassVar[str] = "peer"  # "baseline", "repocket" or "peer"
    # SCAN MATCH patterns covering every key the system writes: cleanup and MEMORY USAGE.
    patterns: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.notes: dict[str, str] = {}

    # lifecycle -------------------------------------------------------------
    def setup(self, url: str) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """Close connections (keys are removed by the harness, by pattern)."""

    def versions(self) -> dict[str, str]:
        return {}

    def create_projects(self, projects: Sequence[ProjectRec]) -> list[Any]:
        raise NotImplementedError

    # operations ------------------------------------------------------------
    def save(self, rec: BuildRec, project: Any) -> Any:
        raise NotImplementedError

    def get(self, handle: Any) -> Any:
        raise NotImplementedError

    def filter(self, status: str) -> list[Any]:
        raise NotSupported("no equality filter")

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        """Records with lo <= number < hi, highest number first, the first ``limit``."""
        raise NotSupported("no range query")

    def append(self, handle: Any, data: bytes) -> None:
        raise NotImplementedError

    def get_many(self, handles: Sequence[Any]) -> list[Any]:
        return [self.get(h) for h in handles]

    def delete(self, handle: Any) -> None:
        raise NotImplementedError

    def bulk_create(self, recs: Sequence[BuildRec], projects: Sequence[Any]) -> list[Any]:
        return [self.save(r, projects[r.project]) for r in recs]

    def get_or_create(self, rec: BuildRec, project: Any) -> tuple[Any, bool]:
        """The build whose unique ``ref`` is ``rec.ref``, or else ``rec`` created, atomically:
        ``(record, created)``."""
        raise NotSupported("no atomic get_or_create")

    def update_f(self, handle: Any) -> int:
        """``number += 1`` on the server, its index kept in step: the records updated (1)."""
        raise NotSupported("no server-side update")
