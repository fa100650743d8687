"""The synchronous run loop: a :class:`~repocket.core.plan.Call` and its follow-up Calls.

Each call is one round trip on the client's transport (``lean.py``'s kept connection, or
redis-py's own calls, ``plain.py``); the registry (``registry.py``) decides what that round
trip carries and reads what comes back. An asyncio loop is this file with ``await`` before
``transport.run``; a cluster loop picks the node's transport per call.
"""

from __future__ import annotations

import collections
import threading
import weakref
from typing import Any, Protocol

import redis
import redis.exceptions as rexc
from redis.cluster import RedisCluster
from redis.connection import BlockingConnectionPool, ConnectionPool

from ..core.plan import Call, Gather
from ..errors import RepocketError
from . import observe
from .cluster import ClusterTransport
from .guard import in_event_loop, refuse_in_event_loop
from .lean import KeptConnections, why_not_lean
from .limits import max_bytes
from .plain import BareTransport, RedisPyTransport
from .registry import BARE, client_mode, registry, server_name
from .translate import translate_error


class Transport(Protocol):
    def run(self, call: Call, args: tuple[Any, ...]) -> Any: ...


def execute(client: Any, call: Call | Gather) -> Any:
    """Run a compiled operation and its follow-ups; return the decoded result."""
    if in_event_loop() and isinstance(call, (Call, Gather)):
        refuse_in_event_loop(f"{call.model}.{_name(call)}")
    if not isinstance(call, (Call, Gather)):  # a result known already (cached): nothing to run
        return call
    transport = transport_for(client)
    watch = observe.start(_name(call), call.model)
    try:
        result = _finish(client, transport, call, watch)
    except BaseException as exc:  # the hook hears of interrupted calls too
        if watch is not None:
            watch.finish(exc)
        raise
    if watch is not None:
        watch.finish(None)
    return result


def _name(step: Call | Gather) -> str:
    return step.script.name if isinstance(step, Call) else step.name


def _finish(client: Any, transport: Transport, result: Any, watch: Any) -> Any:
    """Run ``result`` (a Call, a Gather, or a result already) and its follow-ups."""
    while True:
        if isinstance(result, Call):
            call = result
            if watch is not None:
                watch.round_trips += 1
            try:
                args = call.args
                if call.args_for_limit is not None:  # the ARGV depend on the server's limit
                    args = call.args_for_limit(max_bytes(client))
                reply = transport.run(call, args)
            except rexc.RedisError as exc:
                raise translate_error(exc, call) from exc
            result = call.decode(reply)
        elif isinstance(result, Gather):
            result = result.combine(_gathered(client, transport, result, watch))
        else:
            return result


def _gathered(client: Any, transport: Transport, gather: Gather, watch: Any) -> list[Any]:
    """The results of a Gather's calls: sent together when the transport can (a cluster:
    a pipeline per node, the nodes in parallel), else one after the other. Every call's
    reply is decoded (a bulk write's records learn they were saved) before the first
    error is raised."""
    if not isinstance(transport, ClusterTransport):
        return [_finish(client, transport, call, watch) for call in gather.calls]
    sent = [(call, call.args if call.args_for_limit is None
             else call.args_for_limit(max_bytes(client))) for call in gather.calls]
    try:
        replies, round_trips = transport.run_many(sent)
    except rexc.RedisError as exc:
        raise translate_error(exc, gather.calls[0]) from exc
    if watch is not None:
        watch.round_trips += round_trips
    results: list[Any] = []
    failure: BaseException | None = None
    for call, reply in zip(gather.calls, replies):
        try:
            if isinstance(reply, rexc.RedisError):
                raise translate_error(reply, call) from reply
            results.append(_finish(client, transport, call.decode(reply), watch))
        except RepocketError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return results


# -- which transport a client gets ------------------------------------------------------------
_transports: weakref.WeakKeyDictionary[Any, Transport] = weakref.WeakKeyDictionary()
_last: tuple[Any, Transport] | None = None  # the configured client, looked up without hashing
_lock = threading.Lock()
# Transports of clients that were garbage collected, retired at the next lookup (not in the
# collector's context, which may run while this thread holds a pool's lock).
_orphaned: collections.deque[Transport] = collections.deque()


def transport_for(client: Any) -> Transport:
    last = _last
    if last is not None and last[0] is client:
        return last[1]
    return _remember(client)


def _remember(client: Any) -> Transport:
    global _last
    _retire_orphans()
    with _lock:
        try:
            transport = _transports[client]
        except (KeyError, TypeError):
            transport = _new_transport(client)
            try:
                _transports[client] = transport
            except TypeError:  # not weakly referenceable: built again next time
                return transport
            weakref.finalize(client, _orphaned.append, transport)
        _last = (client, transport)
    return transport


def _new_transport(client: Any) -> Transport:
    if isinstance(client, RedisCluster):
        return ClusterTransport(client, transport_for)
    if not isinstance(client, redis.Redis):
        return BareTransport(client, registry.server(f"client-{id(client)}", BARE))
    pool = client.connection_pool
    mode = client_mode(pool.connection_kwargs)
    if why_not_lean(client) is None:
        return KeptConnections(client, registry.server(server_name(pool.connection_kwargs), mode))
    # A Sentinel or custom pool may move between servers: its scripts are tracked per pool.
    standard = type(pool) in (ConnectionPool, BlockingConnectionPool)
    name = server_name(pool.connection_kwargs) if standard else f"pool-{id(pool)}"
    return RedisPyTransport(client, registry.server(name, mode))


def _retire_orphans() -> None:
    while _orphaned:
        try:
            transport = _orphaned.popleft()
        except IndexError:
            return
        if isinstance(transport, KeptConnections):
            transport.retire()


def retire(client: Any) -> None:
    """``client`` is no longer repocket's: give its kept connections back to its pool."""
    global _last
    with _lock:
        transport = _transports.pop(client, None)
        if _last is not None and _last[0] is client:
            _last = None
    if isinstance(transport, KeptConnections):
        transport.retire()


def run_plain(client: Any, args: tuple[Any, ...]) -> Any:
    """A plain command's reply (parsed as ``execute_command`` parses it), on this thread's
    kept connection when the lean path is active: a plan does not borrow a second one."""
    transport = transport_for(client)
    if isinstance(transport, KeptConnections):
        return transport.command(args)
    return client.execute_command(*args)


def kept_connection(client: Any) -> Any:
    """The connection this thread keeps for ``client`` (None on redis-py's own path)."""
    transport = transport_for(client)
    return transport.kept_connection() if isinstance(transport, KeptConnections) else None
