"""repocket itself, once per codec (the seed ``envelope`` codec and ``compact``).

Query-engine features (``index=``/``unique=``, lookups, server-side slices,
``bulk_create``, ``get_many``) are detected at run time: where one is missing
the seed-level equivalent is used and the cell gets a footnote saying so.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any, ClassVar

from ..data import BATCH, BuildRec, ProjectRec
from .base import System


class _Repocket(System):
    kind: ClassVar[str] = "repocket"
    codec: ClassVar[str] = ""

    def setup(self, url: str) -> None:
        from repocket import ActiveRecord, attributes, configure

        configure.connection_pool(url=url)
        missing: list[str] = []

        def attr(factory: Any, *args: Any, **options: Any) -> Any:
            try:
                return factory(*args, **options)
            except TypeError:
                missing.extend(f"{k}=" for k in options)
                return factory(*args)

        meta = type("Meta", (), {"namespace": f"bench_{self.codec}", "codec": self.codec})
        self.Project: Any = type("Project", (ActiveRecord,), {
            "__module__": __name__, "Meta": meta, "name": attributes.Unicode()})
        self.Build: Any = type("Build", (ActiveRecord,), {
            "__module__": __name__, "Meta": meta,
            "project": attributes.Pointer(self.Project),
            "number": attr(attributes.Integer, index=True),
            "status": attr(attributes.Unicode, index=True),
            "ref": attr(attributes.Unicode, unique=True),
            "started_at": attributes.DateTime(),
            "stdout": attributes.ByteStream(),
            "stderr": attributes.ByteStream(),
        })
        if missing:
            self.notes["save"] = f"no {', '.join(sorted(set(missing)))} yet: saved without them"
            self.notes["filter"] = "no index yet: seed-level filter"
        manager = self.Build.objects
        self.server_range = True
        try:
            qs = manager.filter(number__gte=0, number__lt=1).order_by("-number")
            list(qs[0:1])
        except Exception:
            self.server_range = False
            self.notes["range"] = "no lookups yet: filter() all, range/sort/slice in Python"
        self.has_get_many = hasattr(manager, "get_many")
        if not self.has_get_many:
            self.notes["get_many"] = "no get_many yet: a loop of get"
        self.has_bulk = hasattr(manager, "bulk_create")
        if not self.has_bulk:
            self.notes["bulk_create"] = "no bulk_create yet: a loop of create"

    def versions(self) -> dict[str, str]:
        try:
            return {"repocket": importlib.metadata.version("repocket")}
        except importlib.metadata.PackageNotFoundError:
            import repocket

            return {"repocket": str(getattr(repocket, "__version__", "source tree"))}

    def create_projects(self, projects: Sequence[ProjectRec]) -> list[Any]:
        return [self.Project.create(name=p.name) for p in projects]

    def _kwargs(self, rec: BuildRec, project: Any) -> dict[str, Any]:
        return {"project": project, "number": rec.number, "status": rec.status, "ref": rec.ref,
                "started_at": rec.started_at, "stdout": rec.stdout, "stderr": rec.stderr}

    def save(self, rec: BuildRec, project: Any) -> Any:
        return self.Build.create(**self._kwargs(rec, project))

    @staticmethod
    def _touch(obj: Any) -> Any:
        # The same data the baselines return: the pointed-to project and both streams.
        if obj is not None:
            _ = (obj.project.name, obj.stdout, obj.stderr)
        return obj

    def get(self, handle: Any) -> Any:
        return self._touch(self.Build.objects.get(id=handle.id))

    def filter(self, status: str) -> list[Any]:
        return list(self.Build.objects.filter(status=status))

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        manager = self.Build.objects
        if self.server_range:
            qs = manager.filter(number__gte=lo, number__lt=hi).order_by("-number")
            return list(qs[0:limit])
        everything = manager.all() if hasattr(manager, "all") else manager.filter()
        rows = sorted((b for b in everything if lo <= b.number < hi),
                      key=lambda b: b.number, reverse=True)
        return rows[:limit]

    def append(self, handle: Any, data: bytes) -> None:
        handle.append_stdout(data)

    def get_many(self, handles: Sequence[Any]) -> list[Any]:
        if self.has_get_many:
            return [self._touch(o) for o in self.Build.objects.get_many([h.id for h in handles])]
        return [self.get(h) for h in handles]

    def delete(self, handle: Any) -> None:
        handle.delete()

    def bulk_create(self, recs: Sequence[BuildRec], projects: Sequence[Any]) -> list[Any]:
        if not self.has_bulk:
            return [self.save(r, projects[r.project]) for r in recs]
        objs = [self.Build(**self._kwargs(r, projects[r.project])) for r in recs]
        return list(self.Build.objects.bulk_create(objs, batch_size=BATCH))


class RepocketEnvelope(_Repocket):
    name = "repocket-envelope"
    codec = "envelope"
    patterns = ("repocket:bench_envelope:*",)


class RepocketCompact(_Repocket):
    name = "repocket-compact"
    codec = "compact"
    patterns = ("repocket:bench_compact:*",)

