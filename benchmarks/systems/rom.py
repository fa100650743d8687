"""rom (josiahcarlson/rom): indexed models with unique columns and a ManyToOne pointer."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any, ClassVar

import redis
import rom
import rom.util

from ..data import BuildRec, ProjectRec
from .base import System

PREFIX = "repocket-bench:rom"


class RomSystem(System):
    name = "rom"
    # rom's temporary query keys take the first segment of the namespace: repocket-bench:<uuid>
    patterns: ClassVar[tuple[str, ...]] = (PREFIX + ":*", "repocket-bench:????????-*")
    # Reads start with rom.session.rollback(): rom's identity map would otherwise answer
    # them from memory without asking Redis.
    _models: ClassVar[tuple[Any, Any] | None] = None  # rom keeps a global model registry

    def setup(self, url: str) -> None:
        self.conn = redis.Redis.from_url(url)
        rom.util.CONNECTION = self.conn  # what rom.util.set_connection_settings sets
        if RomSystem._models is None:
            RomSystem._models = self._define()
        self.Project, self.Build = RomSystem._models
        self.notes.update({
            "get": "project loaded lazily through the ManyToOne on first access",
            "filter": "rows without their project (ManyToOne loads lazily)",
            "range": "rows without their project (ManyToOne loads lazily)",
            "append": "read-modify-write of a String column (no stream type)",
            "bulk_create": "a loop of save (no batched save)",
        })

    @staticmethod
    def _define() -> tuple[Any, Any]:
        class RomProject(rom.Model):  # type: ignore[misc]
            _namespace = PREFIX + ":Project"
            name = rom.String()

        class RomBuild(rom.Model):  # type: ignore[misc]
            _namespace = PREFIX + ":Build"
            project = rom.ManyToOne("RomProject", on_delete="no action")
            number = rom.Integer(index=True)
            status = rom.String(index=True, keygen=rom.IDENTITY)
            ref = rom.String(unique=True)
            started_at = rom.DateTime()
            stdout = rom.String()
            stderr = rom.String()

        return RomProject, RomBuild

    def teardown(self) -> None:
        rom.session.rollback()
        self.conn.close()

    def versions(self) -> dict[str, str]:
        return {"rom": importlib.metadata.version("rom")}

    def create_projects(self, projects: Sequence[ProjectRec]) -> list[Any]:
        out = []
        for p in projects:
            obj = self.Project(name=p.name.encode())
            obj.save()
            out.append(obj)
        return out

    def save(self, rec: BuildRec, project: Any) -> Any:
        obj = self.Build(project=project, number=rec.number,
                         status=rec.status.encode(), ref=rec.ref.encode(),
                         started_at=rec.started_at.replace(tzinfo=None),
                         stdout=rec.stdout, stderr=rec.stderr)
        obj.save()
        return obj.id

    def get(self, handle: Any) -> Any:
        rom.session.rollback()
        obj = self.Build.get(handle)
        _ = obj.project.name
        return obj

    def filter(self, status: str) -> list[Any]:
        rom.session.rollback()
        return list(self.Build.query.filter(status=status.encode()).all())

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        rom.session.rollback()
        q = self.Build.query.filter(number=(lo, hi - 1)).order_by("-number")
        return list(q.limit(0, limit).all())

    def append(self, handle: Any, data: bytes) -> None:
        rom.session.rollback()
        obj = self.Build.get(handle)
        obj.stdout = (obj.stdout or b"") + data
        obj.save()

    def get_many(self, handles: Sequence[Any]) -> list[Any]:
        rom.session.rollback()
        objs = self.Build.get(list(handles))
        for obj in objs:
            if obj is not None:
                _ = obj.project.name
        return list(objs)

    def delete(self, handle: Any) -> None:
        rom.session.rollback()
        self.Build.get(handle).delete()
