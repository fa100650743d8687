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
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.exceptions as rexc
from redis.crc import key_slot

from ..core.plan import Call
from ..errors import Unsupported
from .plain import RedisPyTransport
from .registry import Command

MAX_REDIRECTS = 8  # MOVED/ASK/TRYAGAIN followed per call, then the error is raised
TRYAGAIN_PAUSE = 0.02  # seconds, times the attempt number (8 attempts: 0.72 s in all)


class ClusterTransport:
    """A ``redis.cluster.RedisCluster``: the node owning the slot of each call's keys."""

    def __init__(self, client: Any, node_transport: Callable[[redis.Redis], Any]):
        self._client = weakref.ref(client)
        self._node_transport = node_transport  # sync.transport_for: a node's own transport

    def client(self) -> Any:
        client = self._client()
        if client is None:  # only while the caller's client is being collected
            raise rexc.ConnectionError("the client was closed")
        return client

    def run(self, call: Call, args: tuple[Any, ...]) -> Any:
        if not call.keys:
            raise Unsupported(f"{call.model}: {call.script.name} names no key, so no node can "
                              "be chosen for it on Redis Cluster; nothing was sent")
        client = self.client()
        slot = key_slot(call.keys[0].encode() if isinstance(call.keys[0], str) else call.keys[0])
        asking: Any = None
        for attempt in range(MAX_REDIRECTS):
            try:
                if asking is not None:
                    return self._run_asking(client.get_redis_connection(asking), call, args)
                node = client.nodes_manager.get_node_from_slot(slot)
                return self._node_transport(client.get_redis_connection(node)).run(call, args)
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
                raise
        raise rexc.ConnectionError(f"the slot of {call.keys[0]!r} was redirected or busy "
                                   f"(TRYAGAIN) {MAX_REDIRECTS} times: a resharding is in "
                                   "progress; nothing ran, retry later")

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
        with contextlib.suppress(rexc.RedisError):  # still failing over: the next call retries
            client.nodes_manager.initialize()
