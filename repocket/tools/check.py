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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..connections import configure
from ..core import claims
from ..core import keys as keyspace
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
    #            orphan-claim (a cluster's global claim its holder does not hold)
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
    """On a cluster, the global claims of unique values (core/claims.py): a claim whose
    holder does not hold the value (its record is gone or holds another: an orphan),
    older than the grace period (a younger one may be a save still writing), is reported
    as 'orphan-claim'; repairing drops it (only if unchanged since it was read)."""
    meta = model._meta
    for group in meta.unique_together:
        buckets = [keyspace.claim_key(meta.prefix, group, bucket)
                   for bucket in range(keyspace.CLAIM_BUCKETS)]
        listed = yield gather([_read_hash(model, key) for key in buckets], list)
        by_shard: dict[str, list[tuple[str, bytes, bytes, str]]] = {}
        for key, (now, flat) in zip(buckets, listed):
            for field_, stored in zip(flat[::2], flat[1::2]):
                owner, _, since = stored.decode("ascii", "replace").partition("@")
                if now - int(since or 0) >= claims.GRACE_MS:
                    shard_hash = keyspace.unique_key(meta.prefix_of(owner), group)
                    by_shard.setdefault(shard_hash, []).append((key, field_, stored, owner))
        hashes = list(by_shard)
        holders = yield gather([_read_hash(model, shard_hash, [e[1] for e in by_shard[shard_hash]])
                                for shard_hash in hashes], list)
        orphans = [entry for shard_hash, (_now, values) in zip(hashes, holders)
                   for entry, holder in zip(by_shard[shard_hash], values)
                   if holder is None or holder.decode("ascii", "replace") != entry[3]]
        for key, field_, _stored, owner in orphans:
            report.problems.append(Problem(
                "orphan-claim", key, f"{'+'.join(group)}: claimed by {owner}, which does not "
                "hold the value", owner, field_))
        if report.repair and orphans:
            report.repaired += yield gather(
                [Call(SCRIPTS["claim"], (key,), ("drop", stored, "", claims.GRACE_MS, b"",
                                                 field_), int, meta.name)
                 for key, field_, stored, _owner in orphans], sum)


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

