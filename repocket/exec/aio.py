"""The asyncio executor: runs the same Calls and plans as the sync one, on
``redis.asyncio``. The decisions are shared with the sync executor, not copied:
what each round trip carries is asked of the same per-server registry object
(``registry.ServerScripts``: SCRIPT LOAD with the first EVALSHA, INFO memory once,
EVAL for named ACL users, NOSCRIPT -> EVAL), the replies are decoded by the Call
(the core), errors mapped by ``translate.translate_error``, plain commands by
``plans.command_error``; only the awaiting is here.

Cancellation: a script runs atomically on the server, so a cancelled call either
ran whole or not at all; it is never resent (no retries, and a follow-up call is
only made from a reply). redis-py closes a connection cancelled while it awaited
a reply, so no connection returns to the pool with an unread reply.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from ..core.plan import DEFAULT_MAX_BYTES, Call, Command, Emit, Gather, Plan
from ..errors import RepocketError
from . import observe
from .acluster import arun_cluster, arun_many
from .limits import _MAX_BYTES, may_read_config
from .plans import command_error
from .registry import BARE, ServerScripts, client_mode, registry, server_name
from .registry import Command as Sent
from .translate import translate_error

ARoundtrip = Callable[[Sequence[Sent]], Awaitable[list[Any]]]


async def arun_script(scripts: ServerScripts, roundtrip: ARoundtrip, call: Call,
                      args: tuple[Any, ...]) -> Any:
    """``ServerScripts.run`` with ``await``: the registry decides what a round trip carries
    and reads what comes back. One round trip, two when the server answers NOSCRIPT."""
    batch = scripts.batch(call.script, call.keys, args)
    reply = scripts.settle(batch, await roundtrip(batch.commands))
    if isinstance(reply, rexc.NoScriptError):
        batch = scripts.after_noscript(call.script, call.keys, args)
        reply = scripts.settle(batch, await roundtrip(batch.commands))
    if isinstance(reply, Exception):
        raise reply
    return reply


async def aroundtrip(client: redis.asyncio.Redis, commands: Sequence[Sent]) -> list[Any]:
    """Send ``commands`` in one write on one connection (a pipeline when there are several);
    error replies come back as values. Anything else (a timeout, a dropped connection,
    a cancellation) raises, and redis-py closes that connection."""
    if len(commands) == 1:
        try:
            return [await client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
        except rexc.ResponseError as exc:
            return [exc]
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(await pipe.execute(raise_on_error=False))


async def abare_roundtrip(client: Any, commands: Sequence[Sent]) -> list[Any]:
    """Any other client with ``evalsha``/``eval`` (a cluster client): one command."""
    (name, first, *rest), = commands
    method = client.evalsha if name == "EVALSHA" else client.eval
    try:
        return [await method(first, *rest)]
    except rexc.ResponseError as exc:
        return [exc]


_STANDARD_POOLS = (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)
_scripts_of: weakref.WeakKeyDictionary[Any, ServerScripts] = weakref.WeakKeyDictionary()


def server_scripts(client: Any) -> ServerScripts:
    """The registry's record of ``client``'s server: the object the sync executor uses for
    the same server (a script loaded by either is known to both)."""
    try:
        return _scripts_of[client]
    except (KeyError, TypeError):
        pass
    if not isinstance(client, redis.asyncio.Redis):
        scripts = registry.server(f"client-{id(client)}", BARE)
    else:
        pool = client.connection_pool
        # A Sentinel or custom pool may move between servers: its scripts are tracked per pool.
        standard = type(pool) in _STANDARD_POOLS
        name = server_name(pool.connection_kwargs) if standard else f"pool-{id(pool)}"
        scripts = registry.server(name, client_mode(pool.connection_kwargs))
    with contextlib.suppress(TypeError):  # not weakly referenceable: looked up each time
        _scripts_of[client] = scripts
    return scripts


async def arun_call(client: Any, call: Call, args: tuple[Any, ...]) -> Any:
    """One call's reply: what the registry says to send, on ``client``."""
    if isinstance(client, AsyncRedisCluster):
        return await arun_cluster(client, call, args)
    scripts = server_scripts(client)
    if isinstance(client, redis.asyncio.Redis):
        return await arun_script(scripts, lambda commands: aroundtrip(client, commands),
                                 call, args)
    return await arun_script(scripts, lambda commands: abare_roundtrip(client, commands),
                             call, args)


async def aexecute(client: redis.asyncio.Redis, call: Call | Gather) -> Any:
    """Run a compiled operation and its follow-ups; return the decoded result."""
    if not isinstance(call, (Call, Gather)):  # a result known already (cached): nothing to run
        return call
    name = call.script.name if isinstance(call, Call) else call.name
    watch = observe.start(name, call.model)
    try:
        result = await _afinish(client, call, watch)
    except BaseException as exc:  # CancelledError too: the hook hears of a cancelled call
        if watch is not None:
            watch.finish(exc)
        raise
    if watch is not None:
        watch.finish(None)
    return result


async def _afinish(client: Any, result: Any, watch: Any) -> Any:
    """Run ``result`` (a Call, a Gather's calls one after the other, or a result already)
    and its follow-ups."""
    while True:
        if isinstance(result, Call):
            call = result
            if watch is not None:
                watch.round_trips += 1
            try:
                args = call.args
                if call.args_for_limit is not None:
                    args = call.args_for_limit(await amax_bytes(client))
                reply = await arun_call(client, call, args)
            except rexc.RedisError as exc:
                raise translate_error(exc, call) from exc
            result = call.decode(reply)
        elif isinstance(result, Gather):
            result = result.combine(await _agathered(client, result, watch))
        else:
            return result


async def _agathered(client: Any, gather: Gather, watch: Any) -> list[Any]:
    """``sync._gathered`` awaited: on a cluster each node's calls in one pipeline, the nodes
    concurrently; elsewhere one after the other."""
    if not isinstance(client, AsyncRedisCluster):
        return [await _afinish(client, call, watch) for call in gather.calls]
    sent = [(call, call.args if call.args_for_limit is None
             else call.args_for_limit(await amax_bytes(client))) for call in gather.calls]
    try:
        replies, round_trips = await arun_many(client, sent)
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
            results.append(await _afinish(client, call.decode(reply), watch))
        except RepocketError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return results


async def amax_bytes(client: Any) -> int:
    """``limits.max_bytes`` for an asyncio client (same cache, same rule)."""
    limit = _MAX_BYTES.get(client)
    if limit is None:
        limit = DEFAULT_MAX_BYTES
        if may_read_config(client):
            try:
                reply: dict[Any, Any] = await client.config_get("proto-max-bulk-len")
                limit = int(reply.get("proto-max-bulk-len") or DEFAULT_MAX_BYTES)
            except (rexc.ResponseError, ValueError, TypeError):
                pass
        _MAX_BYTES[client] = limit
    return limit


async def arun_command(client: redis.asyncio.Redis, command: Command) -> Any:
    try:
        return await client.execute_command(*command.args)  # type: ignore[no-untyped-call]
    except rexc.RedisError as exc:
        raise command_error(exc, command) from exc


async def _step(client: redis.asyncio.Redis, step: Call | Command | Gather) -> Any:
    if isinstance(step, Command):
        return await arun_command(client, step)
    return await aexecute(client, step)


async def arun_plan(client: redis.asyncio.Redis, plan: Plan) -> Any:
    """Run a plan to its end and return its result."""
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration as done:
            return done.value
        reply = None if isinstance(step, Emit) else await _step(client, step)


async def astream_plan(client: redis.asyncio.Redis, plan: Plan) -> AsyncIterator[Any]:
    """Run a plan, yielding what it emits (its result is dropped)."""
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration:
            return
        if isinstance(step, Emit):
            reply = None
            for item in step.items:
                yield item
        else:
            reply = await _step(client, step)
