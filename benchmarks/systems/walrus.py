"""walrus (coleifer/walrus) models: indexed hash models, no pointers, streams or unique."""

from __future__ import annotations

import importlib.metadata
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import walrus

from ..data import BuildRec, ProjectRec
from .base import System

PREFIX = "repocket-bench:walrus"


class _Database(walrus.Database):  # type: ignore[misc]
    def get_temp_key(self) -> str:
        # Query temporaries live under our prefix so cleanup can find them.
        return f"{PREFIX}:temp.{uuid.uuid4()}"


class WalrusSystem(System):
    name = "walrus"
    patterns: ClassVar[tuple[str, ...]] = (PREFIX + "*",)

    def setup(self, url: str) -> None:
        self.db = _Database.from_url(url)
        ns = PREFIX

        class Project(walrus.Model):  # type: ignore[misc]
            __database__ = self.db
            __namespace__ = ns
            id = walrus.UUIDField(primary_key=True)
            name = walrus.TextField()

        class Build(walrus.Model):  # type: ignore[misc]
            __database__ = self.db
            __namespace__ = ns
            id = walrus.UUIDField(primary_key=True)
            project = walrus.TextField()  # the project's id: no pointer type
            number = walrus.IntegerField(index=True)
            status = walrus.TextField(index=True)
            ref = walrus.TextField(index=True)  # no unique constraint in walrus
            started_at = walrus.DateTimeField()
            stdout = walrus.ByteField()  # no stream type: stored in the hash
            stderr = walrus.ByteField()

        self.Project, self.Build = Project, Build
        self.notes.update({
            "save": "no unique constraint (ref only indexed); streams stored in the hash",
            "get": "project loaded by a second load()",
            "filter": "rows without their project (no pointer type)",
            "range": "order_by server-side, slice in Python (no limit); rows without project",
            "append": "read-modify-write of the hash field (no stream type)",
            "get_many": "a loop of get",
            "bulk_create": "a loop of create",
        })

    def teardown(self) -> None:
        self.db.close()

    def versions(self) -> dict[str, str]:
        return {"walrus": importlib.metadata.version("walrus")}

    def create_projects(self, projects: Sequence[ProjectRec]) -> list[Any]:
        return [self.Project.create(name=p.name) for p in projects]

    def save(self, rec: BuildRec, project: Any) -> Any:
        return self.Build.create(project=str(project.id), number=rec.number, status=rec.status,
                                 ref=rec.ref, started_at=rec.started_at.replace(tzinfo=None),
                                 stdout=rec.stdout, stderr=rec.stderr)

    def get(self, handle: Any) -> Any:
        obj = self.Build.load(handle.id)
        obj.project_obj = self.Project.load(uuid.UUID(obj.project))
        return obj

    def filter(self, status: str) -> list[Any]:
        return list(self.Build.query(self.Build.status == status))

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        b = self.Build
        rows = b.query((b.number >= lo) & (b.number < hi), order_by=b.number.desc())
        return list(rows)[:limit]

    def append(self, handle: Any, data: bytes) -> None:
        obj = self.Build.load(handle.id)
        obj.stdout = (obj.stdout or b"") + data
        obj.save()

    def delete(self, handle: Any) -> None:
        handle.delete()
