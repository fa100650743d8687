"""The asyncio executor: runs the same Calls and plans as the sync one, on
``redis.asyncio``. The decisions are shared with the sync executor, not copied:
the replies are decoded by the Call (the core), errors mapped by
``scripts.translate_error``, plain commands by ``plans.command_error``; only the
awaiting is here.

Cancellation: a script runs atomically on the server, so a cancelled call either
ran whole or not at all; it is never resent (no retries, and a follow-up call is
only made from a reply). redis-py closes a connection cancelled while it awaited
a reply, so no connection returns to the pool with an unread reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
import redis.exceptions as rexc

from ..core.lua import Script
from ..core.plan import DEFAULT_MAX_BYTES, Call, Command, Emit, Plan
from . import observe
from .limits import _MAX_BYTES, may_read_config
from .plans import command_error
from .translate import translate_error


async def aevalsha(client: redis.asyncio.Redis, script: Script, keys: tuple[Any, ...],
                   args: tuple[Any, ...]) -> Any:
    """EVALSHA, and EVAL when the server does not know the script (as the sync
    ``scripts.evalsha``): a NOSCRIPT reply means the script did not run."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except rexc.NoScriptError:
        return await client.eval(script.source, len(keys), *keys, *args)


async def aexecute(client: redis.asyncio.Redis, call: Call) -> Any:
    """Run a compiled operation and its follow-ups; return the decoded result."""
    if not isinstance(call, Call):  # a result known already (cached): nothing to run
        return call
    watch = observe.start(call.script.name, call.model)
    try:
        result: Any = call
        while isinstance(result, Call):
            call = result
            if watch is not None:
                watch.round_trips += 1
            try:
                args = call.args
                if call.args_for_limit is not None:
                    args = call.args_for_limit(await amax_bytes(client))
                reply = await aevalsha(client, call.script, call.keys, args)
            except rexc.RedisError as exc:
                raise translate_error(exc, call) from exc
            result = call.decode(reply)
    except BaseException as exc:  # CancelledError too: the hook hears of a cancelled call
        if watch is not None:
            watch.finish(exc)
        raise
    if watch is not None:
        watch.finish(None)
    return result


async def amax_bytes(client: redis.asyncio.Redis) -> int:
    """``scripts.max_bytes`` for an asyncio client (same cache, same rule)."""
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


async def _step(client: redis.asyncio.Redis, step: Call | Command) -> Any:
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
