"""The refusal of sync I/O inside a running event loop.

A synchronous redis-py call made from a coroutine blocks the whole loop (every
other task waits for the reply); it is the mistake asyncio code makes without
seeing it, most often through an implicit load (a Pointer beyond
``pointer_depth``, a deferred field). So repocket's sync executor refuses to run
inside a running loop and raises :class:`~repocket.errors.SyncInEventLoop`
naming the async form, as Django does. Code that knowingly blocks (a notebook, a
startup script) opts out: ``configure.allow_sync_in_event_loop()`` or
``REPOCKET_ALLOW_SYNC_IN_EVENT_LOOP=1``.
"""

from __future__ import annotations

import asyncio
import os

from ..errors import SyncInEventLoop

_allowed = os.environ.get("REPOCKET_ALLOW_SYNC_IN_EVENT_LOOP", "") not in ("", "0")


def allow_sync_in_event_loop(allowed: bool = True) -> None:
    global _allowed
    _allowed = allowed


def in_event_loop() -> bool:
    """True when a loop runs in this thread and sync I/O is not allowed in it."""
    return not _allowed and asyncio._get_running_loop() is not None


def refuse_in_event_loop(what: str,
                         instead: str = "the async API (asave, aget, alist...)") -> None:
    if in_event_loop():
        raise SyncInEventLoop(
            f"{what} is a synchronous call inside a running event loop, where it would "
            f"block every task until Redis answers; use {instead}. (To block knowingly: "
            "configure.allow_sync_in_event_loop() or REPOCKET_ALLOW_SYNC_IN_EVENT_LOOP=1.)")
