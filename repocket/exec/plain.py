"""Round trips through redis-py's own client calls: the path for clients whose features the
lean path does not reproduce (see ``lean.why_not_lean``). Slower per call (a pooled
connection taken and returned each time), and it honours everything the client was
configured with, retries included.

A transport sends a list of commands in one round trip and returns their replies, an
error reply as the exception instance; anything else (a dropped connection, a timeout)
is raised.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.exceptions as rexc

from ..core.plan import Call
from .registry import Command, ServerScripts


class RedisPyTransport:
    """A ``redis.Redis`` client: one command as a plain call, several as one pipeline."""

    def run(self, call: Call, args: tuple[Any, ...]) -> Any:
        return self.scripts.run(self.roundtrip, call, args)

    def __init__(self, client: redis.Redis, scripts: ServerScripts):
        # Weak: the transport is looked up by client, and must not keep it alive.
        self._client = weakref.ref(client)
        self.scripts = scripts

    def client(self) -> redis.Redis:
        client = self._client()
        if client is None:  # only while the caller's client is being collected
            raise rexc.ConnectionError("the client was closed")
        return client

    def roundtrip(self, commands: Sequence[Command]) -> list[Any]:
        client = self.client()
        if len(commands) == 1:
            try:
                return [client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
            except rexc.ResponseError as exc:
                return [exc]
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return list(pipe.execute(raise_on_error=False))


class BareTransport:
    """Any other client with ``evalsha``/``eval`` (a cluster client, whose commands go to the
    node of their keys; a test stand-in): EVALSHA, and EVAL after NOSCRIPT, nothing else."""

    def run(self, call: Call, args: tuple[Any, ...]) -> Any:
        return self.scripts.run(self.roundtrip, call, args)

    def __init__(self, client: Any, scripts: ServerScripts):
        self._client = weakref.ref(client)
        self.scripts = scripts

    def roundtrip(self, commands: Sequence[Command]) -> list[Any]:
        client = self._client()
        if client is None:
            raise rexc.ConnectionError("the client was closed")
        (name, first, *rest), = commands
        method = client.evalsha if name == "EVALSHA" else client.eval
        try:
            return [method(first, *rest)]
        except rexc.ResponseError as exc:
            return [exc]
