"""Unique constraints on a Redis Cluster: global claims in the slot of the value. No I/O.

On one server a unique hash per constraint holds value -> id, and the save script checks
and moves the claim with the record, atomically. On a cluster the records of one model
spread over shards, so a value's claim must live in one place whatever the record's
shard: the claim hash of the value's bucket (``keys.claim_key``). A save that takes a
unique value runs a short protocol, written once here as calls:

1. claim each new value (``lua/claim.lua``, atomic in the claim's slot): refused when
   another record holds the claim;
2. a claim held by another record is checked in a read of that record: if it holds the
   value, the save raises UniqueViolation (releasing what it claimed, writing nothing);
   if it does not and its claim is older than GRACE_MS (an orphan: its save or delete
   stopped half-way, or it changed value meanwhile), the claim is taken over only from
   that very holder (compare-and-set); a younger claim may be a save still writing its
   record, so the value counts as taken (UniqueViolation);
3. the record is written (its shard's own unique hash is kept as on one server);
4. the record's old values are released (only where it still holds the claim).

A crash between the steps leaves at most a claim whose holder does not hold the value:
reads never use claims (a query by a unique field reads the shards' own hashes), and the
next save of the value takes it over. A save touching no unique value sends none of this.
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..attributes import short_repr, uuid_text
from ..errors import RepocketConnectionError, UniqueViolation
from . import keys as keyspace
from .deref import read_raw
from .hydrate import from_redis
from .lua import SCRIPTS
from .plan import Call, gather, pack, then

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

TAKEOVERS = 3  # orphan claims taken over per value per save before giving up (a race)
# A claim younger than this may belong to a save still writing its record: it is never
# taken over (the value counts as taken). A save stalled longer than this between its
# claim and its write could lose its claim to another record (README "Redis Cluster").
GRACE_MS = 5000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class Claim:
    """One unique value of one record: where its claim lives and what the script needs."""

    def __init__(self, model: type[ActiveRecord], group: tuple[str, ...], values: list[Any],
                 record_id: str):
        meta = model._meta
        self.model, self.group, self.values, self.record_id = model, group, values, record_id
        attributes = [meta.fields[name] for name in group]
        self.canonical = [attribute.encode(value) for attribute, value in zip(attributes, values)]
        self.families = [attribute.family for attribute in attributes]
        self.identity = tuple(_equality(family, raw)
                              for family, raw in zip(self.families, self.canonical))
        bucket = zlib.crc32(repr(self.identity).encode()) % keyspace.CLAIM_BUCKETS
        self.key = keyspace.claim_key(meta.prefix, group, bucket)

    def call(self, mode: str, decode: Any, stale: str = "") -> Call:
        return Call(SCRIPTS["claim"], (self.key,),
                    (mode, self.record_id, stale, GRACE_MS, pack(self.families),
                     *self.canonical),
                    decode, self.model._meta.name, {self.key: ",".join(self.group)})

    def violation(self, owner: str) -> UniqueViolation:
        shown = " and ".join(f"{name}={short_repr(value)}"
                             for name, value in zip(self.group, self.values))
        return UniqueViolation(
            f"{self.model._meta.name}: {shown} already belongs to record {owner}; nothing "
            "was written", model=self.model._meta.name, field=",".join(self.group),
            value=self.values[0] if len(self.values) == 1 else self.values, owner=owner)


def _equality(family: str, raw: bytes) -> Any:
    """What equal values of a family share, whatever their canonical text (1.50 and 1.5,
    -0.0 and 0.0, one instant at two UTC offsets): the bucket is derived from it, so equal
    values meet in one claim hash, where lib/values' normal form then decides."""
    text = raw.decode("utf-8", "surrogateescape")
    try:
        if family == "float":
            number = float(text)
            return "0" if number == 0 else repr(number)
        if family == "exact":
            exact = decimal.Decimal(text)
            return "0" if exact == 0 else str(exact.normalize())
        if family == "datetime":
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
            return (moment - _EPOCH) // dt.timedelta(microseconds=1)
    except (ValueError, ArithmeticError):
        pass
    return raw


def values_of(record: ActiveRecord, group: tuple[str, ...], stored: bool) -> list[Any] | None:
    """The group's values the record now has (``stored``: as loaded from Redis); None when
    one is None or unknown (not loaded)."""
    meta = type(record)._meta
    found = []
    for name in group:
        if stored:
            raw = record._stored.get(name)
            if raw is None:
                return None
            decode = next(d for n, _, d, _a in meta.decoders(meta.codec) if n == name)
            value = decode(raw)
        else:
            if name not in record._values:
                return None
            value = record._values[name]
        if value is None:
            return None
        found.append(value)
    return found


def changes(record: ActiveRecord, whole: bool) -> tuple[list[Claim], list[Claim]]:
    """The claims a save must take (new values) and release (old values it held)."""
    model = type(record)
    record_id = uuid_text(record.pk)
    take: list[Claim] = []
    release: list[Claim] = []
    for group in model._meta.unique_together:
        new = values_of(record, group, stored=False)
        old = values_of(record, group, stored=True) if record._persisted else None
        new_claim = Claim(model, group, new, record_id) if new is not None else None
        old_claim = Claim(model, group, old, record_id) if old is not None else None
        same = new_claim and old_claim and new_claim.identity == old_claim.identity
        if new_claim and (whole or not same):
            take.append(new_claim)
        if old_claim and not same:
            release.append(old_claim)
    return take, release


def held(record: ActiveRecord) -> list[Claim]:
    """The claims of the values the record held as loaded (what its delete releases)."""
    model = type(record)
    record_id = uuid_text(record.pk)
    found = []
    for group in model._meta.unique_together:
        old = values_of(record, group, stored=True) if record._persisted else None
        if old is not None:
            found.append(Claim(model, group, old, record_id))
    return found


@dataclass
class _Attempt:
    """One save's way through the protocol: what it writes once every claim is its own, the
    claims it took so far, and, for get_or_create, the group whose holder is the answer."""

    write: Any
    taken: list[Claim] = field(default_factory=list)
    find: tuple[str, ...] | None = None
    takeovers: int = TAKEOVERS
    # get_or_create: until when (time.monotonic()) a holder not written yet is read again
    polling_until: float | None = None


def claiming(claims: Sequence[Claim], then_write: Any,
             find: tuple[str, ...] | None = None) -> Any:
    """``then_write`` (the write, a Call or Gather) once every claim is this record's; a
    value another record holds raises UniqueViolation, after releasing the claims taken
    here (nothing written). With ``find`` (get_or_create), a holder of that group's value
    is the result instead, ``(holder, False)``."""
    if not claims:
        return then_write
    attempt = _Attempt(then_write, find=find)

    def settled(outcomes: list[tuple[str, Claim, str, int]]) -> Any:
        return _next(outcomes, attempt)

    return gather([_claim(claim) for claim in claims], settled)


def _next(outcomes: list[tuple[str, Claim, str, int]], attempt: _Attempt) -> Any:
    attempt.taken += [claim for verdict, claim, _owner, _age in outcomes if verdict == "took"]
    held = [(claim, owner, age) for verdict, claim, owner, age in outcomes
            if verdict == "held"]
    return _verify(held, attempt) if held else attempt.write


def _claim(claim: Claim, stale: str = "") -> Call:
    def decode(reply: list[Any]) -> tuple[str, Claim, str, int]:
        verdict = reply[0].decode()
        if verdict != "held":
            return verdict, claim, "", 0
        return verdict, claim, reply[1].decode("ascii"), int(reply[2])

    return claim.call("claim", decode, stale)


def _verify(held: list[tuple[Claim, str, int]], attempt: _Attempt) -> Any:
    """Read the holders of ``held`` claims: a holder that has the value, or whose claim is
    younger than GRACE_MS, is a violation (get_or_create: the answer, or, for a holder
    not written yet, read again); any other holder's claim is taken over (from that
    holder only), then checked again."""
    model = held[0][0].model

    def judged(entries: list[Any]) -> Any:
        records = {raw_id.decode("ascii"): from_redis(model, raw_id, flat, streams)
                   for _number, raw_id, flat, streams in entries if flat}
        for claim, owner, age in held:
            holder = records.get(owner)
            finding = attempt.find == claim.group
            if holder is not None and _holds(holder, claim):
                return _undo(attempt.taken, (holder, False) if finding
                             else claim.violation(owner))
            if age < GRACE_MS and finding and holder is None:
                if _poll(attempt, age):
                    return _verify(held, attempt)  # its creator is between claim and write
                continue  # as old as the grace period now: an orphan, taken over below
            if age < GRACE_MS:
                return _undo(attempt.taken, claim.violation(owner))
        if attempt.takeovers == 0:
            return _undo(attempt.taken, RepocketConnectionError(
                f"{model._meta.name}: the claim of {held[0][0].group} kept changing hands; "
                "nothing was written, retry"))
        attempt.takeovers -= 1
        return gather([_claim(claim, stale=owner) for claim, owner, _age in held],
                      lambda outcomes: _next(outcomes, attempt))

    return then(read_raw(model, [(1, owner) for _claim_, owner, _age in held]), judged)


def _holds(record: ActiveRecord, claim: Claim) -> bool:
    values = values_of(record, claim.group, stored=False)
    if values is None:
        return False
    return Claim(claim.model, claim.group, values, claim.record_id).identity == claim.identity


def _poll(attempt: _Attempt, age: int) -> bool:
    """Whether to read a holder not written yet again: until its claim is GRACE_MS old
    (then it is an orphan, taken over)."""
    now = time.monotonic()
    if attempt.polling_until is None:
        attempt.polling_until = now + (GRACE_MS - age) / 1000
    return now < attempt.polling_until


def _undo(taken: list[Claim], outcome: Any) -> Any:
    """Release the claims this save took, then raise ``outcome`` (an error) or return it."""
    def settle(_released: list[Any]) -> Any:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return gather([claim.call("release", int) for claim in taken], settle)


def releasing(claims: Sequence[Claim], result: Any) -> Any:
    """``result``, once the old values' claims are released (where still this record's)."""
    if not claims:
        return result
    return gather([claim.call("release", int) for claim in claims], lambda _done: result)
