"""Hand-written redis-py: the baseline every ratio is against.

Two variants doing the same work as repocket, as well as a skilled user would:

* ``raw-pipeline``: HSET + index SADD/ZADD in a MULTI/EXEC pipeline, reads pipelined.
  A unique check or a pointer read must come back before what depends on it, so
  save, delete and get are two round trips, filter and range three (ids, rows,
  projects); bulk_create and get_many two per batch.
* ``raw-evalsha``: one hand-written Lua script per operation (``benchmarks/lua/``),
  preloaded with SCRIPT LOAD and called with EVALSHA: one round trip.

Reads return what repocket's do: typed rows with both streams and the pointed-to
project (each project read once per call).

Layout (prefix ``repocket-bench:<variant>``): ``Project:<id>`` and ``Build:<id>``
hashes, ``Build:<id>:stdout``/``:stderr`` strings, ``Build:ids`` set,
``Build:idx:status:<value>`` sets, ``Build:z:number`` zset, ``Build:u:ref`` hash.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import redis

from ..data import BuildRec, ProjectRec
from .base import System

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"


def _decode_hash(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {k.decode(): v.decode() for k, v in raw.items()}
    it = iter(raw)
    return {k.decode(): v.decode() for k, v in zip(it, it, strict=True)}


def _row(id_: str, raw: Any) -> dict[str, Any]:
    """A build row as a user wants it: typed values."""
    h = _decode_hash(raw)
    return {"id": id_, "project": h["project"], "number": int(h["number"]),
            "status": h["status"], "ref": h["ref"],
            "started_at": dt.datetime.fromisoformat(h["started_at"])}


def _full(id_: Any, raw: Any, out: bytes | None, err: bytes | None, proj: Any) -> dict[str, Any]:
    row = _row(id_.decode() if isinstance(id_, bytes) else id_, raw)
    row["project"] = {"id": row["project"], **_decode_hash(proj)}
    row["stdout"] = out or b""
    row["stderr"] = err or b""
    return row


class _Raw(System):
    kind: ClassVar[str] = "baseline"
    prefix: ClassVar[str] = ""

    def setup(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)
        p = self.prefix
        self.bp = f"{p}:Build:"
        self.pp = f"{p}:Project:"
        self.ids = f"{p}:Build:ids"
        self.ip = f"{p}:Build:idx:status:"
        self.z = f"{p}:Build:z:number"
        self.u = f"{p}:Build:u:ref"

    def teardown(self) -> None:
        self.r.close()

    def versions(self) -> dict[str, str]:
        return {"redis-py": redis.__version__}

    def create_projects(self, projects: Sequence[ProjectRec]) -> list[Any]:
        ids = [str(uuid.uuid1()) for _ in projects]
        with self.r.pipeline() as pipe:
            for id_, p in zip(ids, projects, strict=True):
                pipe.hset(self.pp + id_, mapping={"name": p.name})
            pipe.execute()
        return ids

    def _fields(self, rec: BuildRec, project: str) -> dict[str, Any]:
        return {"project": project, "number": rec.number, "status": rec.status,
                "ref": rec.ref, "started_at": rec.started_at.isoformat()}


class RawPipeline(_Raw):
    name = "raw-pipeline"
    prefix = "repocket-bench:raw-pipeline"
    patterns = (prefix + ":*",)

    def setup(self, url: str) -> None:
        super().setup(url)
        self.notes["update_f"] = ("MULTI HINCRBY + ZINCRBY, no existence check (a build "
                                  "deleted meanwhile would come back as a partial hash)")

    def _writes(self, pipe: Any, id_: str, rec: BuildRec, project: str) -> None:
        key = self.bp + id_
        pipe.hset(key, mapping=self._fields(rec, project))
        if rec.stdout:
            pipe.set(key + ":stdout", rec.stdout)
        if rec.stderr:
            pipe.set(key + ":stderr", rec.stderr)
        pipe.sadd(self.ids, id_)
        pipe.sadd(self.ip + rec.status, id_)
        pipe.zadd(self.z, {id_: rec.number})

    def save(self, rec: BuildRec, project: Any) -> Any:
        id_ = str(uuid.uuid1())
        with self.r.pipeline(transaction=False) as pipe:
            pipe.exists(self.pp + project)
            pipe.hsetnx(self.u, rec.ref, id_)
            exists, fresh = pipe.execute()
        if not fresh:
            raise ValueError(f"ref {rec.ref!r} taken")
        if not exists:
            self.r.hdel(self.u, rec.ref)
            raise LookupError(project)
        with self.r.pipeline(transaction=True) as pipe:
            self._writes(pipe, id_, rec, project)
            pipe.execute()
        return id_

    def get(self, handle: Any) -> Any:
        key = self.bp + handle
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.get(key + ":stdout")
            pipe.get(key + ":stderr")
            h, out, err = pipe.execute()
        if not h:
            return None
        return _full(handle, h, out, err, self.r.hgetall(self.pp + h[b"project"].decode()))

    def filter(self, status: str) -> list[Any]:
        ids = [i.decode() for i in self.r.smembers(self.ip + status)]
        return self.get_many(ids)

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        ids = self.r.zrevrangebyscore(self.z, f"({hi}", lo, start=0, num=limit)
        return self.get_many([i.decode() for i in ids])

    def append(self, handle: Any, data: bytes) -> None:
        self.r.append(self.bp + handle + ":stdout", data)

    def get_many(self, handles: Sequence[Any]) -> list[Any]:
        with self.r.pipeline(transaction=False) as pipe:
            for id_ in handles:
                key = self.bp + id_
                pipe.hgetall(key)
                pipe.get(key + ":stdout")
                pipe.get(key + ":stderr")
            flat = pipe.execute()
        triples = [flat[i:i + 3] for i in range(0, len(flat), 3)]
        pids = sorted({t[0][b"project"].decode() for t in triples if t[0]})
        with self.r.pipeline(transaction=False) as pipe:
            for pid in pids:
                pipe.hgetall(self.pp + pid)
            projects = dict(zip(pids, pipe.execute(), strict=True))
        return [_full(id_, h, out, err, projects[h[b"project"].decode()]) if h else None
                for id_, (h, out, err) in zip(handles, triples, strict=True)]

    def delete(self, handle: Any) -> None:
        key = self.bp + handle
        status, ref = self.r.hmget(key, "status", "ref")
        if status is None:
            return
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(key, key + ":stdout", key + ":stderr")
            pipe.srem(self.ids, handle)
            pipe.srem(self.ip + status.decode(), handle)
            pipe.zrem(self.z, handle)
            pipe.hdel(self.u, ref)
            pipe.execute()

    def update_f(self, handle: Any) -> int:
        key = self.bp + handle
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "number", 1)
            pipe.zincrby(self.z, 1, handle)
            pipe.execute()
        return 1

    def bulk_create(self, recs: Sequence[BuildRec], projects: Sequence[Any]) -> list[Any]:
        ids = [str(uuid.uuid1()) for _ in recs]
        pids = sorted({projects[r.project] for r in recs})
        with self.r.pipeline(transaction=False) as pipe:
            for pid in pids:
                pipe.exists(self.pp + pid)
            for id_, rec in zip(ids, recs, strict=True):
                pipe.hsetnx(self.u, rec.ref, id_)
            answers = pipe.execute()
        if not all(answers):
            raise ValueError("unique ref taken or pointer target missing")
        with self.r.pipeline(transaction=True) as pipe:
            for id_, rec in zip(ids, recs, strict=True):
                self._writes(pipe, id_, rec, projects[rec.project])
            pipe.execute()
        return ids


class RawEvalsha(_Raw):
    name = "raw-evalsha"
    prefix = "repocket-bench:raw-evalsha"
    patterns = (prefix + ":*",)

    def setup(self, url: str) -> None:
        super().setup(url)
        shared = (LUA_DIR / "_rows.lua").read_text()
        self.sha = {}
        for path in LUA_DIR.glob("[!_]*.lua"):
            source = path.read_text()
            if path.stem in ("get_many", "filter", "range"):
                source = shared + source
            self.sha[path.stem] = self.r.script_load(source)

    # The EVALSHA arguments of save, get, filter and delete, shared with the asyncio
    # baseline (benchmarks/concurrency.py).
    def save_call(self, rec: BuildRec, project: Any) -> tuple[str, tuple[Any, ...]]:
        id_ = str(uuid.uuid1())
        key = self.bp + id_
        args: list[Any] = [id_, rec.ref, rec.number, rec.stdout, rec.stderr]
        for k, v in self._fields(rec, project).items():
            args += (k, v)
        return id_, (self.sha["save"], 8, key, key + ":stdout", key + ":stderr", self.ids,
                     self.ip + rec.status, self.z, self.u, self.pp + project, *args)

    def get_call(self, handle: Any) -> tuple[Any, ...]:
        key = self.bp + handle
        return (self.sha["get"], 3, key, key + ":stdout", key + ":stderr", self.pp)

    def filter_call(self, status: str) -> tuple[Any, ...]:
        return (self.sha["filter"], 1, self.ip + status, self.bp, self.pp)

    def delete_call(self, handle: Any) -> tuple[Any, ...]:
        key = self.bp + handle
        return (self.sha["delete"], 6, key, key + ":stdout", key + ":stderr", self.ids,
                self.z, self.u, handle, self.ip)

    def save(self, rec: BuildRec, project: Any) -> Any:
        id_, call = self.save_call(rec, project)
        self.r.evalsha(*call)
        return id_

    def get(self, handle: Any) -> Any:
        res = self.r.evalsha(*self.get_call(handle))
        return _full(handle, *res) if res else None

    def filter(self, status: str) -> list[Any]:
        res = self.r.evalsha(*self.filter_call(status))
        return [_full(*r) for r in res if r]

    def range(self, lo: int, hi: int, limit: int) -> list[Any]:
        res = self.r.evalsha(self.sha["range"], 1, self.z, self.bp, self.pp, lo, hi, limit)
        return [_full(*r) for r in res if r]

    def append(self, handle: Any, data: bytes) -> None:
        key = self.bp + handle
        self.r.evalsha(self.sha["append"], 2, key, key + ":stdout", data)

    def get_many(self, handles: Sequence[Any]) -> list[Any]:
        res = self.r.evalsha(self.sha["get_many"], 0, self.bp, self.pp, *handles)
        return [_full(*r) if r else None for r in res]

    def delete(self, handle: Any) -> None:
        self.r.evalsha(*self.delete_call(handle))

    def get_or_create(self, rec: BuildRec, project: Any) -> tuple[Any, bool]:
        id_ = str(uuid.uuid1())
        key = self.bp + id_
        args: list[Any] = [id_, rec.ref, rec.number, rec.stdout, rec.stderr, self.bp]
        for k, v in self._fields(rec, project).items():
            args += (k, v)
        reply = self.r.evalsha(self.sha["get_or_create"], 8, self.u, self.pp + project, self.ids,
                               self.ip + rec.status, self.z, key, key + ":stdout",
                               key + ":stderr", *args)
        if reply[0] == b"created":
            return id_, True
        _, owner, flat, out, err = reply
        # the found build's project stays an id, as repocket's Pointer until first access
        return {**_row(owner.decode(), flat), "stdout": out or b"", "stderr": err or b""}, False

    def update_f(self, handle: Any) -> int:
        key = self.bp + handle
        return int(self.r.evalsha(self.sha["update_f"], 2, key, self.z, handle, "number", 1))

    def bulk_create(self, recs: Sequence[BuildRec], projects: Sequence[Any]) -> list[Any]:
        ids = [str(uuid.uuid1()) for _ in recs]
        args: list[Any] = [self.bp, self.ip, self.pp]
        for id_, r in zip(ids, recs, strict=True):
            args += (id_, r.ref, r.number, r.status, projects[r.project],
                     r.started_at.isoformat(), r.stdout, r.stderr)
        self.r.evalsha(self.sha["bulk_save"], 3, self.ids, self.z, self.u, *args)
        return ids
