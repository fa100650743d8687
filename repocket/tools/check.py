"""The consistency checker: ``Model.objects.check()``, ``reindex()`` and ``repocket check``.

Verifies, in bounded batches (no script blocks Redis for long), that every id in
a model's id set has its record, every record is in the id set and in its
indexes, every index entry matches its record's current value (an absent field
reads as its declared default, as in Python), unique values are held once, no
ByteStream key outlives its record, no id set, index or unique hash holds a
member that is not a record id, and the server will not evict keys. With
``repair=True`` it fixes what can be fixed; two records holding one unique value
is reported, never guessed at.

Checking runs read-only scripts (``no-writes``), so it works on a replica and
over maxmemory; repairing runs the same scripts with the write flag (on a replica
it raises :class:`repocket.errors.ReadOnly`, nothing written). The whole run is
one plan (``check_plan``: a generator of bounded script calls that returns the
:class:`CheckReport`), which the sync and the asyncio executors both run.

Passes, in order: the keyspace (one SCAN page, then its keys in one audit call:
two round trips per ``batch_size`` keys scanned), the id set (one call per
batch of ids), then each index key and unique hash (one call per batch).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..connections import configure
from ..core import claims
from ..core import keys as keyspace
from ..core.deref import read_raw
from ..core.hydrate import from_redis
from ..core.layout import on_cluster
from ..core.lua import SCRIPTS, Script
from ..core.plan import Call, Plan, gather
from ..errors import InvalidQuery
from ..exec.plans import run_plan

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

# Kinds no repair removes: a key of another type where a record belongs, a unique value
# two records hold (the data must be changed), and a server that may evict keys.
UNREPAIRABLE = ("unique-conflict", "not-a-hash", "eviction-policy")


@dataclass(frozen=True)
class Problem:
    kind: str  # orphan-id, unlisted-record, not-a-hash, missing-entry, missing-unique,
    #            unique-conflict, stale-entry, orphan-stream, foreign-member, eviction-policy,
    #            orphan-claim (a cluster's global claim its holder does not hold),
    #            unclaimed-value (a cluster's unique value held without its global claim)
    key: str
    detail: str
    record_id: str = ""
    value: bytes | None = None  # a unique value, for missing-unique and unique-conflict
    holder: str = ""  # the record that already holds it, for unique-conflict

    def __str__(self) -> str:
        return f"{self.kind}: {self.key} ({self.detail})"


@dataclass
class CheckReport:
    model: str
    problems: list[Problem] = field(default_factory=list)
    repaired: int = 0
    records: int = 0
    repair: bool = False
    eviction_policy: str | None = None  # the server's maxmemory-policy (keyspace pass only)

    @property
    def unrepaired(self) -> list[Problem]:
        """Problems still in Redis: all of them when checking, the unfixable after repair."""
        if not self.repair:
            return self.problems
        return [p for p in self.problems if p.kind in UNREPAIRABLE]

    @property
    def ok(self) -> bool:
        return not self.unrepaired

    @property
    def conflicts(self) -> list[tuple[list[str], bytes | None, str, str]]:
        """Unique values held by two records: (fields, value, holder, other record)."""
        return [(keyspace.unique_fields(p.key), p.value, p.holder, p.record_id)
                for p in self.problems if p.kind == "unique-conflict"]

    @property
    def indexed(self) -> int:
        """Records whose entries are all in place (those in a unique conflict are not)."""
        return self.records - len({p.record_id for p in self.problems
                                   if p.kind in ("unique-conflict", "not-a-hash")})

    def __repr__(self) -> str:
        return (f"<CheckReport {self.model}: {self.records} records, {len(self.problems)} "
                f"problems, {self.repaired} repaired>")


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def _problems(rows: list[Any]) -> list[Problem]:
    problems = []
    for kind, key, detail, record_id, *rest in rows:
        value, holder = [*rest, None, None][:2]
        problems.append(Problem(_text(kind), _text(key), _text(detail), _text(record_id),
                                value or None, _text(holder)))
    return problems


def _mode(repair: bool) -> str:
    return "repair" if repair else "check"


def _script(name: str, repair: bool) -> Script:
    """The script that repairs, or its no-writes variant that only checks."""
    return SCRIPTS[name] if repair else SCRIPTS[f"{name}:read-only"]


def _model_keys(model: type[ActiveRecord], prefix: str | None) -> tuple[str, ...]:
    """The id set and ``model_keys`` under ``prefix`` (one shard's on a cluster)."""
    meta = model._meta
    if prefix is None:
        return (meta.ids_key, *meta.model_keys)
    return meta.write_keys(prefix)[:1 + len(meta.model_keys)]


def compile_audit_ids(model: type[ActiveRecord], cursor: bytes, count: int,
                      repair: bool, prefix: str | None = None) -> Call:
    """One batch of the id-set pass (lua/reindex.lua): (cursor, records, fixed, problems)."""
    meta = model._meta

    def decode(reply: list[Any]) -> tuple[bytes, int, int, list[Problem]]:
        return bytes(reply[0]), int(reply[1]), int(reply[2]), _problems(reply[3:])

    return Call(_script("reindex", repair),
                (*_model_keys(model, prefix), *meta.expiry_keys_of(prefix or meta.prefix)),
                (meta.write_schema(), len(meta.model_keys), cursor, count, _mode(repair)),
                decode, meta.name)


def compile_audit_entries(model: type[ActiveRecord], key_position: int, cursor: bytes,
                          count: int, repair: bool, prefix: str | None = None) -> Call:
    """One batch of the entries pass over one index key or unique hash (lua/prune.lua):
    (cursor, fixed, problems)."""
    meta = model._meta

    def decode(reply: list[Any]) -> tuple[bytes, int, list[Problem]]:
        return bytes(reply[0]), int(reply[1]), _problems(reply[2:])

    return Call(_script("prune", repair),
                (*_model_keys(model, prefix), meta.expiry_keys_of(prefix or meta.prefix)[0]),
                (meta.write_schema(), len(meta.model_keys), key_position, cursor, count,
                 _mode(repair)), decode, meta.name)


def compile_scan(model: type[ActiveRecord], cursor: bytes, count: int,
                 prefix: str | None = None) -> Call:
    """One SCAN page of the model's keys (lua/scan.lua): (cursor, keys, eviction policy).
    On a cluster, one shard's keys: the shard's id set in KEYS routes the call to its node
    (the script reads no key)."""
    meta = model._meta

    def decode(reply: list[Any]) -> tuple[bytes, list[str], str]:
        return bytes(reply[0]), [_text(key) for key in reply[1]], _text(reply[2])

    route = () if prefix is None else (keyspace.ids_key(prefix),)
    return Call(SCRIPTS["scan"], route,
                (cursor, keyspace.scan_pattern(prefix or meta.prefix), count),
                decode, meta.name)


def compile_audit_keys(model: type[ActiveRecord], found: list[str],
                       repair: bool, prefix: str | None = None) -> Call | None:
    """The audit of one SCAN page's record hashes and ByteStreams (lua/audit_keys.lua):
    (fixed, problems); None when the page holds neither."""
    meta = model._meta
    hashes: list[str] = []
    ids: list[str] = []
    streams: list[str] = []
    for key in found:
        record_id = keyspace.parse_record_key(prefix or meta.prefix, key)
        stream = keyspace.parse_stream_key(prefix or meta.prefix, key)
        if record_id:
            hashes.append(key)
            ids.append(record_id)
        elif stream and stream[1] in meta.stream_names:
            streams += (key, stream[0])
    if not hashes and not streams:
        return None

    def decode(reply: list[Any]) -> tuple[int, list[Problem]]:
        return int(reply[0]), _problems(reply[1:])

    ids_key = meta.ids_key if prefix is None else keyspace.ids_key(prefix)
    return Call(_script("audit_keys", repair), (ids_key, *hashes, *streams),
                (len(hashes), _mode(repair), *ids), decode, meta.name)


def _note_eviction_policy(report: CheckReport, policy: str) -> None:
    report.eviction_policy = policy
    if policy not in ("noeviction", "unknown"):
        report.problems.append(Problem(
            "eviction-policy", "maxmemory-policy",
            f"{policy}: Redis may evict a record without its index entries, or a unique "
            "claim without its record; repocket needs noeviction"))


def _audit_keyspace(model: type[ActiveRecord], report: CheckReport, count: int,
                    prefix: str | None) -> Plan:
    """Records missing from the id set, and streams whose record is gone: SCAN (never
    KEYS), a page at a time, each page's keys audited in one call: two round trips per
    page, whatever the page holds."""
    cursor = b"0"
    while True:
        cursor, found, policy = yield compile_scan(model, cursor, count, prefix)
        if report.eviction_policy is None:
            _note_eviction_policy(report, policy)
        audit = compile_audit_keys(model, found, report.repair, prefix)
        if audit is not None:
            fixed, problems = yield audit
            report.repaired += fixed
            report.problems += problems
        if cursor == b"0":
            return


def check_plan(model: type[ActiveRecord], repair: bool = False, batch_size: int = 1000,
               keyspace_pass: bool = True) -> Plan:
    """Check (and with ``repair`` fix) one model, as a plan; see the module docstring."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidQuery(f"batch_size must be a positive integer, not {batch_size!r}")
    model._meta.refuse_on_cluster("check() and reindex()")
    report = CheckReport(model._meta.name, repair=repair)
    # one server: the model's keys; a cluster: each shard's, one shard after the other
    shards = [None] if not on_cluster() else model._meta.shard_prefixes()
    for prefix in shards:
        yield from _check_shard(model, report, batch_size, keyspace_pass, prefix)
    if on_cluster():
        yield from _audit_claims(model, report)
    return report


def _read_hash(model: type[ActiveRecord], key: str, fields: list[bytes] | None = None) -> Call:
    """(server time in ms, HGETALL flat list or HMGET values) of one hash (claims_read.lua)."""
    return Call(SCRIPTS["claims_read"], (key,), tuple(fields or ()),
                lambda reply: (int(reply[0]), list(reply[1])), model._meta.name)


def _audit_claims(model: type[ActiveRecord], report: CheckReport) -> Plan:
    """On a cluster, the global claims of unique values (core/claims.py), per constraint:
    every claim hash and every shard's unique hash are read (one gathered round trip
    each), then

    - a claim whose holder does not hold the value (its record is gone or holds another:
      an orphan), older than the grace period (a younger one may be a save still
      writing), is 'orphan-claim'; repairing revokes its token in the holder's shard
      (lua/revoke.lua: refused if the holder holds the value now) and drops it (only if
      unchanged since it was read);
    - a value a record holds without holding its claim is 'unclaimed-value' (another
      record could claim it and write it too); repairing claims it for that record when
      the claim is free, or held by a record that does not hold the value (whose token
      is revoked first);
    - a value records of two shards hold is 'unique-conflict' (never repaired).

    The holders found in the unique hashes are read again (their records, and the claim
    of the values they hold now) before anything is reported: a save that ran between
    the reads is not a problem."""
    meta = model._meta
    for group in meta.unique_together:
        buckets = [keyspace.claim_key(meta.prefix, group, bucket)
                   for bucket in range(keyspace.CLAIM_BUCKETS)]
        listed = yield gather([_read_hash(model, key) for key in buckets], list)
        claimed: dict[bytes, tuple[str, bytes, str, int]] = {}  # field: key, token, owner, age
        for key, (now, flat) in zip(buckets, listed):
            for field_, stored in zip(flat[::2], flat[1::2]):
                owner, since = claims.parse_token(stored)
                claimed[field_] = (key, stored, owner, now - since)
        shard_hashes = [keyspace.unique_key(prefix, group) for prefix in meta.shard_prefixes()]
        read = yield gather([_read_hash(model, key) for key in shard_hashes], list)
        holders: dict[bytes, dict[str, str]] = {}  # field: {holder id: its shard's hash}
        for key, (_now, flat) in zip(shard_hashes, read):
            for field_, holder in zip(flat[::2], flat[1::2]):
                holders.setdefault(field_, {})[holder.decode("ascii", "replace")] = key
        suspects = {(field_, holder) for field_, found in holders.items() for holder in found
                    if len(found) > 1 or claimed.get(field_, ("", b"", "", 0))[2] != holder}
        confirmed = yield from _confirm_holders(model, group, suspects)
        yield from _orphan_claims(model, group, report, claimed, holders, confirmed)
        yield from _unclaimed_values(model, group, report, holders, confirmed)


def _confirm_holders(model: type[ActiveRecord], group: tuple[str, ...],
                     suspects: set[tuple[bytes, str]]) -> Plan:
    """Of ``suspects`` (unique field, holder id), those whose record exists and has that
    value now: {(field, holder): (its claim, the claim's token or None)}."""
    if not suspects:
        return {}
    reads = read_raw(model, [(1, holder) for _field, holder in sorted(suspects)])
    entries = reads if isinstance(reads, list) else (yield reads)
    found: dict[str, claims.Claim] = {}
    for _number, raw_id, flat, streams in entries:
        if flat:
            record = from_redis(model, raw_id, flat, streams)
            values = claims.values_of(record, group, stored=False)
            if values is not None:
                found[raw_id.decode("ascii")] = claims.Claim(model, group, values,
                                                             raw_id.decode("ascii"))
    peeked = [(field_, holder) for field_, holder in sorted(suspects) if holder in found]
    replies = yield gather([found[holder].call("peek", list) for _field, holder in peeked],
                           list)
    return {(field_, holder): (found[holder], reply[1] or None)
            for (field_, holder), reply in zip(peeked, replies) if reply[0] == field_}


def _orphan_claims(model: type[ActiveRecord], group: tuple[str, ...], report: CheckReport,
                   claimed: dict[bytes, tuple[str, bytes, str, int]],
                   holders: dict[bytes, dict[str, str]],
                   confirmed: dict[tuple[bytes, str], Any]) -> Plan:
    """Claims older than the grace period whose owner does not hold the value; repair:
    revoke, then drop (a value a record holds is claimed for it instead: see below)."""
    held_by_one = {field_ for field_, _holder in confirmed}
    orphans = [(key, field_, stored, owner) for field_, (key, stored, owner, age)
               in claimed.items()
               if age >= claims.GRACE_MS and owner not in holders.get(field_, {})]
    for key, field_, _stored, owner in orphans:
        report.problems.append(Problem(
            "orphan-claim", key, f"{'+'.join(group)}: claimed by {owner}, which does not "
            "hold the value", owner, field_))
    dropping = [orphan for orphan in orphans if orphan[1] not in held_by_one]
    if not (report.repair and dropping):
        return
    verdicts = yield gather([claims.revoke_by_field(model, group, owner, stored, field_)
                             for _key, field_, stored, owner in dropping], list)
    report.repaired += yield gather(
        [Call(SCRIPTS["claim"], (key,), ("drop", stored, "", "", b"", field_), int,
              model._meta.name)
         for (key, field_, stored, _owner), verdict in zip(dropping, verdicts)
         if verdict == b"revoked"], sum)


def _unclaimed_values(model: type[ActiveRecord], group: tuple[str, ...],
                      report: CheckReport, holders: dict[bytes, dict[str, str]],
                      confirmed: dict[tuple[bytes, str], Any]) -> Plan:
    """Values held by records of two shards (conflicts), and values one record holds
    without their claim; repair: the claim taken for that record (the token of a claim
    another record holds revoked first: that record does not hold the value)."""
    by_field: dict[bytes, list[str]] = {}
    for field_, holder in sorted(confirmed):
        by_field.setdefault(field_, []).append(holder)
    fixes: list[tuple[claims.Claim, bytes | None, bytes]] = []  # claim, token, field
    for field_, found in by_field.items():
        if len(found) > 1:
            for other in found[1:]:
                report.problems.append(Problem(
                    "unique-conflict", holders[field_][other],
                    f"{'+'.join(group)}: held by {found[0]} and {other}", other, field_,
                    found[0]))
            continue
        claim, token = confirmed[(field_, found[0])]
        owner = claims.parse_token(token)[0] if token else ""
        if owner == found[0]:
            continue  # claimed meanwhile: nothing to report
        report.problems.append(Problem(
            "unclaimed-value", holders[field_][found[0]],
            f"{'+'.join(group)}: held by {found[0]}, "
            + (f"claimed by {owner}, which does not hold it" if owner else "not claimed"),
            found[0], field_, owner))
        fixes.append((claim, token, field_))
    if report.repair and fixes:
        report.repaired += yield from _claim_for_holders(model, group, fixes)


def _claim_for_holders(model: type[ActiveRecord], group: tuple[str, ...],
                       fixes: list[tuple[claims.Claim, bytes | None, bytes]]) -> Plan:
    """Claim values for the records holding them: a claim another record holds (which
    does not hold the value) is revoked in its shard first, then replaced if unchanged.
    Returns how many were claimed."""
    stolen = [fix for fix in fixes if fix[1]]
    verdicts = yield gather([claims.revoke_by_field(
        model, group, claims.parse_token(token)[0], token, field_)
        for _claim, token, field_ in stolen if token is not None], list)
    refused = {id(fix) for fix, verdict in zip(stolen, verdicts) if verdict != b"revoked"}
    kept = [fix for fix in fixes if id(fix) not in refused]
    outcomes = yield gather([claim.call("claim", list, (token or b"").decode("ascii"),
                                        uuid.uuid4().hex) for claim, token, _field in kept],
                            list)
    return sum(1 for reply in outcomes if reply[0] in (b"took", b"had"))


def _check_shard(model: type[ActiveRecord], report: CheckReport, batch_size: int,
                 keyspace_pass: bool, prefix: str | None) -> Plan:
    repair = report.repair
    if keyspace_pass:
        yield from _audit_keyspace(model, report, batch_size, prefix)
    cursor = b"0"
    while True:
        cursor, records, fixed, problems = yield compile_audit_ids(
            model, cursor, batch_size, repair, prefix)
        report.records += records
        report.repaired += fixed
        report.problems += problems
        if cursor == b"0":
            break
    for position in range(2, 2 + len(model._meta.model_keys)):
        cursor = b"0"
        while True:
            cursor, fixed, problems = yield compile_audit_entries(
                model, position, cursor, batch_size, repair, prefix)
            report.repaired += fixed
            report.problems += problems
            if cursor == b"0":
                break


def run(model: type[ActiveRecord], repair: bool = False, batch_size: int = 1000,
        keyspace_pass: bool = True) -> CheckReport:
    """Check (and with ``repair`` fix) one model; see the module docstring."""
    return run_plan(configure.get_connection(),  # type: ignore[no-any-return]
                    check_plan(model, repair, batch_size, keyspace_pass))


def models_in(module: Any) -> list[type[ActiveRecord]]:
    """The ActiveRecord models a module defines."""
    from ..api.model import ActiveRecord

    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, ActiveRecord)
            and value is not ActiveRecord and value.__module__ == module.__name__]

