"""Which scripts each server has, and what to send so a call stays one round trip.

Decisions only: this module builds the commands to send and reads their replies;
the transports (``lean.py``, ``plain.py``) do the socket work and the run loop
(``sync.py``) ties the two together, so an asyncio or a cluster loop reuses it.

- The first use of a script on a server sends ``SCRIPT LOAD`` and ``EVALSHA``
  together, in one round trip. ``SCRIPT LOAD`` keeps the script for good (Redis
  7.4+ keeps scripts cached by ``EVAL`` only in a bounded LRU).
- The first call to a server also asks ``INFO memory`` in that same round trip,
  to warn once when ``maxmemory-policy`` is not ``noeviction``.
- A named ACL user is taken to hold the documented least-privilege rule (``EVALSHA``,
  ``EVAL`` and data commands; no ``SCRIPT LOAD``, no ``INFO``): nothing it may not run is
  sent (security teams watch ``ACL LOG``), first use is ``EVAL``, which runs the script and
  caches it in one command, and the eviction policy is not asked. A ``SCRIPT LOAD``
  refused with NOPERM anyway switches that server to ``EVAL`` on first use too.
- ``NOSCRIPT`` (after ``SCRIPT FLUSH``, a restart, a failover) forgets what the
  server had and answers with ``EVAL``: a flush cannot slip in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis.exceptions as rexc

from ..core.lua import Script
from ..core.plan import Call

Command = tuple[Any, ...]
Roundtrip = Callable[[Sequence[Command]], list[Any]]  # commands -> replies, error replies as values
logger = logging.getLogger("repocket")

SCRIPT_LOAD = ("SCRIPT", "LOAD")
INFO_MEMORY = ("INFO", "memory")


def evalsha_command(script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Command:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def eval_command(script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Command:
    return ("EVAL", script.source, len(keys), *keys, *args)


class Batch(NamedTuple):
    """Commands sent in one round trip: an optional prelude, then the call itself (last)."""

    commands: list[Command]
    script: Script
    asks_policy: bool = False  # the first command is INFO memory
    loads: bool = False        # a SCRIPT LOAD comes before the call
    evals: bool = False        # the call is EVAL (it caches the script as it runs)


FULL, LEAST_PRIVILEGE, BARE = "full", "least-privilege", "bare"


class ServerScripts:
    """What one server is known to have, for one kind of client: ``FULL`` (may run SCRIPT
    LOAD and INFO), ``LEAST_PRIVILEGE`` (a named ACL user: EVAL on first use, nothing else)
    or ``BARE`` (clients whose commands may reach several nodes, and stand-ins: EVALSHA,
    and EVAL after NOSCRIPT, nothing else)."""

    def __init__(self, name: str, mode: str = FULL):
        self.name = name
        self.preload = mode != BARE
        self.loaded: set[str] = set()
        self.load_refused = mode == LEAST_PRIVILEGE  # EVAL on first use instead of SCRIPT LOAD
        self.policy_known = mode != FULL
        self._lock = threading.Lock()  # only the rare state changes that log take it

    def run(self, roundtrip: Roundtrip, call: Call, args: Sequence[Any]) -> Any:
        """One call's reply (``args`` its ARGV): one round trip, two when the server answers
        NOSCRIPT. (An asyncio loop writes these lines again with ``await roundtrip(...)``.)"""
        batch = self.batch(call.script, call.keys, args)
        reply = self.settle(batch, roundtrip(batch.commands))
        if isinstance(reply, rexc.NoScriptError):
            batch = self.after_noscript(call.script, call.keys, args)
            reply = self.settle(batch, roundtrip(batch.commands))
        if isinstance(reply, Exception):
            raise reply
        return reply

    def run_many(self, roundtrip: Roundtrip,
                 sent: Sequence[tuple[Call, Sequence[Any]]]) -> list[Any]:
        """Several calls' replies (each ``(call, ARGV)``), in one round trip: what each
        would carry alone, concatenated; a call answered NOSCRIPT is resent alone as EVAL.
        Error replies are returned as exception instances, in their call's place."""
        batches = [self.batch(call.script, call.keys, args) for call, args in sent]
        replies = roundtrip([command for batch in batches for command in batch.commands])
        results: list[Any] = []
        position = 0
        for (call, args), batch in zip(sent, batches):
            reply = self.settle(batch, replies[position:position + len(batch.commands)])
            position += len(batch.commands)
            if isinstance(reply, rexc.NoScriptError):
                again = self.after_noscript(call.script, call.keys, args)
                reply = self.settle(again, roundtrip(again.commands))
            results.append(reply)
        return results

    def batch(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Batch:
        """What to send for one call."""
        if (script.sha in self.loaded and self.policy_known) or not self.preload:
            return Batch([evalsha_command(script, keys, args)], script)
        prelude: list[Command] = [] if self.policy_known else [INFO_MEMORY]
        if script.sha in self.loaded:
            call, loads, evals = evalsha_command(script, keys, args), False, False
        elif self.load_refused:
            call, loads, evals = eval_command(script, keys, args), False, True
        else:
            prelude.append((*SCRIPT_LOAD, script.source))
            call, loads, evals = evalsha_command(script, keys, args), True, False
        return Batch([*prelude, call], script, not self.policy_known, loads, evals)

    def after_noscript(self, script: Script, keys: Sequence[Any],
                       args: Sequence[Any]) -> Batch:
        """The server lost its scripts (flush, restart, failover): forget them all, EVAL."""
        self.forget()
        return Batch([eval_command(script, keys, args)], script, evals=True)

    def forget(self) -> None:
        """The server may have lost its script cache (a restart behind a dropped connection)."""
        if self.loaded:
            self.loaded = set()

    def settle(self, batch: Batch, replies: Sequence[Any]) -> Any:
        """Learn from the prelude's replies; return the call's reply (an error reply is
        returned as the exception instance)."""
        position = 0
        if batch.asks_policy:
            self._learn_policy(replies[0])
            position = 1
        if batch.loads:
            self._learn_load(batch.script, replies[position])
        reply = replies[-1]
        if batch.evals and self.load_refused and not isinstance(reply, Exception):
            self.loaded.add(batch.script.sha)  # EVAL cached it; SCRIPT LOAD is not allowed
        return reply

    def _learn_load(self, script: Script, reply: Any) -> None:
        if not isinstance(reply, Exception):
            self.loaded.add(script.sha)
        elif isinstance(reply, rexc.NoPermissionError) and not self.load_refused:
            self.load_refused = True
            logger.debug("repocket: %s refuses SCRIPT LOAD (%s); scripts are cached with "
                         "EVAL on first use", self.name, reply)

    def _learn_policy(self, reply: Any) -> None:
        with self._lock:
            if self.policy_known:
                return
            self.policy_known = True
        if isinstance(reply, Exception):
            logger.debug("repocket: cannot read INFO memory on %s (%s); the eviction "
                         "policy is not checked", self.name, reply)
            return
        policy = eviction_policy(reply)
        if policy is not None and policy != "noeviction":
            logger.warning(
                "repocket: Redis at %s has maxmemory-policy %s; repocket needs noeviction. "
                "Under memory pressure Redis could evict a record but not its index entries "
                "or unique claims (or the reverse): counts would disagree with rows and "
                "evicted claims would still block values. Set maxmemory-policy noeviction "
                "(Redis recommends it for primary data).", self.name, policy)


def eviction_policy(info: Any) -> str | None:
    """``maxmemory_policy`` from an ``INFO memory`` reply (raw bytes, or redis-py's dict)."""
    if isinstance(info, dict):
        value = info.get("maxmemory_policy")
        return None if value is None else str(value)
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("maxmemory_policy:"):
            return line.split(":", 1)[1].strip()
    return None


class Registry:
    """The servers this process has talked to, by address (and kind of client)."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str], ServerScripts] = {}
        self._lock = threading.Lock()

    def server(self, name: str, mode: str = FULL) -> ServerScripts:
        found = self._servers.get((name, mode))
        if found is None:
            with self._lock:
                found = self._servers.setdefault((name, mode), ServerScripts(name, mode))
        return found

    def clear(self) -> None:
        """Forget every server (tests)."""
        with self._lock:
            self._servers.clear()


registry = Registry()


def client_mode(connection_kwargs: dict[str, Any]) -> str:
    """``LEAST_PRIVILEGE`` for a named ACL user (or credentials only a provider knows)."""
    if connection_kwargs.get("credential_provider") is not None:
        return LEAST_PRIVILEGE
    username = connection_kwargs.get("username")
    return LEAST_PRIVILEGE if username and username != "default" else FULL


def server_name(connection_kwargs: dict[str, Any]) -> str:
    """A server's address from a pool's connection settings: its unix socket or host:port."""
    path = connection_kwargs.get("path")
    if path:
        return f"unix:{path}"
    return f"{connection_kwargs.get('host', 'localhost')}:{connection_kwargs.get('port', 6379)}"
