"""redis-limpyd: fields as Redis structures, indexes (incl. number ranges), unique fields."""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

from redis.connection import parse_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # limpyd imports pkg_resources (setuptools<81)
    from limpyd import fields, model
    from limpyd.contrib.collection import ExtendedCollectionManager
    from limpyd.database import RedisDatabase
    from limpyd.indexes import EqualIndex, NumberRangeIndex

from ..data import BuildRec, ProjectRec
from .base import System

PREFIX = "repocket-bench:limpyd"
FIELDS = ("project", "number", "status", "ref", "started_at")


class LimpydSystem(System):
    name = "limpyd"
    patterns: ClassVar[tuple[str, ...]] = (PREFIX + ":*",)
    _models: ClassVar[tuple[Any, Any, Any] | None] = None

    def setup(self, url: str) -> None:
        if LimpydSystem._models is None:
            LimpydSystem._models = self._define()
        db, self.Project, self.Build = LimpydSystem._models
        db.reset(**parse_url(url))
        self.db = db
        self.notes.update({
            "get": "hash fields, both streams and the project: one call each",
            "filter": "collection().values(): one SORT ... GET; hash fields only (no streams, "
                      "no project)",
            "range": "NumberRangeIndex, sort(by=), slice, values(): hash fields only",
            "get_many": "a loop of get",
            "bulk_create": "a loop of create",
        })

    @staticmethod
    def _define() -> tuple[Any, Any, Any]:
        db = RedisDatabase()  # connected in setup()

        class Project(model.RedisModel):  # type: ignore[misc]
            database = db
            namespace = PREFIX
            name = fields.InstanceHashField()

        class Build(model.RedisModel):  # type: ignore[misc]
            database = db
            namespace = PREFIX
            collection_manager = ExtendedCollectionManager
            project = fields.InstanceHashField()  # the project's pk
            number = fields.InstanceHashField(indexable=True, indexes=[NumberRangeIndex])
            status = fields.InstanceHashField(indexable=True, indexes=[EqualIndex])
            ref = fields.InstanceHashField(unique=True)
            started_at = fields.InstanceHashField()
            stdout = fields.StringField()
            stderr = fields.StringField()

        return db, Project, Build

    def versions(self) -> dict[str, str]:
        return {"redis-limpyd": importlib.metadata.version("redis-limpyd")}

    def create_projects(self, projects: Sequence[ProjectRec]) -> list[Any]:
        return [self.Project(name=p.name).pk.get() for p in projects]

    def save(self, rec: BuildRec, project: Any) -> Any:
        obj = self.Build(project=project, number=rec.number, status=rec.status, ref=rec.ref,
                         started_at=rec.started_at.isoformat(), stdout=rec.stdout,
                         stderr=rec.stderr)
        return obj.pk.get()

    def get(self, handle: Any) -> Any:
        obj = self.Build(handle)
        values = obj.hmget(*FIELDS)
        return (values, obj.stdout.get(), obj.stderr.get(),
                self.Project(values[0]).name.hget())

    def filter(self, status: str) -> list[Any]:
        return list(self.Build.collection(status=status).values(*FIELDS))

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        coll = self.Build.collection(number__gte=lo, number__lt=hi).sort(by="-number")
        return list(coll.values(*FIELDS)[:limit])

    def append(self, handle: Any, data: bytes) -> None:
        self.Build(handle).stdout.append(data)

    def delete(self, handle: Any) -> None:
        self.Build(handle).delete()

