"""The consistency checker: ``Model.objects.check()``, ``reindex()`` and ``repocket check``.

Verifies, in bounded batches (no script blocks Redis for long), that every id in
a model's id set has its record, every record is in the id set and in its
indexes, every index entry matches its record's current value, unique values
are held once, and no ByteStream key outlives its record. With ``repair=True``
it fixes what can be fixed; two records holding one unique value is reported,
never guessed at. Compiling the batch calls is pure; ``run`` executes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from ..connections import configure
from ..core import keys as keyspace
from ..core.lua import SCRIPTS
from ..core.plan import Call
from ..exec.scripts import execute

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


def _scan(client: redis.Redis, pattern: str, count: int) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=count):
        yield key.decode() if isinstance(key, bytes) else key


def _audit_keyspace(model: type[ActiveRecord], client: redis.Redis, report: CheckReport,
                    count: int) -> None:
    """Records missing from the id set, and streams whose record is gone (SCAN, never KEYS)."""
    meta = model._meta
    for key in _scan(client, keyspace.scan_pattern(meta.prefix), count):
        record_id = keyspace.parse_record_key(meta.prefix, key)
        stream = keyspace.parse_stream_key(meta.prefix, key)
        if record_id and client.type(key) == b"hash":
            if not client.sismember(meta.ids_key, record_id):
                report.problems.append(Problem("unlisted-record", key, "not in the id set"))
                if report.repair:
                    client.sadd(meta.ids_key, record_id)
                    report.repaired += 1
        elif (stream and stream[1] in meta.stream_names and not client.exists(stream[0])):
                report.problems.append(Problem("orphan-stream", key, "its record is gone"))
                if report.repair:
                    client.delete(key)
                    report.repaired += 1


def run(model: type[ActiveRecord], repair: bool = False, batch_size: int = 1000,
        keyspace_pass: bool = True) -> CheckReport:
    """Check (and with ``repair`` fix) one model; see the module docstring."""
    client = configure.get_connection()
    report = CheckReport(model._meta.name, repair=repair)
    mode = "repair" if repair else "check"
    if keyspace_pass:
        _audit_keyspace(model, client, report, batch_size)
    cursor = b"0"
    while True:
        cursor, records, fixed, problems = execute(
            client, compile_audit_ids(model, cursor, batch_size, mode))
        report.records += records
        report.repaired += fixed
        report.problems += problems
        if cursor == b"0":
            break
    for position in range(2, 2 + len(model._meta.model_keys)):
        cursor = b"0"
        while True:
            cursor, fixed, problems = execute(
                client, compile_audit_entries(model, position, cursor, batch_size, mode))
            report.repaired += fixed
            report.problems += problems
            if cursor == b"0":
                break
    return report


def models_in(module: Any) -> list[type[ActiveRecord]]:
    """The ActiveRecord models a module defines."""
    from ..api.model import ActiveRecord

    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, ActiveRecord)
            and value is not ActiveRecord and value.__module__ == module.__name__]

