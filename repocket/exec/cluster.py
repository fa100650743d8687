"""The Redis Cluster transport: each call goes to the primary serving its keys' slot.

A call's keys share one hash tag (``core/keys.py``: one shard of one model), so the
first key names the slot. The call runs through that node's own transport
(``sync.transport_for`` on the node's ``redis.Redis``: the lean path, and the node's
entry in the script registry), so scripts are loaded on each primary on first use
(``SCRIPT LOAD`` with the first ``EVALSHA``) and ``NOSCRIPT`` (a promoted replica has an
empty script cache) is answered with ``EVAL``, exactly as on one server.

Redirections: ``MOVED``, ``ASK`` and ``TRYAGAIN`` are error replies, sent instead of
running the script, so following them can never run a write twice: ``MOVED`` updates
the slot map and resends to the new owner, ``ASK`` resends once with ``ASKING`` to the
node importing the slot, ``TRYAGAIN`` (a slot in migration) waits a little and resends.
A dropped connection or a timeout is not retried (the write may have run): the slot map
is refreshed for the next call, and the caller gets the typed retriable error.

Independent calls (a ``plan.Gather``: one per shard of a query, a get_many, a bulk write)
are grouped by node: each node's calls go in one pipeline (EVALSHA on the node's own
connection: redis-py's ClusterPipeline refuses EVALSHA), the nodes in parallel; the
registry decides what each call carries as for a single call.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import redis.exceptions as rexc
from redis.crc import key_slot

from ..core.plan import Call
from ..errors import Unsupported
from .plain import RedisPyTransport
from .registry import Command

PARALLEL_NODES = 8  # nodes sent to at once by one gathered operation
MAX_REDIRECTS = 8  # MOVED/ASK/TRYAGAIN followed per call, then the error is raised
TRYAGAIN_PAUSE = 0.02  # seconds, times the attempt number (8 attempts: 0.72 s in all)


class ClusterTransport:
    """A ``redis.cluster.RedisCluster``: the node owning the slot of each call's keys."""

    def __init__(self, client: Any, node_transport: Callable[[redis.Redis], Any]):
        self._client = weakref.ref(client)
        self._node_transport = node_transport  # sync.transport_for: a node's own transport
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # per node name: its redis.Redis and that client's own transport, looked up here
        # rather than through sync.transport_for (whose one-entry cache holds this client)
        self._by_node: dict[str, tuple[Any, Any]] = {}

    def client(self) -> Any:
        client = self._client()
        if client is None:  # only while the caller's client is being collected
            raise rexc.ConnectionError("the client was closed")
        return client

    def run(self, call: Call, args: tuple[Any, ...]) -> Any:
        client = self.client()
        slot = slot_of(call)
        asking: Any = None
        retried_read = False
        for attempt in range(MAX_REDIRECTS):
            try:
                if asking is not None:
                    return self._run_asking(client.get_redis_connection(asking), call, args)
                node = node_for(client, slot)
                return self._transport_of(client, node).run(call, args)
            except rexc.AskError as exc:
                asking = self._node(client, exc.host, exc.port)
            except rexc.MovedError as exc:
                client.nodes_manager.move_slot(exc)
                asking = None
            except rexc.TryAgainError:
                time.sleep(TRYAGAIN_PAUSE * (attempt + 1))
                asking = None
            except (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError):
                self._refresh(client)  # the next call asks the cluster who serves what
                if is_read_only(call) and not retried_read:
                    retried_read = True  # a read run twice changes nothing: once more
                    continue
                raise
        raise rexc.ConnectionError(f"the slot of {call.keys[0]!r} was redirected or busy "
                                   f"(TRYAGAIN) {MAX_REDIRECTS} times: a resharding is in "
                                   "progress; nothing ran, retry later")

    def run_many(self, sent: Sequence[tuple[Call, tuple[Any, ...]]]) -> tuple[list[Any], int]:
        """The replies of independent calls (error replies as exception instances) and the
        round trips they took: each node's calls in one pipeline, the nodes in parallel.
        A call redirected or refused (MOVED, ASK, TRYAGAIN: it did not run) is then resent
        alone through :meth:`run`, which follows the redirection."""
        client = self.client()
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, (call, _args) in enumerate(sent):
            node = node_for(client, slot_of(call))
            by_node.setdefault(node.name, (node, []))[1].append(index)
        replies: list[Any] = [None] * len(sent)

        def send(node: Any, indexes: list[int]) -> None:
            node_client = client.get_redis_connection(node)
            scripts = self._node_transport(node_client).scripts
            plain = RedisPyTransport(node_client, scripts)
            for index, reply in zip(indexes, scripts.run_many(plain.roundtrip,
                                                              [sent[i] for i in indexes])):
                replies[index] = reply

        groups = list(by_node.values())
        try:
            if len(groups) == 1:
                send(*groups[0])
            else:
                for done in [self._threads().submit(send, *group) for group in groups]:
                    done.result()
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError):
            self._refresh(client)
            raise
        round_trips = len(groups)
        for index, reply in enumerate(replies):
            if isinstance(reply, (rexc.AskError, rexc.TryAgainError)):  # MOVED is an AskError
                round_trips += 1
                try:
                    replies[index] = self.run(*sent[index])
                except rexc.ResponseError as exc:  # the call ran and failed: its error
                    replies[index] = exc
        return replies, round_trips

    def _threads(self) -> ThreadPoolExecutor:
        """Threads sending to several nodes at once (made on first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=PARALLEL_NODES,
                                                thread_name_prefix="repocket-cluster")
            return self._pool

    def _transport_of(self, client: Any, node: Any) -> Any:
        """The transport of the node's own redis.Redis (built again when the cluster client
        replaced that client, e.g. after a failover)."""
        node_client = client.get_redis_connection(node)
        known = self._by_node.get(node.name)
        if known is None or known[0] is not node_client:
            known = self._by_node[node.name] = (node_client, self._node_transport(node_client))
        return known[1]

    def _run_asking(self, node_client: redis.Redis, call: Call, args: tuple[Any, ...]) -> Any:
        """The call on the node importing its slot: ``ASKING`` and the script in one round
        trip, on one connection (what the registry would send, with ASKING first)."""
        scripts = self._node_transport(node_client).scripts
        plain = RedisPyTransport(node_client, scripts)

        def roundtrip(commands: Sequence[Command]) -> list[Any]:
            return plain.roundtrip([("ASKING",), *commands])[1:]

        return scripts.run(roundtrip, call, args)

    @staticmethod
    def _node(client: Any, host: str, port: int) -> Any:
        node = client.nodes_manager.get_node(host=host, port=port)
        if node is None:  # a node this client has not met yet
            client.nodes_manager.initialize()
            node = client.nodes_manager.get_node(host=host, port=port)
        if node is None:
            raise rexc.ConnectionError(f"redirected to {host}:{port}, which is not in the "
                                       "cluster's node table")
        return node

    @staticmethod
    def _refresh(client: Any) -> None:
        # still failing over (no node answers, a slot unserved): the next call asks again
        with contextlib.suppress(rexc.RedisError, rexc.RedisClusterException):
            client.nodes_manager.initialize()


def slot_of(call: Call) -> int:
    """The slot of a call's keys (they share one hash tag: the first key says it)."""
    if not call.keys:
        raise Unsupported(f"{call.model}: {call.script.name} names no key, so no node can "
                          "be chosen for it on Redis Cluster; nothing was sent")
    first = call.keys[0]
    return int(key_slot(first.encode() if isinstance(first, str) else first))


def node_for(client: Any, slot: int) -> Any:
    """The primary serving ``slot``; a slot no node serves (a failover under way) is a
    retriable connection error, not redis-py's RedisClusterException."""
    try:
        return client.nodes_manager.get_node_from_slot(slot)
    except (rexc.RedisClusterException, KeyError) as exc:
        raise rexc.ConnectionError(f"no node serves slot {slot} now: {exc}") from exc


def is_read_only(call: Call) -> bool:
    """Whether the call's script cannot write (``#!lua flags=no-writes``)."""
    return call.script.source.startswith("#!lua flags=no-writes")
