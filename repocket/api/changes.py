"""The change feed of a ``Meta.changes`` model: ``Model.objects.changes()`` reads it, a
:class:`ChangeGroup` (``Model.objects.change_group(name)``) shares it among workers with
at-least-once delivery. Sync and asyncio run the same plans (``core/changes.py``)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..connections import configure
from ..core import changes as feed
from ..core.changes import Change
from ..errors import InvalidQuery
from ..exec.aio import aexecute, arun_plan
from ..exec.plans import run_plan, stream_plan
from ..exec.sync import execute

if TYPE_CHECKING:
    from .model import ActiveRecord

__all__ = ["Change", "ChangeGroup", "read_changes"]


def read_changes(model: type[ActiveRecord], since: str | Change | None, block: int | None,
                 count: int) -> Iterator[Change]:
    feed.feed_key(model, count, block)  # refused now, not at the first next()
    return stream_plan(configure.get_connection(), feed.changes_plan(model, since, block, count))


class ChangeGroup:
    """A consumer group of a model's change feed: each entry goes to one of the group's
    consumers (workers, by name) and stays pending until acknowledged, so an entry a
    worker took and never acknowledged (it crashed) is delivered again: to the same name
    when it comes back, or to another worker through ``min_idle``. At least once: a
    handler may see an entry twice, never zero times (unless the feed, bounded by
    ``Meta.changes_maxlen``, trimmed it first).

    ``Model.objects.change_group(name, start)`` creates the group in Redis if it is
    missing, at ``start``: ``'0'`` every entry the feed keeps, ``'$'`` only entries
    appended from then on (a group made here is created on its first read)."""

    def __init__(self, model: type[ActiveRecord], name: str, start: str = "0"):
        if not isinstance(name, str) or not name:
            raise InvalidQuery(f"a consumer group needs a name, not {name!r}")
        feed.feed_key(model, 1, None)
        feed.checked_entry_id(model, "start", start)
        self.model, self.name, self.start = model, name, start
        self._ready = False
        self._resumed: set[str] = set()  # consumers whose own pending entries were read

    def _plan(self, consumer: str, count: int, block: int | None,
              min_idle: int | None) -> Any:
        if not isinstance(consumer, str) or not consumer:
            raise InvalidQuery(f"a consumer needs a name, not {consumer!r}")
        # its own pending entries first, once per consumer (a worker restarting under its
        # name resumes what it took), and after a batch it did not acknowledge whole
        own = consumer not in self._resumed
        self._resumed.add(consumer)
        return feed.group_read_plan(self.model, self.name, consumer, count, block, min_idle,
                                    own)

    # -- sync ----------------------------------------------------------------------------
    def create(self) -> None:
        """Create the group in Redis unless it exists (done once per object)."""
        if not self._ready:
            execute(configure.get_connection(),
                    feed.ensure_group_call(self.model, self.name, self.start))
            self._ready = True

    def read(self, consumer: str, count: int = feed.DEFAULT_COUNT, block: int | None = None,
             min_idle: int | None = None) -> list[Change]:
        """Up to ``count`` entries for ``consumer`` (one round trip, more when pending
        entries are looked at first): entries other consumers left unacknowledged for
        ``min_idle`` ms or more, else its own unacknowledged ones (on its first read),
        else new ones, waiting up to ``block`` ms for them. Acknowledge each with
        :meth:`ack` once processed."""
        plan = self._plan(consumer, count, block, min_idle)
        self.create()
        return run_plan(configure.get_connection(), plan)  # type: ignore[no-any-return]

    def ack(self, *changes: Change) -> int:
        """Mark entries processed (XACK): the number acknowledged now."""
        if not changes:
            return 0
        return int(run_plan(configure.get_connection(),
                            feed.ack_plan(self.model, self.name, changes)))

    def process(self, handler: Callable[[Change], Any], consumer: str,
                count: int = feed.DEFAULT_COUNT, block: int | None = None,
                min_idle: int | None = None) -> int:
        """One batch: :meth:`read`, ``handler(change)`` for each entry in order, and the
        entries it handled acknowledged in one XACK. When ``handler`` raises, the entries
        before are acknowledged, the rest stay pending (delivered again) and the error
        propagates. Returns how many were handled."""
        changes = self.read(consumer, count, block, min_idle)
        done: list[Change] = []
        try:
            for change in changes:
                handler(change)
                done.append(change)
        finally:
            self.ack(*done)
            if len(done) < len(changes):
                self._resumed.discard(consumer)  # what it left: its next read resumes it
        return len(done)

    def pending(self) -> int:
        """How many entries were delivered to the group's consumers and not acknowledged."""
        self.create()
        return int(run_plan(configure.get_connection(),
                            feed.pending_plan(self.model, self.name)))

    # -- asyncio ---------------------------------------------------------------------------
    async def acreate(self) -> None:
        if not self._ready:
            await aexecute(configure.get_async_connection(),
                           feed.ensure_group_call(self.model, self.name, self.start))
            self._ready = True

    async def aread(self, consumer: str, count: int = feed.DEFAULT_COUNT,
                    block: int | None = None, min_idle: int | None = None) -> list[Change]:
        """``read``, awaited."""
        plan = self._plan(consumer, count, block, min_idle)
        await self.acreate()
        return await arun_plan(configure.get_async_connection(),  # type: ignore[no-any-return]
                               plan)

    async def aack(self, *changes: Change) -> int:
        if not changes:
            return 0
        plan = feed.ack_plan(self.model, self.name, changes)
        return int(await arun_plan(configure.get_async_connection(), plan))

    async def aprocess(self, handler: Callable[[Change], Awaitable[Any] | Any],
                       consumer: str, count: int = feed.DEFAULT_COUNT,
                       block: int | None = None, min_idle: int | None = None) -> int:
        """``process``, awaited; ``handler`` may be a coroutine function."""
        changes = await self.aread(consumer, count, block, min_idle)
        done: list[Change] = []
        try:
            for change in changes:
                result = handler(change)
                if inspect.isawaitable(result):
                    await result
                done.append(change)
        finally:
            await self.aack(*done)
            if len(done) < len(changes):
                self._resumed.discard(consumer)
        return len(done)

    async def apending(self) -> int:
        await self.acreate()
        return int(await arun_plan(configure.get_async_connection(),
                                   feed.pending_plan(self.model, self.name)))
