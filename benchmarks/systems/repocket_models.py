"""repocket itself, once per codec (the seed ``envelope`` codec and ``compact``)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any, ClassVar

from ..data import BATCH, BuildRec, ProjectRec
from .base import System


class _Repocket(System):
    kind: ClassVar[str] = "repocket"
    codec: ClassVar[str] = ""
    namespace: ClassVar[str] = ""  # default bench_<codec>

    def setup(self, url: str) -> None:
        from repocket import ActiveRecord, attributes, configure

        configure.connection_pool(url=url)
        namespace = self.namespace or f"bench_{self.codec}"
        meta = type("Meta", (), {"namespace": namespace, "codec": self.codec})
        self.Project: Any = type("Project", (ActiveRecord,), {
            "__module__": __name__, "Meta": meta, "name": attributes.Unicode()})
        self.Build: Any = type("Build", (ActiveRecord,), {
            "__module__": __name__, "Meta": meta,
            "project": attributes.Pointer(self.Project),
            "number": attributes.Integer(index=True),
            "status": attributes.Unicode(index=True),
            "ref": attributes.Unicode(unique=True),
            "started_at": attributes.DateTime(),
            "stdout": attributes.ByteStream(),
            "stderr": attributes.ByteStream(),
        })

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
        qs = self.Build.objects.filter(number__gte=lo, number__lt=hi).order_by("-number")
        return list(qs[0:limit])

    def append(self, handle: Any, data: bytes) -> None:
        handle.append_stdout(data)

    def get_many(self, handles: Sequence[Any]) -> list[Any]:
        return [self._touch(o) for o in self.Build.objects.get_many([h.id for h in handles])]

    def delete(self, handle: Any) -> None:
        handle.delete()

    def bulk_create(self, recs: Sequence[BuildRec], projects: Sequence[Any]) -> list[Any]:
        objs = [self.Build(**self._kwargs(r, projects[r.project])) for r in recs]
        return list(self.Build.objects.bulk_create(objs, batch_size=BATCH))

    def get_or_create(self, rec: BuildRec, project: Any) -> tuple[Any, bool]:
        kwargs = self._kwargs(rec, project)
        ref = kwargs.pop("ref")
        return self.Build.objects.get_or_create(ref=ref, defaults=kwargs)  # type: ignore[no-any-return]

    def update_f(self, handle: Any) -> int:
        from repocket import F

        return self.Build.objects.filter(id=handle.id).update(  # type: ignore[no-any-return]
            number=F("number") + 1)


class RepocketEnvelope(_Repocket):
    name = "repocket-envelope"
    codec = "envelope"
    patterns = ("repocket:bench_envelope:*",)


class RepocketCompact(_Repocket):
    name = "repocket-compact"
    codec = "compact"
    patterns = ("repocket:bench_compact:*",)

