"""The change feed of a ``Meta.changes`` model, read as plans. No I/O here.

The model's write scripts append the entries (XADD, in the script that writes: see
``luagen``); what is here reads them: ``Model.objects.changes()`` (XRANGE, or XREAD
when it waits for new ones) and consumer groups (XREADGROUP, XACK, XAUTOCLAIM) for
at-least-once processing across workers. Each read is a plain command, one round trip;
the executors in ``repocket.exec`` (sync and asyncio) run the same plans.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidQuery, RepocketError
from .lua import SCRIPTS
from .plan import Call, Command, Emit, Plan

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

OPS = ("create", "update", "delete", "expire")
DEFAULT_COUNT = 100  # entries one read asks for


@dataclass(frozen=True)
class Change:
    """One committed write, as the feed recorded it.

    ``id`` is the stream entry's id (``'1733130000000-0'``: milliseconds, sequence; pass
    it as ``since`` to read what came after), ``op`` one of ``'create'``, ``'update'``,
    ``'delete'`` (``'expire'`` for a record that expired), ``record_id`` the record's id,
    ``fields`` the names of the fields the write set, cleared or appended to (empty for a
    delete), ``version`` the record's version after the write under
    ``Meta.optimistic_lock`` (else None; None too for an append, which keeps it)."""

    id: str
    op: str
    record_id: uuid.UUID
    fields: tuple[str, ...]
    version: int | None
    model: str


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _field(entry: dict[Any, Any], name: str) -> Any:
    """A field of an entry whatever the client decodes (bytes keys, or str ones)."""
    return entry.get(name.encode(), entry.get(name))


def parse_change(model: str, entry_id: Any, entry: dict[Any, Any] | None) -> Change | None:
    """The Change of a stream entry; None for one trimmed away since it was delivered (a
    consumer group's pending entry whose data is gone)."""
    op = _field(entry or {}, "op")
    if op is None:
        return None
    fields = _text(_field(entry or {}, "fields") or b"")
    version = _field(entry or {}, "version")
    return Change(id=_text(entry_id), op=_text(op),
                  record_id=uuid.UUID(_text(_field(entry or {}, "id"))),
                  fields=tuple(fields.split(",")) if fields else (),
                  version=None if version is None else int(_text(version)), model=model)


def stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    """The (id, fields) entries of an XREAD/XREADGROUP reply of one stream, as redis-py
    parses it: a list of [key, entries] in RESP2, {key: [entries]} in RESP3; None when
    nothing came."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(next(iter(reply.values()))[0])
    return list(reply[0][1])


def feed_key(model: type[ActiveRecord], count: int, block: int | None) -> str:
    meta = model._meta
    if not meta.changes:
        raise InvalidQuery(f"{meta.name} has no change feed: declare Meta.changes = True")
    meta.refuse_on_cluster("reading the change feed")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidQuery(f"count must be a positive integer, not {count!r}")
    if block is not None and (isinstance(block, bool) or not isinstance(block, int)
                              or block < 0):
        raise InvalidQuery(f"block must be None or milliseconds (an integer >= 0), not "
                           f"{block!r}")
    return meta.changes_key


_ENTRY_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_MAX_ID_PART = 2**64 - 1  # each part of a stream entry id is an unsigned 64-bit integer


def checked_entry_id(model: type[ActiveRecord], what: str, value: Any) -> str:
    """``value`` as a stream entry id (``'<ms>-<seq>'``, ``'<ms>'``) or ``'$'``, refused
    before anything is sent (Redis would answer with an untyped error)."""
    text = value if isinstance(value, str) else (
        str(value) if isinstance(value, int) and not isinstance(value, bool) else None)
    if text is not None:
        found = _ENTRY_ID.fullmatch(text)
        if text == "$" or (found is not None and all(
                int(part) <= _MAX_ID_PART for part in found.groups() if part is not None)):
            return text
    raise InvalidQuery(f"{model._meta.name}: {what} must be a stream entry id ('<ms>-<seq>', "
                       f"as Change.id gives) or '$', not {value!r}",
                       model=model._meta.name, field=what, value=value)


def changes_plan(model: type[ActiveRecord], since: str | Change | None, block: int | None,
                 count: int) -> Plan:
    """The entries after ``since`` (an entry id or a Change; None: the oldest kept;
    ``'$'``: only those appended from now on), ``count`` per round trip, emitted as they
    come. Without ``block`` it ends when none is left; with it, a read with nothing new
    waits up to ``block`` ms (XREAD BLOCK) and the plan ends when a wait brings nothing."""
    key = feed_key(model, count, block)
    name = model._meta.name
    cursor = ("0-0" if since is None else since.id if isinstance(since, Change)
              else checked_entry_id(model, "since", since))
    if cursor == "$":  # now: the last entry's id, so no entry slips between two reads
        last = yield Command(("XREVRANGE", key, "+", "-", "COUNT", 1), name)
        cursor = _text(last[0][0]) if last else "0-0"
    while True:
        if block is None:
            entries = yield Command(("XRANGE", key, f"({cursor}", "+", "COUNT", count), name)
        else:
            reply = yield Command(("XREAD", "COUNT", count, "BLOCK", block, "STREAMS", key,
                                   cursor), name)
            entries = stream_entries(reply)
        if not entries:
            return None
        cursor = _text(entries[-1][0])
        found = [parse_change(name, entry_id, fields) for entry_id, fields in entries]
        yield Emit([change for change in found if change is not None])
        if block is None and len(entries) < count:
            return None  # a short page: the end of the feed, no empty read to learn it


# -- consumer groups --------------------------------------------------------------------------
def ensure_group_call(model: type[ActiveRecord], group: str, start: str) -> Call:
    """The group, created at ``start`` if it does not exist (lua/feed_group.lua)."""
    meta = model._meta
    return Call(SCRIPTS["feed_group"], (meta.changes_key,), (group, start),
                lambda reply: int(reply), meta.name)


def group_read_plan(model: type[ActiveRecord], group: str, consumer: str, count: int,
                    block: int | None, min_idle: int | None, own_pending: bool) -> Plan:
    """One batch for ``consumer``: entries other consumers left pending longer than
    ``min_idle`` ms (XAUTOCLAIM: a worker that died before acknowledging them), else
    with ``own_pending`` those delivered to this consumer and not acknowledged (a worker
    that restarts under its name), else new ones (XREADGROUP >, waiting up to ``block``
    ms). Trimmed entries among the pending are acknowledged and left out. Returns the
    Changes (their ids are what ``ack`` takes)."""
    key = feed_key(model, count, block)
    name = model._meta.name
    if min_idle is not None:
        if isinstance(min_idle, bool) or not isinstance(min_idle, int) or min_idle < 0:
            raise InvalidQuery(f"min_idle must be milliseconds (an integer >= 0), not "
                               f"{min_idle!r}")
        claimed = yield Command(("XAUTOCLAIM", key, group, consumer, min_idle, "0-0",
                                 "COUNT", count), name)
        changes = yield from _kept(model, group, list(claimed[1]))
        if changes:
            return changes
    if own_pending:
        reply = yield Command(("XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                               "STREAMS", key, "0"), name)
        changes = yield from _kept(model, group, stream_entries(reply))
        if changes:
            return changes
    args: tuple[Any, ...] = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count)
    if block is not None:
        args += ("BLOCK", block)
    reply = yield Command((*args, "STREAMS", key, ">"), name)
    changes = yield from _kept(model, group, stream_entries(reply))
    return changes


def _kept(model: type[ActiveRecord], group: str, entries: list[tuple[Any, Any]]) -> Plan:
    """The Changes of ``entries``; the ids of trimmed ones (no data left) acknowledged."""
    name = model._meta.name
    found = [(entry_id, parse_change(name, entry_id, fields)) for entry_id, fields in entries
             if entry_id is not None]
    gone = [entry_id for entry_id, change in found if change is None]
    if gone:
        yield Command(("XACK", model._meta.changes_key, group, *gone), name)
    return [change for _, change in found if change is not None]


def ack_command(model: type[ActiveRecord], group: str, changes: Iterable[Change]) -> Command:
    ids = [change.id for change in changes]
    return Command(("XACK", model._meta.changes_key, group, *ids), model._meta.name)


def pending_command(model: type[ActiveRecord], group: str) -> Command:
    return Command(("XPENDING", model._meta.changes_key, group), model._meta.name)


def pending_count(reply: Any) -> int:
    """The number of entries delivered and not acknowledged, from XPENDING's summary (a
    dict as redis-py parses it, or the raw list)."""
    if isinstance(reply, dict):
        return int(reply.get("pending", 0))
    if isinstance(reply, (list, tuple)) and reply:
        return int(reply[0])
    raise RepocketError(f"XPENDING replied {reply!r}")
