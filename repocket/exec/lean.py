"""The lean call path: one connection per thread, taken from the configured client's pool and
kept, commands packed with hiredis (redis-py's packer without it).

redis-py's ``Redis.evalsha`` spends most of a call's client time taking and returning a
pooled connection (locks, observability hooks, a readiness poll); a connection kept per
thread skips that. What keeps it correct:

- **a readiness check before each send**: ``can_read()`` on an idle connection means a
  stale reply or a server that closed it (a restart, ``CLIENT KILL``, an idle timeout):
  disconnect, and the send connects again (with the pool's settings: TLS, ACL user,
  database);
- **any failure other than an error reply disconnects** (a timeout, a reply cut mid-way,
  an interrupt): a half-read reply is never read by the next call. Nothing is resent:
  a write whose reply was lost may have run, so the caller gets a typed, retriable error;
- **fork**: a connection is used only by the process that took it (``os.getpid()``); a
  child takes its own from the pool (which redis-py resets in a child);
- **threads**: one connection per thread (``threading.local``); a thread that ends gives
  its connection back to the pool (at the next call of any thread);
- **``configure()``** retires the client it replaces: idle kept connections go back to
  its pool at once, busy ones when their call ends.

Connections kept per thread count against the pool's ``max_connections``: at most half of
it is kept (threads beyond that borrow per call through redis-py), so the other half stays
free for borrowing.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.exceptions as rexc
from redis.connection import BlockingConnectionPool, ConnectionPool

from ..core.plan import Call
from .plain import RedisPyTransport
from .registry import Command, ServerScripts

_hiredis_pack: Callable[[Command], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is an optional extra
    _hiredis_pack = None


def why_not_lean(client: redis.Redis) -> str | None:
    """Why ``client`` must go through redis-py's own calls, or None when the lean path fits."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if type(pool) not in (ConnectionPool, BlockingConnectionPool):
        return f"its pool is a {type(pool).__name__} (Sentinel and custom pools pick servers)"
    if getattr(client, "connection", None) is not None:
        return "it is a single_connection_client"
    if str(kwargs.get("protocol") or 2) != "2":
        return "it speaks RESP3 (replies, push messages and client-side caching differ)"
    if getattr(pool, "cache", None) is not None:
        return "it has client-side caching"
    if _retries(kwargs):
        return "it retries commands (repocket's own clients never do: a resent write may run twice)"
    if pool.max_connections < 2:
        return "its pool has fewer than 2 connections (one could never be kept)"
    return None


def _retries(kwargs: dict[str, Any]) -> int:
    """How often the pool's connections resend a command, as redis-py decides it."""
    retry = kwargs.get("retry")
    if retry is not None:
        return int(retry.get_retries())
    return 1 if kwargs.get("retry_on_timeout") or kwargs.get("retry_on_error") else 0


def _packer(kwargs: dict[str, Any]) -> Callable[[Any, Sequence[Command]], list[bytes]]:
    """hiredis' packer when it encodes text as the pool would (UTF-8, strict), else the
    connection's own."""
    utf8 = (kwargs.get("encoding", "utf-8").lower().replace("_", "-") in ("utf-8", "utf8")
            and kwargs.get("encoding_errors", "strict") == "strict")
    pack = _hiredis_pack
    if pack is not None and utf8:

        def pack_hiredis(connection: Any, commands: Sequence[Command]) -> list[bytes]:
            try:  # one buffer: the server reads a prelude and its call together
                return [b"".join([pack(command) for command in commands])]
            except TypeError as exc:  # as redis-py reports an argument it cannot send
                raise rexc.DataError(str(exc)) from exc
        return pack_hiredis

    def pack_redis_py(connection: Any, commands: Sequence[Command]) -> list[bytes]:
        return [b"".join(connection.pack_commands(commands))]
    return pack_redis_py


def _connection_from(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 names the command a connection is taken for
        return pool.get_connection("EVALSHA")


class _Kept:
    """A connection kept by one thread of one process."""

    __slots__ = ("__weakref__", "busy", "connection", "on_thread_end", "pid", "returned")

    def __init__(self, connection: Any, pid: int):
        self.connection = connection
        self.pid = pid
        self.busy = False
        self.returned = False
        self.on_thread_end: weakref.finalize[Any, Any] | None = None


class KeptConnections:
    """The lean transport of one client: its per-thread connections and their round trips."""

    def __init__(self, client: redis.Redis, scripts: ServerScripts):
        self.pool = client.connection_pool
        self.scripts = scripts
        self.plain = RedisPyTransport(client, scripts)
        self.budget = self.pool.max_connections // 2
        self.retired = False
        self._pack = _packer(self.pool.connection_kwargs)
        self._after_fork()

    def _after_fork(self) -> None:
        """Fresh bookkeeping for this process (a child inherits its parent's)."""
        self.pid = os.getpid()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._kept: weakref.WeakSet[_Kept] = weakref.WeakSet()
        self._ended: collections.deque[tuple[Any, int]] = collections.deque()

    # -- the hot path --------------------------------------------------------------------
    def run(self, call: Call, args: tuple[Any, ...]) -> Any:
        """Run one call on this thread's connection (redis-py's path when none is kept)."""
        kept: _Kept | None = getattr(self._local, "kept", None)
        if kept is None or kept.pid != os.getpid():
            kept = self._take()
            if kept is None:  # over budget: borrow per call like redis-py
                return self.plain.run(call, args)
        if self._ended:
            self._give_back_ended()
        kept.busy = True  # before reading `retired`: see retire()
        try:
            if self.retired:
                return self.plain.run(call, args)
            connection = kept.connection
            self._make_ready(connection)  # before deciding what to send: it may forget scripts
            return self.scripts.run(lambda commands: self._exchange(connection, commands),
                                    call, args)
        finally:
            kept.busy = False
            if self.retired:
                self._give_back(kept)

    def command(self, args: Command) -> Any:
        """One plain command (a plan's step) on this thread's kept connection, its reply
        parsed by the client as ``execute_command`` would; redis-py's path when none is kept.
        An error reply raises; the connection stays in step."""
        client = self.plain.client()
        kept: _Kept | None = getattr(self._local, "kept", None)
        if kept is None or kept.pid != os.getpid():
            kept = self._take()
            if kept is None:  # over budget: borrow per call like redis-py
                return client.execute_command(*args)  # type: ignore[no-untyped-call]
        if self._ended:
            self._give_back_ended()
        kept.busy = True  # before reading `retired`: see retire()
        try:
            if self.retired:
                return client.execute_command(*args)  # type: ignore[no-untyped-call]
            connection = kept.connection
            self._make_ready(connection)
            return self._command_on(client, connection, args)
        finally:
            kept.busy = False
            if self.retired:
                self._give_back(kept)

    @staticmethod
    def _command_on(client: redis.Redis, connection: Any, args: Command) -> Any:
        try:
            connection.send_command(*args)
            return client.parse_response(connection, args[0])  # type: ignore[no-untyped-call]
        except rexc.ResponseError:
            raise  # an error reply: the connection is in step
        except BaseException:
            connection.disconnect()  # as in _exchange: never read a half-read reply
            raise

    def _make_ready(self, connection: Any) -> None:
        if getattr(connection, "_sock", True) is None:
            return  # not connected (a failed call closed it): the send connects afresh
        try:
            stale = connection.can_read()
        except rexc.ConnectionError:  # closed by the server
            stale = True
        if stale:  # a stale reply or a closed socket: start a fresh session
            connection.disconnect()
            # Closed by the server: maybe a restart, whose script cache is empty. Loading
            # with this call keeps it one round trip.
            self.scripts.forget()

    def _exchange(self, connection: Any, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write; read one reply each."""
        try:
            connection.send_packed_command(self._pack(connection, commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except rexc.ResponseError as exc:  # an error reply: the connection is in step
                    replies.append(exc)
            return replies
        except BaseException:
            # A timeout, a reply cut mid-way, an interrupt: the rest of a reply may still
            # arrive, so this socket is never read again. Nothing is resent.
            connection.disconnect()
            raise

    # -- taking and giving back ------------------------------------------------------------
    def _take(self) -> _Kept | None:
        """This thread's connection, taken from the pool; None when the budget is used."""
        pid = os.getpid()
        if self.pid != pid:
            self._after_fork()  # the parent's connections are not ours: never touch them
        self._give_back_ended()
        with self._lock:
            if self.retired or len(self._kept) >= self.budget:
                return None
            kept = _Kept(None, pid)
            self._kept.add(kept)  # counted before the pool is asked: the budget holds
        try:
            kept.connection = _connection_from(self.pool)  # connected, with the pool's auth
        except BaseException:
            with self._lock:
                self._kept.discard(kept)
            raise
        # When this thread ends its thread-local goes away: hand the connection back then
        # (a deque append: safe wherever the garbage collector runs it).
        kept.on_thread_end = weakref.finalize(kept, self._ended.append, (kept.connection, pid))
        self._local.kept = kept
        return kept

    def _give_back_ended(self) -> None:
        """Return to the pool the connections of threads that have ended."""
        while self._ended:
            try:
                connection, pid = self._ended.popleft()
            except IndexError:
                return
            self._release(connection, pid)

    def _give_back(self, kept: _Kept) -> None:
        with self._lock:
            if kept.returned or kept.busy:
                return
            kept.returned = True
            self._kept.discard(kept)
        if kept.on_thread_end is not None:
            kept.on_thread_end.detach()  # given back once, never again by the finalizer
        self._release(kept.connection, kept.pid)

    def _release(self, connection: Any, pid: int) -> None:
        if pid != os.getpid():
            connection.disconnect()  # a parent's socket: close our copy, never shut it down
        else:
            self.pool.release(connection)

    def retire(self) -> None:
        """The client is no longer repocket's: give every kept connection back to its pool,
        idle ones now, busy ones when their call ends."""
        self.retired = True  # before reading `busy`: a call sets busy, then reads retired
        for kept in list(self._kept):
            self._give_back(kept)
        self._give_back_ended()

    def kept_connection(self) -> Any:
        """This thread's kept connection, if it has one (for tests and diagnostics)."""
        kept: _Kept | None = getattr(self._local, "kept", None)
        if kept is None or kept.pid != os.getpid() or kept.returned:
            return None
        return kept.connection
