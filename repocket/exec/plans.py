"""The sync driver of plans: operations of several calls (bulk batches, queryset
delete and iterator, the checker), written once as generators in the core and
run here step by step; ``repocket.exec.aio`` drives the same generators."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import redis
import redis.exceptions as rexc

from .. import errors
from ..core.lua import Script
from ..core.plan import Call, Command, Emit, Plan
from .guard import refuse_in_event_loop
from .sync import execute, run_plain
from .translate import translate_error


def command_error(exc: rexc.RedisError, command: Command) -> errors.RepocketError:
    """The repocket error for a plain command, mapped as a call named after it would be."""
    named = Call(Script(str(command.args[0]), "", ""), (), (), lambda reply: reply, command.model)
    return translate_error(exc, named)


def run_command(client: redis.Redis, command: Command) -> Any:
    refuse_in_event_loop(f"{command.model}.{command.args[0]}")
    try:
        return run_plain(client, command.args)
    except rexc.RedisError as exc:
        raise command_error(exc, command) from exc


def stream_plan(client: redis.Redis, plan: Plan) -> Generator[Any, None, Any]:
    """Run a plan, yielding what it emits; returns (StopIteration.value) its result."""
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration as done:
            return done.value
        if isinstance(step, Emit):
            reply = None
            yield from step.items
        elif isinstance(step, Command):
            reply = run_command(client, step)
        else:
            reply = execute(client, step)


def run_plan(client: redis.Redis, plan: Plan) -> Any:
    """Run a plan to its end and return its result."""
    stream = stream_plan(client, plan)
    while True:
        try:
            next(stream)
        except StopIteration as done:
            return done.value
