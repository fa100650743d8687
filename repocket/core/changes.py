"""The change feed of a ``Meta.changes`` model, read as plans. No I/O here.

The model's write scripts append the entries (XADD, in the script that writes: see
``luagen``); what is here reads them: ``Model.objects.changes()`` (XRANGE, or XREAD
when it waits for new ones) and consumer groups (XREADGROUP, XACK, XAUTOCLAIM) for
at-least-once processing across workers. Each read is a plain command, one round trip;
the executors in ``repocket.exec`` (sync and asyncio) run the same plans.

On a Redis Cluster the feed is one stream per shard (the shard's hash tag: each write's
XADD stays in the write's script), and the same plans read every shard's stream:

- ``changes()`` keeps a cursor per shard (``since``, an entry id, applies to every
  shard) and emits the shards' entries merged by entry id: an entry is emitted once no
  shard can still hold an earlier one (those with a full page bound the merge; the rest
  is read again). Per record the order is exact (a record lives in one shard); across
  shards the ids come from each node's clock, so the order is only as close as the
  clocks. Waiting (``block``) is a blocking read of one shard at a time, WAIT_SLICE ms
  each, in turn, then all shards read again: a write in another shard is seen within
  about WAIT_SLICE ms;
- a consumer group is one group per shard stream (same name): a read takes pending and
  new entries from the shards in turn, up to ``count`` (a blocking wait as above), and
  each Change names its shard, so an ack goes to its stream.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidQuery, RepocketError
from . import keys as keyspace
from .lua import SCRIPTS
from .plan import Call, Command, Emit, Gather, Plan, gather

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

OPS = ("create", "update", "delete", "expire")
DEFAULT_COUNT = 100  # entries one read asks for
WAIT_SLICE = 100  # ms a blocking read waits on one shard's stream before the next (cluster)


@dataclass(frozen=True)
class Change:
    """One committed write, as the feed recorded it.

    ``id`` is the stream entry's id (``'1733130000000-0'``: milliseconds, sequence; pass
    it as ``since`` to read what came after), ``op`` one of ``'create'``, ``'update'``,
    ``'delete'`` (``'expire'`` for a record that expired), ``record_id`` the record's id,
    ``fields`` the names of the fields the write set, cleared or appended to (empty for a
    delete), ``version`` the record's version after the write under
    ``Meta.optimistic_lock`` (else None; None too for an append, which keeps it);
    ``shard`` the shard whose stream holds the entry on Redis Cluster (None on one
    server): entry ids are unique per shard only."""

    id: str
    op: str
    record_id: uuid.UUID
    fields: tuple[str, ...]
    version: int | None
    model: str
    shard: int | None = None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _field(entry: dict[Any, Any], name: str) -> Any:
    """A field of an entry whatever the client decodes (bytes keys, or str ones)."""
    return entry.get(name.encode(), entry.get(name))


def parse_change(model: str, entry_id: Any, entry: dict[Any, Any] | None,
                 shard: int | None = None) -> Change | None:
    """The Change of a stream entry (of ``shard``'s stream on a cluster); None for one
    trimmed away since it was delivered (a consumer group's pending entry whose data is
    gone)."""
    op = _field(entry or {}, "op")
    if op is None:
        return None
    fields = _text(_field(entry or {}, "fields") or b"")
    version = _field(entry or {}, "version")
    return Change(id=_text(entry_id), op=_text(op),
                  record_id=uuid.UUID(_text(_field(entry or {}, "id"))),
                  fields=tuple(fields.split(",")) if fields else (),
                  version=None if version is None else int(_text(version)), model=model,
                  shard=shard)


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
    """The model's feed on one server, checked with the arguments of a read."""
    return feed_keys(model, count, block)[0]


def feed_keys(model: type[ActiveRecord], count: int, block: int | None) -> list[str]:
    """The streams of the model's feed (one per shard on a cluster, shard by shard),
    checked with the arguments of a read."""
    meta = model._meta
    if not meta.changes:
        raise InvalidQuery(f"{meta.name} has no change feed: declare Meta.changes = True")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidQuery(f"count must be a positive integer, not {count!r}")
    if block is not None and (isinstance(block, bool) or not isinstance(block, int)
                              or block < 0):
        raise InvalidQuery(f"block must be None or milliseconds (an integer >= 0), not "
                           f"{block!r}")
    return [keyspace.changes_key(prefix) for prefix in meta.shard_prefixes()]


def _shard_key(model: type[ActiveRecord], shard: int | None) -> str:
    """The stream holding the entries of ``shard`` (None: the model's, one server)."""
    meta = model._meta
    if shard is None:
        return meta.changes_key
    return keyspace.changes_key(keyspace.shard_prefix(meta.prefix, shard))


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
    keys = feed_keys(model, count, block)
    cursor = ("0-0" if since is None else since.id if isinstance(since, Change)
              else checked_entry_id(model, "since", since))
    if len(keys) > 1:
        return (yield from _merged_changes(model, keys, cursor, block, count))
    key = keys[0]
    name = model._meta.name
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


def _order(change: Change) -> tuple[int, int, int]:
    """Where an entry goes in the merge of the shards' feeds: its id, then its shard."""
    ms, _, seq = change.id.partition("-")
    return int(ms), int(seq or 0), change.shard or 0


def _merged_changes(model: type[ActiveRecord], keys: list[str], since: str,
                    block: int | None, count: int) -> Plan:
    """changes_plan on a cluster (see the module): each shard read after its own cursor
    (``since`` for all at first), the pages merged by entry id, an entry emitted once no
    shard with a full page can still hold an earlier one."""
    name = model._meta.name
    cursors = [since] * len(keys)
    if since == "$":  # now: each shard's last entry
        for shard, key in enumerate(keys):
            last = yield Command(("XREVRANGE", key, "+", "-", "COUNT", 1), name)
            cursors[shard] = _text(last[0][0]) if last else "0-0"
    waited, turn = 0, 0
    while True:
        pages: list[list[Change]] = []
        for shard, key in enumerate(keys):
            entries = yield Command(("XRANGE", key, f"({cursors[shard]}", "+", "COUNT", count),
                                    name)
            pages.append(_page(name, entries, shard, cursors))
        full = [page[-1] for page, key in zip(pages, keys) if len(page) >= count]
        horizon = min((_order(last) for last in full), default=None)
        ready = sorted((change for page in pages for change in page
                        if horizon is None or _order(change) <= horizon), key=_order)
        for change in ready:  # the next read of a shard starts after what was emitted
            cursors[change.shard or 0] = change.id
        if ready:
            waited = 0
            yield Emit([change for change in ready if change.op])
            if horizon is None and block is None:
                return None  # every shard's page was short: the end, no empty round to learn it
            continue
        if block is None or (block and waited >= block):
            return None
        # nothing new anywhere: wait on one shard's stream (a write there ends the wait),
        # then read every shard again
        shard, turn = turn % len(keys), turn + 1
        slice_ms = WAIT_SLICE if not block else max(1, min(WAIT_SLICE, block - waited))
        reply = yield Command(("XREAD", "COUNT", 1, "BLOCK", slice_ms, "STREAMS", keys[shard],
                               cursors[shard]), name)
        if not stream_entries(reply):
            waited += slice_ms


def _page(name: str, entries: list[Any], shard: int, cursors: list[str]) -> list[Change]:
    """The Changes of one shard's page, in order; an entry without data (trimmed) stands
    as a Change without op, so that the cursor passes it (it is not emitted)."""
    found = []
    for entry_id, fields in entries:
        change = parse_change(name, entry_id, fields, shard)
        found.append(change if change is not None else Change(
            _text(entry_id), "", uuid.UUID(int=0), (), None, name, shard))
    return found


# -- consumer groups --------------------------------------------------------------------------
def ensure_group_call(model: type[ActiveRecord], group: str, start: str) -> Call | Gather:
    """The group, created at ``start`` if it does not exist (lua/feed_group.lua); on a
    cluster on every shard's stream, the calls gathered; decodes to how many it created."""
    meta = model._meta
    calls = [Call(SCRIPTS["feed_group"], (key,), (group, start), lambda reply: int(reply),
                  meta.name) for key in feed_keys(model, 1, None)]
    if len(calls) == 1:
        return calls[0]
    created: Call | Gather = gather(calls, sum)
    return created


def group_read_plan(model: type[ActiveRecord], group: str, consumer: str, count: int,
                    block: int | None, min_idle: int | None, own_pending: bool) -> Plan:
    """One batch for ``consumer``: entries other consumers left pending longer than
    ``min_idle`` ms (XAUTOCLAIM: a worker that died before acknowledging them), else
    with ``own_pending`` those delivered to this consumer and not acknowledged (a worker
    that restarts under its name), else new ones (XREADGROUP >, waiting up to ``block``
    ms). Trimmed entries among the pending are acknowledged and left out. Returns the
    Changes (their ids are what ``ack`` takes)."""
    keys = feed_keys(model, count, block)
    name = model._meta.name
    if min_idle is not None and (isinstance(min_idle, bool) or not isinstance(min_idle, int)
                                 or min_idle < 0):
        raise InvalidQuery(f"min_idle must be milliseconds (an integer >= 0), not "
                           f"{min_idle!r}")
    if len(keys) > 1:
        return (yield from _sharded_group_read(model, keys, group, consumer, count, block,
                                               min_idle, own_pending))
    key = keys[0]
    if min_idle is not None:
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


def _sharded_group_read(model: type[ActiveRecord], keys: list[str], group: str,
                        consumer: str, count: int, block: int | None, min_idle: int | None,
                        own_pending: bool) -> Plan:
    """group_read_plan on a cluster: the same three sources, each from the shards' streams
    in turn (from a shard chosen by the consumer's name, so that workers start apart),
    until ``count`` entries; new ones waited for as changes() waits (see the module)."""
    first = zlib.crc32(consumer.encode()) % len(keys)
    order = [(first + i) % len(keys) for i in range(len(keys))]
    sources = [name for name, wanted in (("claimed", min_idle is not None),
                                         ("own", own_pending), ("new", True)) if wanted]
    waited, turn = 0, 0
    while True:
        for source in sources:
            changes = yield from _from_shards(model, keys, order, group, consumer, count,
                                              source, min_idle)
            if changes:
                return changes
        if block is None or (block and waited >= block):
            return []
        sources = ["new"]  # pending entries were looked at once
        # nothing new anywhere: wait on one shard's stream, then read every shard again
        shard, turn = order[turn % len(order)], turn + 1
        slice_ms = WAIT_SLICE if not block else max(1, min(WAIT_SLICE, block - waited))
        reply = yield Command(("XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                               "BLOCK", slice_ms, "STREAMS", keys[shard], ">"),
                              model._meta.name)
        changes = yield from _kept(model, group, stream_entries(reply), shard)
        if changes:
            return changes
        waited += slice_ms


def _from_shards(model: type[ActiveRecord], keys: list[str], order: list[int], group: str,
                 consumer: str, count: int, source: str, min_idle: int | None) -> Plan:
    """Up to ``count`` entries of one source ('claimed': XAUTOCLAIM of entries idle for
    ``min_idle`` ms; 'own': this consumer's pending; 'new'), the shards in ``order``."""
    name = model._meta.name
    changes: list[Change] = []
    for shard in order:
        key, want = keys[shard], count - len(changes)
        if source == "claimed":
            reply = yield Command(("XAUTOCLAIM", key, group, consumer, min_idle, "0-0",
                                   "COUNT", want), name)
            entries = list(reply[1])
        else:
            reply = yield Command(("XREADGROUP", "GROUP", group, consumer, "COUNT", want,
                                   "STREAMS", key, "0" if source == "own" else ">"), name)
            entries = stream_entries(reply)
        changes += yield from _kept(model, group, entries, shard)
        if len(changes) >= count:
            break
    return changes


def _kept(model: type[ActiveRecord], group: str, entries: list[tuple[Any, Any]],
          shard: int | None = None) -> Plan:
    """The Changes of ``entries`` (of ``shard``'s stream on a cluster); the ids of
    trimmed ones (no data left) acknowledged."""
    name = model._meta.name
    found = [(entry_id, parse_change(name, entry_id, fields, shard))
             for entry_id, fields in entries if entry_id is not None]
    gone = [entry_id for entry_id, change in found if change is None]
    if gone:
        yield Command(("XACK", _shard_key(model, shard), group, *gone), name)
    return [change for _, change in found if change is not None]


def ack_plan(model: type[ActiveRecord], group: str, changes: Iterable[Change]) -> Plan:
    """XACK of the changes' ids, one command per stream (one on one server); returns how
    many were acknowledged."""
    by_shard: dict[int | None, list[str]] = {}
    for change in changes:
        by_shard.setdefault(change.shard, []).append(change.id)
    acked = 0
    for shard, ids in by_shard.items():
        acked += int((yield Command(("XACK", _shard_key(model, shard), group, *ids),
                                    model._meta.name)))
    return acked


def pending_plan(model: type[ActiveRecord], group: str) -> Plan:
    """How many entries the group's consumers were delivered and did not acknowledge
    (XPENDING of each stream, summed)."""
    pending = 0
    for key in feed_keys(model, 1, None):
        pending += pending_count((yield Command(("XPENDING", key, group), model._meta.name)))
    return pending


def pending_count(reply: Any) -> int:
    """The number of entries delivered and not acknowledged, from XPENDING's summary (a
    dict as redis-py parses it, or the raw list)."""
    if isinstance(reply, dict):
        return int(reply.get("pending", 0))
    if isinstance(reply, (list, tuple)) and reply:
        return int(reply[0])
    raise RepocketError(f"XPENDING replied {reply!r}")
