"""The asyncio twin of ``cluster.py``: a ``redis.asyncio.cluster.RedisCluster``, each call on
the primary serving its slot, a Gather's calls grouped per node (one pipeline each, the
nodes concurrently). The decisions are the sync ones: what a round trip carries comes
from the same per-node registry entry (``registry.ServerScripts``), redirections are
followed the same way (refusals only: a call that may have run is never resent).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rexc
from redis.asyncio.cluster import PipelineCommand

from ..core.plan import Call
from .cluster import MAX_REDIRECTS, TRYAGAIN_PAUSE, is_read_only, node_for, slot_of
from .registry import FULL, Command, ServerScripts, registry


async def node_roundtrip(node: Any, commands: Sequence[Command]) -> list[Any]:
    """``commands`` in one write on one of ``node``'s connections; error replies as values."""
    pipeline = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
    await node.execute_pipeline(pipeline)
    return [command.result for command in pipeline]


def node_scripts(node: Any) -> ServerScripts:
    """The registry's entry of a node: the same object the sync executor uses for it."""
    return registry.server(node.name, FULL)


async def _run_on(node: Any, call: Call, args: tuple[Any, ...], asking: bool) -> Any:
    from .aio import arun_script  # aio imports this module

    async def roundtrip(commands: Sequence[Command]) -> list[Any]:
        if not asking:
            return await node_roundtrip(node, commands)
        return (await node_roundtrip(node, [("ASKING",), *commands]))[1:]

    return await arun_script(node_scripts(node), roundtrip, call, args)


async def arun_cluster(client: Any, call: Call, args: tuple[Any, ...]) -> Any:
    """One call on the primary of its slot, following MOVED/ASK/TRYAGAIN (see cluster.py)."""
    await client.initialize()  # the slot map, read on first use (a no-op afterwards)
    slot = slot_of(call)
    asking: Any = None
    retried_read = False
    for attempt in range(MAX_REDIRECTS):
        try:
            if asking is not None:
                return await _run_on(asking, call, args, asking=True)
            node = node_for(client, slot)
            return await _run_on(node, call, args, asking=False)
        except rexc.AskError as exc:
            if isinstance(exc, rexc.MovedError):
                client.nodes_manager.move_slot(exc)
                asking = None
            else:
                asking = await _node(client, exc.host, exc.port)
        except rexc.TryAgainError:
            await asyncio.sleep(TRYAGAIN_PAUSE * (attempt + 1))
            asking = None
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError):
            await _refresh(client)
            if is_read_only(call) and not retried_read:
                retried_read = True  # a read run twice changes nothing: once more
                continue
            raise
    raise rexc.ConnectionError(f"the slot of {call.keys[0]!r} was redirected or busy "
                               f"(TRYAGAIN) {MAX_REDIRECTS} times: a resharding is in "
                               "progress; nothing ran, retry later")


async def arun_many(client: Any, sent: Sequence[tuple[Call, tuple[Any, ...]]]
                    ) -> tuple[list[Any], int]:
    """``ClusterTransport.run_many`` awaited: each node's calls in one pipeline, the nodes
    concurrently; redirected or refused calls resent alone."""
    await client.initialize()
    by_node: dict[str, tuple[Any, list[int]]] = {}
    for index, (call, _args) in enumerate(sent):
        node = node_for(client, slot_of(call))
        by_node.setdefault(node.name, (node, []))[1].append(index)
    replies: list[Any] = [None] * len(sent)

    async def send(node: Any, indexes: list[int]) -> None:
        scripts = node_scripts(node)
        got = await arun_script_many(scripts, node, [sent[i] for i in indexes])
        for index, reply in zip(indexes, got):
            replies[index] = reply

    try:
        await asyncio.gather(*(send(node, indexes) for node, indexes in by_node.values()))
    except (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError):
        await _refresh(client)
        raise
    round_trips = len(by_node)
    for index, reply in enumerate(replies):
        if isinstance(reply, (rexc.AskError, rexc.TryAgainError)):  # MOVED is an AskError
            round_trips += 1
            try:
                replies[index] = await arun_cluster(client, *sent[index])
            except rexc.ResponseError as exc:  # the call ran and failed: its error
                replies[index] = exc
    return replies, round_trips


async def arun_script_many(scripts: ServerScripts, node: Any,
                           sent: Sequence[tuple[Call, tuple[Any, ...]]]) -> list[Any]:
    """``ServerScripts.run_many`` with ``await`` (one pipeline; NOSCRIPT -> EVAL alone)."""
    batches = [scripts.batch(call.script, call.keys, args) for call, args in sent]
    replies = await node_roundtrip(node, [c for batch in batches for c in batch.commands])
    results: list[Any] = []
    position = 0
    for (call, args), batch in zip(sent, batches):
        reply = scripts.settle(batch, replies[position:position + len(batch.commands)])
        position += len(batch.commands)
        if isinstance(reply, rexc.NoScriptError):
            again = scripts.after_noscript(call.script, call.keys, args)
            reply = scripts.settle(again, await node_roundtrip(node, again.commands))
        results.append(reply)
    return results


async def _node(client: Any, host: str, port: int) -> Any:
    node = client.nodes_manager.get_node(host=host, port=port)
    if node is None:
        await client.nodes_manager.initialize()
        node = client.nodes_manager.get_node(host=host, port=port)
    if node is None:
        raise rexc.ConnectionError(f"redirected to {host}:{port}, which is not in the "
                                   "cluster's node table")
    return node


async def _refresh(client: Any) -> None:
    # still failing over (no node answers, a slot unserved): the next call asks again
    with contextlib.suppress(rexc.RedisError, rexc.RedisClusterException):
        await client.nodes_manager.initialize()
