"""redis-om-python hash models. Its queries need the RediSearch module, which a plain
redis-server does not have: filter and range are n/a here, and the table says so."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
from collections.abc import Sequence
from typing import Any, ClassVar

import redis
from redis_om import HashModel

from ..data import BuildRec, ProjectRec
from .base import NotSupported, System

PREFIX = "repocket-bench"
NO_SEARCH = "needs the RediSearch module (not in plain redis-server)"


class RedisOmSystem(System):
    name = "redis-om"
    patterns: ClassVar[tuple[str, ...]] = (PREFIX + ":om:*",)
    _models: ClassVar[tuple[Any, Any] | None] = None

    def setup(self, url: str) -> None:
        self.conn = redis.Redis.from_url(url, decode_responses=True)
        if RedisOmSystem._models is None:
            RedisOmSystem._models = self._define()
        self.Project, self.Build = RedisOmSystem._models
        for model in (self.Project, self.Build):
            model._meta.database = self.conn
        self.notes.update({
            "save": "no unique constraint or index without RediSearch; streams are hash fields",
            "get": "project loaded by a second get()",
            "append": "read-modify-write of a hash field (no stream type)",
            "get_many": "a loop of get",
            "bulk_create": "Model.add() in one pipeline per batch",
        })

    @staticmethod
    def _define() -> tuple[Any, Any]:
        # index=True is what makes redis-om 1.x build keys; no FT.CREATE is ever run.
        class Project(HashModel, index=True):  # type: ignore[call-arg]
            name: str

            class Meta:
                global_key_prefix = PREFIX
                model_key_prefix = "om:Project"

        class Build(HashModel, index=True):  # type: ignore[call-arg]
            project: str
            number: int
            status: str
            ref: str
            started_at: dt.datetime
            stdout: str
            stderr: str

            class Meta:
                global_key_prefix = PREFIX
                model_key_prefix = "om:Build"

        return Project, Build

    def teardown(self) -> None:
        self.conn.close()

    def versions(self) -> dict[str, str]:
        return {"redis-om": importlib.metadata.version("redis-om")}

    def create_projects(self, projects: Sequence[ProjectRec]) -> list[Any]:
        return [self.Project(name=p.name).save().pk for p in projects]

    def _new(self, rec: BuildRec, project: Any) -> Any:
        return self.Build(project=project, number=rec.number, status=rec.status, ref=rec.ref,
                          started_at=rec.started_at, stdout=rec.stdout.decode(),
                          stderr=rec.stderr.decode())

    def save(self, rec: BuildRec, project: Any) -> Any:
        return self._new(rec, project).save().pk

    def get(self, handle: Any) -> Any:
        obj = self.Build.get(handle)
        return obj, self.Project.get(obj.project)

    def filter(self, status: str) -> list[Any]:
        raise NotSupported(NO_SEARCH)

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        raise NotSupported(NO_SEARCH)

    def append(self, handle: Any, data: bytes) -> None:
        obj = self.Build.get(handle)
        obj.stdout += data.decode()
        obj.save()

    def delete(self, handle: Any) -> None:
        self.Build.delete(handle)

    def bulk_create(self, recs: Sequence[BuildRec], projects: Sequence[Any]) -> list[Any]:
        objs = [self._new(r, projects[r.project]) for r in recs]
        return [o.pk for o in self.Build.add(objs)]
