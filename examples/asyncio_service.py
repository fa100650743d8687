"""A FastAPI-style service on repocket's asyncio API, in plain asyncio.

With FastAPI the handlers below are the route functions (``@app.post("/builds")``...)
and ``lifespan`` is the app's lifespan; here ``main`` plays the server, running
requests concurrently. Run: ``REPOCKET_URL=redis://localhost:6379/0 python
examples/asyncio_service.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from repocket import ActiveRecord, attributes, configure, errors


class Project(ActiveRecord):
    class Meta:
        namespace = "example"

    name = attributes.Unicode(unique=True)


class Build(ActiveRecord):
    class Meta:
        namespace = "example"

    project = attributes.Pointer(Project)
    number = attributes.Integer(index=True)
    status = attributes.Unicode(index=True)
    log = attributes.ByteStream()


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    # one configuration serves sync and async code; each event loop gets its own client
    configure.connection_pool(url=os.environ.get("REPOCKET_URL", "redis://localhost:6379/0"))
    try:
        yield
    finally:
        await configure.aclose()  # this loop's async client


# -- the route handlers --------------------------------------------------------------------
async def create_project(name: str) -> dict[str, Any]:
    try:
        project = await Project.objects.acreate(name=name)
    except errors.UniqueViolation as exc:  # -> HTTP 409, nothing was written
        return {"error": str(exc), "owner": exc.owner}
    return {"id": str(project.id)}


async def create_build(project_id: str, number: int) -> dict[str, Any]:
    project = await Project.objects.aget(id=project_id)
    if project is None:  # -> HTTP 404
        return {"error": "no such project"}
    build = await Build.objects.acreate(project=project, number=number, status="running")
    await build.aappend_log(b"started\n")  # one atomic APPEND
    return {"id": str(build.id)}


async def finish_build(build_id: str, status: str) -> dict[str, Any]:
    build = await Build.objects.aget(id=build_id)  # the project comes in the same call
    if build is None:
        return {"error": "no such build"}
    build.status = status
    await build.asave()  # writes the changed field only
    return {"id": build_id, "project": build.project.name, "status": build.status}


async def failed_builds(project_id: str) -> list[dict[str, Any]]:
    query = Build.objects.filter(project=project_id, status="failed").order_by("-number")
    return [{"number": b.number, "log": b.log.decode()} async for b in query[:20]]


async def status_counts() -> dict[str, int]:
    statuses = ("running", "ok", "failed")
    counts = await asyncio.gather(*(Build.objects.filter(status=s).acount() for s in statuses))
    return dict(zip(statuses, counts))


async def main() -> dict[str, Any]:
    async with lifespan():
        await Build.objects.all().adelete()
        await Project.objects.all().adelete()
        project_id = (await create_project("repocket"))["id"]
        duplicate = await create_project("repocket")
        builds = await asyncio.gather(*(create_build(project_id, n) for n in range(10)))
        await asyncio.gather(*(finish_build(b["id"], "failed" if i % 3 == 0 else "ok")
                               for i, b in enumerate(builds)))
        return {"duplicate": duplicate["owner"] == project_id,
                "failed": [b["number"] for b in await failed_builds(project_id)],
                "counts": await status_counts()}


if __name__ == "__main__":
    print(asyncio.run(main()))
    # {'duplicate': True, 'failed': [9, 6, 3, 0], 'counts': {'running': 0, 'ok': 6, 'failed': 4}}
