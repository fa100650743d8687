"""Unique constraints on a Redis Cluster: global claims in the slot of the value. No I/O.

On one server a unique hash per constraint holds value -> id, and the save script checks
and moves the claim with the record, atomically. On a cluster the records of one model
spread over shards, so a value's claim must live in one place whatever the record's
shard: the claim hash of the value's bucket (``keys.claim_key``). A save that takes a
unique value runs a short protocol, written once here as calls:

1. claim each new value (``lua/claim.lua``, atomic in the claim's slot): the claim is
   stored as a token of its own, ``<id>@<ms>@<nonce>``, which the reply gives back
   (also when the record held the claim already); refused when another record holds it;
2. a claim held by another record X: if X holds the value, UniqueViolation (releasing
   what this save claimed, writing nothing). A claim younger than GRACE_MS counts as
   taken too (get_or_create reads its holder again until then). An older one is taken
   over in two steps: ``lua/revoke.lua``, atomic in X's shard, checks there that X does
   not hold the value (else UniqueViolation) and records X's token in the shard's fence
   hash; then the claim is replaced only if it is still exactly that token;
3. the record is written by the fenced save script, which carries the tokens of the
   claims it relies on and writes nothing when one is in its shard's fence hash; the
   refusal runs the protocol again (bounded), which typically ends in UniqueViolation
   naming the record that took the value over (its shard's own unique hash is kept as
   on one server);
4. the record's old values are released, each only while its claim is exactly the token
   the write retired: the shard keeps the token each record holds each unique value by
   ({...:<shard>}:tokens, written with the value); a write giving a record a value it
   does not hold there must carry a live token for it (else {'unclaimed', ...}: nothing
   written), and a write or delete moving a record off a value revokes that token in the
   shard's fence hash and names it in its reply. So a save of the same record handed
   the token ('had') is refused and claims the value again, with a fresh token, which
   the release leaves alone: two saves of one record never leave it holding a value
   without its claim. A save of an existing record giving up revokes the tokens it took
   in the record's shard before releasing them (refused when another save of the record
   wrote the value with one); a failed create releases them at once.

Safety does not depend on time: X's write and X's revocation run in one shard, so one
sees the other. Either X wrote first (it holds the value: the revocation refuses) or the
token is revoked first (X's write is refused), whatever the stall between X's claim and
its write. GRACE_MS only keeps two live savers from taking a value from each other in
turn. A revoked token stays in the fence hash: every save of X given it (``had``) must be
refused. A crash between the steps leaves at most a claim whose holder does not hold the
value: reads never use claims (a query by a unique field reads the shards' own hashes),
and the next save of the value takes it over. A save touching no unique value sends none
of this.
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Sequence
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
FENCED_RETRIES = 3  # protocols run again after the write was refused, then a retriable error
# Liveness only: a claim younger than this may belong to a save still writing its record,
# so it is not taken over (the value counts as taken): two live savers of one value do
# not take it from each other in turn. Safety does not depend on it: a save stalled for
# any time after its claim finds its token revoked and writes nothing.
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

    def call(self, mode: str, decode: Any, stale: str = "", nonce: str = "") -> Call:
        """lua/claim.lua on this claim (its header says what ``stale`` is per mode)."""
        return Call(SCRIPTS["claim"], (self.key,),
                    (mode, self.record_id, stale, nonce, pack(self.families),
                     *self.canonical),
                    decode, self.model._meta.name, {self.key: ",".join(self.group)})

    def revoke(self, owner: str, token: str) -> Call:
        """lua/revoke.lua in ``owner``'s shard: its claim ``token`` revoked unless it holds
        the value (then b'holds')."""
        meta = self.model._meta
        prefix = meta.prefix_of(owner)
        unique = keyspace.unique_key(prefix, self.group)
        return Call(SCRIPTS["revoke"],
                    (keyspace.record_key(prefix, owner), unique, keyspace.fence_key(prefix)),
                    (token, owner, pack(self.families), *self.canonical), bytes, meta.name,
                    {unique: ",".join(self.group)})

    def violation(self, owner: str) -> UniqueViolation:
        shown = " and ".join(f"{name}={short_repr(value)}"
                             for name, value in zip(self.group, self.values))
        return UniqueViolation(
            f"{self.model._meta.name}: {shown} already belongs to record {owner}; nothing "
            "was written", model=self.model._meta.name, field=",".join(self.group),
            value=self.values[0] if len(self.values) == 1 else self.values, owner=owner)


def parse_token(stored: bytes) -> tuple[str, int]:
    """(owner id, claim time in ms) of a stored claim token, '<id>@<ms>@<nonce>' (or a
    claim stored before tokens, '<id>@<ms>')."""
    owner, _, rest = stored.decode("ascii", "replace").partition("@")
    since = rest.partition("@")[0]
    return owner, int(since) if since.isdigit() else 0


def revoke_by_field(model: type[ActiveRecord], group: tuple[str, ...], owner: str,
                    token: bytes, unique_field: bytes) -> Call:
    """lua/revoke.lua for the checker's repair, which knows the unique field (the value's
    normal form) rather than the values: b'holds' or b'revoked'."""
    prefix = model._meta.prefix_of(owner)
    return Call(SCRIPTS["revoke"], (keyspace.record_key(prefix, owner),
                                    keyspace.unique_key(prefix, group),
                                    keyspace.fence_key(prefix)),
                (token, owner, b"", unique_field), bytes, model._meta.name)


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
    """One run of the protocol: the claims it takes, what it writes once every claim is
    its record's, the claims it took so far (released if it gives up) and their tokens,
    and, for get_or_create, the group whose holder is the answer."""

    write: Callable[[Grant | None], Any]
    claims: list[Claim]
    taken: list[Claim] = field(default_factory=list)
    tokens: dict[Claim, str] = field(default_factory=dict)
    find: tuple[str, ...] | None = None
    takeovers: int = TAKEOVERS
    retries: int = FENCED_RETRIES
    revoked: set[str] = field(default_factory=set)  # tokens a refused write named
    # the record exists (the instance was loaded): other processes may save it too, and
    # be handed the tokens this protocol takes ('had')
    shared: bool = False
    # get_or_create: until when (time.monotonic()) a holder not written yet is read again
    polling_until: float | None = None


@dataclass
class Grant:
    """What a write may rely on once every claim is its record's: the claims' tokens,
    which the fenced save script checks against its shard's revoked tokens."""

    tokens: dict[Claim, str]
    attempt: _Attempt | None  # None: no claim taken (a save only moving off values)
    # (record id, constraint fields) -> the token the write retired (filled by its decode)
    retired: dict[tuple[str, str], str] = field(default_factory=dict)

    def of(self, record_ids: Collection[str] | None = None) -> list[tuple[str, str]]:
        """(constraint fields, token) of the claims of ``record_ids`` (None: of every
        record)."""
        return [(",".join(claim.group), token) for claim, token in self.tokens.items()
                if record_ids is None or claim.record_id in record_ids]

    def refused(self, reply: list[Any], record_ids: Collection[str] | None = None,
                write: Callable[[Grant | None], Any] | None = None) -> Any:
        """The step after the write was refused (the fenced save's {'fenced', token...}):
        the protocol again for the claims of ``record_ids`` (None: all of it), the
        revoked tokens replaced where still stored, then ``write`` (None: the same). A
        value another record took over meanwhile then raises UniqueViolation; refused
        FENCED_RETRIES times, the retriable RepocketConnectionError."""
        attempt = self.attempt
        if attempt is None:  # nothing claimed, yet a value unheld to write: the view is stale
            raise RepocketConnectionError(
                f"{reply!r}: the record changed meanwhile; nothing was written, retry")
        claims = [claim for claim in attempt.claims
                  if record_ids is None or claim.record_id in record_ids]
        taken = [claim for claim in attempt.taken if claim in claims]
        revoked = attempt.revoked | {raw.decode("ascii") for raw in reply[1:]}
        if attempt.retries == 0:
            return _undo(_Attempt(attempt.write, claims, taken, dict(self.tokens),
                                  revoked=revoked, shared=attempt.shared),
                         _kept_changing(claims))
        redo = _Attempt(write or attempt.write, claims, taken, dict(self.tokens),
                        find=attempt.find, retries=attempt.retries - 1, revoked=revoked,
                        shared=attempt.shared)
        stale = {claim: token for claim, token in self.tokens.items()
                 if token in revoked and claim in claims}
        return _round(redo, stale)


def is_unclaimed(reply: Any) -> bool:
    """Whether a fenced save's reply is {'unclaimed', id, fields}: a record would take a
    value it does not hold without a token for it (the protocol runs again)."""
    return isinstance(reply, list) and bool(reply) and reply[0] == b"unclaimed"


def note_retired(reply: Any, retired: dict[tuple[str, str], str]) -> Any:
    """The fenced save's reply without its retired tokens ({'retired', reply, fields,
    token, ...}), which are noted in ``retired`` by (record id, fields)."""
    if not (isinstance(reply, list) and reply and reply[0] == b"retired"):
        return reply
    for position in range(2, len(reply), 2):
        token = reply[position + 1].decode("ascii")
        retired[(parse_token(reply[position + 1])[0], reply[position].decode())] = token
    return reply[1]


def is_fenced(reply: Any) -> bool:
    """Whether a fenced save's reply is its refusal ({'fenced', token...})."""
    return isinstance(reply, list) and bool(reply) and reply[0] == b"fenced"


def claiming(claims: Sequence[Claim], write: Callable[[Grant | None], Any],
             find: tuple[str, ...] | None = None, shared: bool = False) -> Any:
    """``write(grant)`` (the write, a Call or Gather, whose decode hands a refusal to
    ``grant.refused``) once every claim is this record's; ``write(None)`` when there is no
    claim to take. A value another record holds raises UniqueViolation, after releasing
    the claims taken here (nothing written). With ``find`` (get_or_create), a holder of
    that group's value is the result instead, ``(holder, False)``. ``shared``: the
    record exists (see :func:`_undo`)."""
    if not claims:
        return write(None)
    return _round(_Attempt(write, list(claims), find=find, shared=shared), {})


def _round(attempt: _Attempt, stale: dict[Claim, str]) -> Any:
    """Claim every claim of ``attempt`` (replacing the ``stale`` tokens, revoked)."""
    return gather([_claim(claim, stale.get(claim, "")) for claim in attempt.claims],
                  lambda outcomes: _next(outcomes, attempt))


Outcome = tuple[str, Claim, str, int, str]  # verdict, claim, owner, age (ms), token


def _next(outcomes: list[Outcome], attempt: _Attempt) -> Any:
    for verdict, claim, _owner, _age, token in outcomes:
        if verdict in ("took", "had"):
            attempt.tokens[claim] = token
        if verdict == "took" and claim not in attempt.taken:
            attempt.taken.append(claim)
    held = [(claim, owner, age, token) for verdict, claim, owner, age, token in outcomes
            if verdict == "held"]
    if held:
        return _verify(held, attempt)
    return attempt.write(Grant(dict(attempt.tokens), attempt))


def _claim(claim: Claim, stale: str = "") -> Call:
    def decode(reply: list[Any]) -> Outcome:
        verdict = reply[0].decode()
        if verdict != "held":
            return verdict, claim, "", 0, reply[1].decode("ascii")
        return verdict, claim, reply[1].decode("ascii"), int(reply[2]), reply[3].decode("ascii")

    return claim.call("claim", decode, stale, uuid.uuid4().hex)


Held = tuple[Claim, str, int, str]  # claim, its owner, the claim's age (ms), its token


def _verify(held: list[Held], attempt: _Attempt) -> Any:
    """Judge the claims ``held`` by other records; get_or_create first reads the holders
    (one of them may be the answer)."""
    if attempt.find is None:
        return _judge(held, {}, attempt)
    model = held[0][0].model

    def judged(entries: list[Any]) -> Any:
        records = {raw_id.decode("ascii"): from_redis(model, raw_id, flat, streams)
                   for _number, raw_id, flat, streams in entries if flat}
        return _judge(held, records, attempt)

    return then(read_raw(model, [(1, owner) for _claim_, owner, _age, _token in held]),
                judged)


def _judge(held: list[Held], records: dict[str, ActiveRecord], attempt: _Attempt) -> Any:
    """A holder known to have the value (``records``: get_or_create's read) is the answer
    or a violation; a claim younger than GRACE_MS counts as taken (its save may still be
    writing: get_or_create reads a holder not written yet again until then); any other
    claim is revoked in its holder's shard, which refuses when the holder has the value,
    and only then taken over from exactly that token."""
    stale: list[tuple[Claim, str, str]] = []
    for claim, owner, age, token in held:
        holder = records.get(owner)
        finding = attempt.find == claim.group
        if holder is not None and _holds(holder, claim):
            return _undo(attempt, (holder, False) if finding else claim.violation(owner))
        if age < GRACE_MS:
            if not (finding and holder is None):
                return _undo(attempt, claim.violation(owner))
            if _poll(attempt, age):
                return _verify(held, attempt)  # its creator is between claim and write
            # as old as the grace period now: an orphan, taken over below
        stale.append((claim, owner, token))
    if attempt.takeovers == 0:
        return _undo(attempt, _kept_changing([claim for claim, _o, _t in stale]))
    attempt.takeovers -= 1

    def revoked(verdicts: list[bytes]) -> Any:
        for (claim, owner, _token), verdict in zip(stale, verdicts):
            if verdict == b"holds":  # written since it was judged: the value is taken
                if attempt.find is not None:
                    return _verify(held, attempt)  # read again: it is the answer
                return _undo(attempt, claim.violation(owner))
        return gather([_claim(claim, token) for claim, _owner, token in stale],
                      lambda outcomes: _next(outcomes, attempt))

    return gather([claim.revoke(owner, token) for claim, owner, token in stale], revoked)


def _kept_changing(claims: Sequence[Claim]) -> RepocketConnectionError:
    claim = claims[0]
    return RepocketConnectionError(
        f"{claim.model._meta.name}: the claim of {'+'.join(claim.group)} kept changing "
        "hands; nothing was written, retry")


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


def _undo(attempt: _Attempt, outcome: Any) -> Any:
    """Release the claims this protocol took (each only while it still is the token it
    was given), then raise ``outcome`` (an error) or return it. For a record that exists
    (``shared``), another save of it may have been handed that token ('had') and written
    the value with it, so a token not known revoked is first revoked in the record's
    shard (lua/revoke.lua: it refuses when the record holds the value, and the claim then
    stays). A new record's claims are released at once, so a failed create writes
    nothing, fences included: nothing else saves a record whose id only this instance
    knows (two processes creating one explicit id at once are not covered)."""
    def settle(_released: list[Any]) -> Any:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def release(claims: list[Claim]) -> Any:
        return gather([claim.call("release", int, attempt.tokens[claim]) for claim in claims],
                      settle)

    unsure = [claim for claim in attempt.taken
              if attempt.shared and attempt.tokens[claim] not in attempt.revoked]
    if not unsure:
        return release(attempt.taken)

    def revoked(verdicts: list[bytes]) -> Any:
        held = {claim for claim, verdict in zip(unsure, verdicts) if verdict != b"revoked"}
        return release([claim for claim in attempt.taken if claim not in held])

    return gather([claim.revoke(claim.record_id, attempt.tokens[claim]) for claim in unsure],
                  revoked)


def releasing(claims: Sequence[Claim], result: Any,
              retired: dict[tuple[str, str], str]) -> Any:
    """``result``, once the old values' claims are released: each only while it is
    exactly the token the write (or delete) retired in its record's shard (``retired``,
    by record id and constraint). A claim re-taken since with a fresh token (a save of the
    same record that writes the value back) stays; a value whose token was not retired
    (the shard holds another value for the record: a stale instance) is left to the
    takeover of orphan claims."""
    tokens = [(claim, retired.get((claim.record_id, ",".join(claim.group))))
              for claim in claims]
    releases = [claim.call("release", int, token) for claim, token in tokens if token]
    if not releases:
        return result
    return gather(releases, lambda _done: result)
