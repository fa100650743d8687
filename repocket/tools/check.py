"""The consistency checker: ``Model.objects.check()``, ``reindex()`` and ``repocket check``.

Verifies, in bounded batches (no script blocks Redis for long), that every id in
a model's id set has its record, every record is in the id set and in its
indexes, every index entry matches its record's current value, unique values
are held once, and no ByteStream key outlives its record. With ``repair=True``
it fixes what can be fixed; two records holding one unique value is reported,
never guessed at. Compiling the batch calls is pure; ``run`` executes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..connections import configure
from ..core import keys as keyspace
from ..core.lua import SCRIPTS
from ..core.plan import Call, Command, Plan
from ..exec.plans import run_plan

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

@dataclass(frozen=True)
class Problem:
    kind: str  # orphan-id, unlisted-record, not-a-hash, missing-entry, missing-unique,
    #            unique-conflict, stale-entry, orphan-stream
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

    @property
    def unrepaired(self) -> list[Problem]:
        """Problems still in Redis: all of them when checking, the unfixable after repair."""
        if not self.repair:
            return self.problems
        return [p for p in self.problems if p.kind in ("unique-conflict", "not-a-hash")]

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


def compile_audit_ids(model: type[ActiveRecord], cursor: bytes, count: int, mode: str) -> Call:
    """One batch of the id-set pass (lua/reindex.lua): (cursor, records, fixed, problems)."""
    meta = model._meta

    def decode(reply: list[Any]) -> tuple[bytes, int, int, list[Problem]]:
        return reply[0], int(reply[1]), int(reply[2]), _problems(reply[3:])

    return Call(SCRIPTS["reindex"], (meta.ids_key, *meta.model_keys),
                (meta.write_schema(), len(meta.model_keys), cursor, count, mode), decode,
                meta.name)


def compile_audit_entries(model: type[ActiveRecord], key_position: int, cursor: bytes,
                          count: int, mode: str) -> Call:
    """One batch of the entries pass over one index key (lua/prune.lua)."""
    meta = model._meta

    def decode(reply: list[Any]) -> tuple[bytes, int, list[Problem]]:
        return reply[0], int(reply[1]), _problems(reply[2:])

    return Call(SCRIPTS["prune"], (meta.ids_key, *meta.model_keys),
                (meta.write_schema(), len(meta.model_keys), key_position, cursor, count, mode),
                decode, meta.name)


def _audit_keyspace(model: type[ActiveRecord], report: CheckReport, count: int) -> Plan:
    """Records missing from the id set, and streams whose record is gone (SCAN, never KEYS)."""
    meta = model._meta
    pattern = keyspace.scan_pattern(meta.prefix)
    cursor: Any = 0
    while True:
        cursor, found = yield Command(("SCAN", cursor, "MATCH", pattern, "COUNT", count),
                                      meta.name)
        for raw in found:
            key = raw.decode() if isinstance(raw, bytes) else raw
            yield from _audit_key(model, report, key)
        if int(cursor) == 0:
            return


def _audit_key(model: type[ActiveRecord], report: CheckReport, key: str) -> Plan:
    meta = model._meta
    record_id = keyspace.parse_record_key(meta.prefix, key)
    stream = keyspace.parse_stream_key(meta.prefix, key)
    if record_id and (yield Command(("TYPE", key), meta.name)) in (b"hash", "hash"):
        if not (yield Command(("SISMEMBER", meta.ids_key, record_id), meta.name)):
            report.problems.append(Problem("unlisted-record", key, "not in the id set"))
            if report.repair:
                yield Command(("SADD", meta.ids_key, record_id), meta.name)
                report.repaired += 1
    elif (stream and stream[1] in meta.stream_names
          and not (yield Command(("EXISTS", stream[0]), meta.name))):
        report.problems.append(Problem("orphan-stream", key, "its record is gone"))
        if report.repair:
            yield Command(("DEL", key), meta.name)
            report.repaired += 1


def check_plan(model: type[ActiveRecord], repair: bool = False, batch_size: int = 1000,
               keyspace_pass: bool = True) -> Plan:
    """Check (and with ``repair`` fix) one model, as a plan; see the module docstring."""
    report = CheckReport(model._meta.name, repair=repair)
    mode = "repair" if repair else "check"
    if keyspace_pass:
        yield from _audit_keyspace(model, report, batch_size)
    cursor = b"0"
    while True:
        cursor, records, fixed, problems = yield compile_audit_ids(
            model, cursor, batch_size, mode)
        report.records += records
        report.repaired += fixed
        report.problems += problems
        if cursor == b"0":
            break
    for position in range(2, 2 + len(model._meta.model_keys)):
        cursor = b"0"
        while True:
            cursor, fixed, problems = yield compile_audit_entries(
                model, position, cursor, batch_size, mode)
            report.repaired += fixed
            report.problems += problems
            if cursor == b"0":
                break
    return report


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

