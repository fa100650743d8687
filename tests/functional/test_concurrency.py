"""Several processes (spawned, each with a few threads) run a mixed workload on overlapping
records and overlapping unique values against one real server; afterwards the keyspace is
consistent, no appended byte is lost or doubled, and every unique value went to one writer.

The CI run is short; a soak is the same test with more work::

    REPOCKET_SOAK_PROCESSES=8 REPOCKET_SOAK_OPS=10000 pytest tests/functional/test_concurrency.py

(``REPOCKET_SOAK_OPS`` is per process; ``REPOCKET_SOAK_THREADS``, default 2, threads per
process share it.) The figures (operations, ops/s, errors by type) are printed.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import random
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from repocket import ActiveRecord, attributes, configure, errors
from repocket.core import keys as keyspace

PROCESSES = int(os.environ.get("REPOCKET_SOAK_PROCESSES", "4"))
OPS = int(os.environ.get("REPOCKET_SOAK_OPS", "1200"))  # per process
THREADS = int(os.environ.get("REPOCKET_SOAK_THREADS", "2"))
STABLE = 8  # records every process appends to and updates, never deleted
NAMES = [f"v{i}" for i in range(6)]  # the names volatile records take (overlapping filters)
EMAILS = [f"e{i}@x" for i in range(60)]  # unique values records take and give back


class Account(ActiveRecord):
    """Records that are created, updated, appended to and deleted by everyone."""

    class Meta:
        namespace = "faults"
        codec = "compact"

    name = attributes.Unicode(index=True)
    email = attributes.Unicode(unique=True, null=True)
    score = attributes.Integer(index=True)
    log = attributes.ByteStream()


class Ticket(ActiveRecord):
    """Unique codes, claimed for good: whoever saved a code owns it."""

    class Meta:
        namespace = "faults"
        codec = "compact"

    code = attributes.Unicode(unique=True)
    owner = attributes.Unicode()


# -- checking the keyspace ---------------------------------------------------------------
def storage_problems(client: redis.Redis, model: type[ActiveRecord]) -> list[str]:
    """An independent check of the documented layout (README "Index layout"), for the
    compact-codec models above: every index entry, null-set member, unique claim and id
    is exactly what the stored records imply, and no ByteStream key is orphaned."""
    meta = model._meta
    prefix = meta.prefix
    problems: list[str] = []
    records: dict[str, dict[bytes, bytes]] = {}
    streams: list[str] = []
    for raw_key in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw_key.decode()
        rest = key[len(prefix) + 1:]
        if rest.endswith(tuple(f":field:{name}" for name in meta.stream_names)):
            streams.append(key)
        elif len(rest) == 36 and ":" not in rest:
            if client.type(key) != b"hash":
                problems.append(f"{key} is a {client.type(key)!r}")
            else:
                records[rest] = client.hgetall(key)
    ids = {member.decode() for member in client.smembers(meta.ids_key)}
    if ids != set(records):
        problems.append(f"id set without record: {sorted(ids - set(records))}; "
                        f"record not in id set: {sorted(set(records) - ids)}")
    for key in streams:
        record_id = key[len(prefix) + 1:].split(":", 1)[0]
        if record_id not in records:
            problems.append(f"orphaned stream {key}")
    for name in meta.indexed:
        attribute = meta.fields[name]
        expected: dict[bytes, float] = {}
        nulls: set[bytes] = set()
        for record_id, stored in records.items():
            raw = stored.get(name.encode())
            if raw is None:
                nulls.add(record_id.encode())
            elif attribute.index_kind == "score":
                expected[record_id.encode()] = float(raw)
            else:
                expected[raw.replace(b"\0", b"\0\1") + b"\0\0" + record_id.encode()] = 0.0
        actual = dict(client.zrange(keyspace.index_key(prefix, name), 0, -1, withscores=True))
        if actual != expected:
            problems.append(f"index {name}: extra {sorted(set(actual) - set(expected))[:5]}, "
                            f"missing {sorted(set(expected) - set(actual))[:5]}, wrong score "
                            f"{[k for k in actual if k in expected and actual[k] != expected[k]]}")
        if attribute.nullable:
            stored_nulls = client.smembers(keyspace.null_key(prefix, name))
            if stored_nulls != nulls:
                problems.append(f"null set {name}: {stored_nulls ^ nulls}")
    for group in meta.unique_together:
        claims: dict[bytes, bytes] = {}
        for record_id, stored in records.items():
            values = [stored.get(field.encode()) for field in group]
            if None in values:
                continue
            value = values[0]
            if value in claims:
                problems.append(f"unique {group}: {value!r} held by {claims[value]!r} "
                                f"and {record_id}")
            claims[value] = record_id.encode()
        stored_claims = client.hgetall(keyspace.unique_key(prefix, group))
        if stored_claims != claims:
            problems.append(f"unique hash {group}: stored {len(stored_claims)} claims, "
                            f"records imply {len(claims)}; differing "
                            f"{sorted(set(stored_claims.items()) ^ set(claims.items()))[:5]}")
    return problems


def assert_consistent(client: redis.Redis, *models: type[ActiveRecord]) -> None:
    """The test's own layout check, then the checker's (``Model.objects.check()``)."""
    for model in models:
        assert storage_problems(client, model) == [], model.__name__
    for model in models:
        report = model.objects.check()
        assert report.ok, (model.__name__, [(p.kind, p.key, p.detail) for p in report.problems])
        assert report.problems == []


# -- the workload -------------------------------------------------------------------------
class _Tally:
    """What one process did, for the checks that follow (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.chunks: list[tuple[str, bytes]] = []  # (stable record id, chunk) acknowledged
        self.codes: list[tuple[str, str]] = []  # (Ticket code, thread tag) granted
        self.bad_reads: list[str] = []

    def result(self) -> dict[str, Any]:
        return {"ops": dict(self.ops), "errors": dict(self.errors), "chunks": self.chunks,
                "codes": self.codes, "bad_reads": self.bad_reads}


def _append(rng: random.Random, tag: str, n: int, stable: list[str], tally: _Tally) -> None:
    """Append to a record everyone appends to: APPEND, or extend the loaded value and save."""
    record_id = rng.choice(stable)
    chunk = f"<{tag}:{n}>".encode()
    record = Account.objects.get(id=record_id)
    if rng.random() < 0.5:
        record.append_log(chunk)
    else:
        record.log = record.log + chunk
        record.score = rng.randrange(1000)
        record.save()
    with tally.lock:
        tally.chunks.append((record_id, chunk))


def _update_stable(rng: random.Random, stable: list[str]) -> None:
    """A shared record's indexed fields change; its stream must survive the save."""
    record = Account.objects.get(id=rng.choice(stable))
    record.score = rng.randrange(1000)
    record.email = rng.choice([*EMAILS, None])
    record.save()


def _new_account(rng: random.Random) -> Account:
    return Account(name=rng.choice(NAMES), score=rng.randrange(1000), log=b"v",
                   email=rng.choice(EMAILS) if rng.random() < 0.2 else None)


def _update(rng: random.Random) -> None:
    """Update a volatile record someone else may be deleting (saved whole if so)."""
    found = Account.objects.filter(name=rng.choice(NAMES))[:3]
    if found:
        record = rng.choice(list(found))
        record.score = rng.randrange(1000)
        record.email = rng.choice(EMAILS) if rng.random() < 0.3 else None
        record.name = rng.choice(NAMES)
        record.save()


def _delete(rng: random.Random) -> None:
    found = Account.objects.filter(name=rng.choice(NAMES))[:2]
    if found:
        rng.choice(list(found)).delete()


def _append_volatile(rng: random.Random) -> None:
    found = Account.objects.filter(name=rng.choice(NAMES))[:1]
    if found:
        found[0].append_log(b"+")  # DoesNotExist if deleted meanwhile


def _claim(rng: random.Random, tag: str, codes: list[str], tally: _Tally) -> None:
    """Claim unique codes for good: one, or a batch (all or none)."""
    wanted = rng.sample(codes, rng.choice([1, 3]))
    if len(wanted) == 1:
        Ticket.create(code=wanted[0], owner=tag)
    else:
        Ticket.objects.bulk_create([Ticket(code=code, owner=tag) for code in wanted])
    with tally.lock:
        tally.codes.extend((code, tag) for code in wanted)


def _query(rng: random.Random, tally: _Tally) -> None:
    """Every record a query returns matches it, in order (one atomic script)."""
    low = rng.randrange(1000)
    scores = [row.score for row in Account.objects.filter(score__gte=low).order_by("score")[:10]]
    bad = []
    if any(score < low for score in scores) or scores != sorted(scores):
        bad.append(f"score__gte={low} gave {scores}")
    name = rng.choice(NAMES)
    for row in Account.objects.filter(name=name, score__lt=500)[:25]:
        if row.name != name or row.score >= 500:
            bad.append(f"name={name} gave {row.name}/{row.score}")
    if bad:
        with tally.lock:
            tally.bad_reads.extend(bad)


# kind -> (weight, operation(rng, tag, n, stable, codes, tally))
OPERATIONS: dict[str, tuple[int, Any]] = {
    "append": (22, lambda r, tag, n, st, c, t: _append(r, tag, n, st, t)),
    "update-stable": (10, lambda r, tag, n, st, c, t: _update_stable(r, st)),
    "create": (12, lambda r, tag, n, st, c, t: _new_account(r).save()),
    "update": (10, lambda r, tag, n, st, c, t: _update(r)),
    "delete": (9, lambda r, tag, n, st, c, t: _delete(r)),
    "append-volatile": (4, lambda r, tag, n, st, c, t: _append_volatile(r)),
    "bulk_create": (6, lambda r, tag, n, st, c, t: Account.objects.bulk_create(
        [_new_account(r) for _ in range(4)])),
    "claim": (8, lambda r, tag, n, st, c, t: _claim(r, tag, c, t)),
    "filter": (15, lambda r, tag, n, st, c, t: _query(r, t)),
    "queryset-delete": (4, lambda r, tag, n, st, c, t: Account.objects.filter(
        name=r.choice(NAMES), score__lt=50).delete()),
}


def _thread_loop(seed: int, tag: str, ops: int, stable: list[str], codes: list[str],
                 tally: _Tally) -> None:
    rng = random.Random(seed)
    kinds = list(OPERATIONS)
    weights = [OPERATIONS[kind][0] for kind in kinds]
    for n in range(ops):
        kind = rng.choices(kinds, weights)[0]
        try:
            OPERATIONS[kind][1](rng, tag, n, stable, codes, tally)
        except (errors.UniqueViolation, errors.DoesNotExist) as exc:
            with tally.lock:
                tally.errors[type(exc).__name__] += 1
            kind += " (refused)"
        except Exception as exc:  # anything else is a failure the test reports
            with tally.lock:
                tally.errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
            kind += " (failed)"
        with tally.lock:
            tally.ops[kind] += 1


def run_worker(url: str, seed: int, ops: int, threads: int, stable: list[str],
               codes: list[str]) -> dict[str, Any]:
    """A spawned process: ``threads`` threads share ``ops`` operations and one pool."""
    configure.connection_pool(url=url, socket_timeout=30)
    tally = _Tally()
    workers = [threading.Thread(target=_thread_loop,
                                args=(seed * 100 + t, f"p{seed}t{t}", ops // threads, stable,
                                      codes, tally))
               for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    configure.reset()
    return tally.result()


@pytest.mark.slow  # the concurrency soak: tox -e soak runs it at 8 x 10k
def test_mixed_workload_from_several_processes_keeps_every_invariant(
        client: redis.Redis, redis_url: str, capsys: Any) -> None:
    stable = [str(Account.create(name=f"stable{i}", score=i, email=None).pk) for i in range(STABLE)]
    codes = [f"T{i}" for i in range(max(8, PROCESSES * OPS // 12))]
    context = multiprocessing.get_context("spawn")
    started = time.monotonic()
    with context.Pool(PROCESSES) as pool:
        pending = [pool.apply_async(run_worker, (redis_url, p, OPS, THREADS, stable, codes))
                   for p in range(PROCESSES)]
        results = [job.get(timeout=3600) for job in pending]
    elapsed = time.monotonic() - started

    ops: collections.Counter[str] = collections.Counter()
    errors_seen: collections.Counter[str] = collections.Counter()
    for result in results:
        ops.update(result["ops"])
        errors_seen.update(result["errors"])
    total = sum(ops.values())
    with capsys.disabled():
        print(f"\n[concurrency] {PROCESSES} processes x {THREADS} threads, {total} operations "
              f"in {elapsed:.1f} s = {total / elapsed:.0f} ops/s (process start-up included)"
              f"\n[concurrency] operations: {dict(sorted(ops.items()))}"
              f"\n[concurrency] errors by type: {dict(sorted(errors_seen.items()))}")

    assert total == PROCESSES * THREADS * (OPS // THREADS)
    unexpected = {kind: count for kind, count in errors_seen.items()
                  if kind not in ("UniqueViolation", "DoesNotExist")}
    assert unexpected == {}
    assert [bad for result in results for bad in result["bad_reads"]] == []
    assert errors_seen["UniqueViolation"] > 0, "the unique values never overlapped"

    # no appended byte lost, none doubled: each acknowledged chunk is in its stream once
    chunks_by_record: dict[str, list[bytes]] = collections.defaultdict(list)
    for result in results:
        for record_id, chunk in result["chunks"]:
            chunks_by_record[record_id].append(chunk)
    for record_id in stable:
        stored = client.get(keyspace.stream_key(Account._meta.record_key(record_id), "log"))
        stored = stored or b""
        appended = chunks_by_record[record_id]
        assert len(stored) == sum(len(chunk) for chunk in appended), record_id
        assert sorted(stored.replace(b">", b">\n").split()) == sorted(appended), record_id

    # each unique code granted to exactly one writer, and what is stored is what was granted
    grants = [(code, tag) for result in results for code, tag in result["codes"]]
    granted = [code for code, _tag in grants]
    assert len(granted) == len(set(granted)), collections.Counter(granted).most_common(3)
    stored_codes = {ticket.code: ticket.owner for ticket in Ticket.objects.all()}
    assert stored_codes == dict(grants)
    assert set(client.hkeys(keyspace.unique_key(Ticket._meta.prefix, ("code",)))) == {
        code.encode() for code in granted}

    for record_id in stable:  # never deleted, still loadable
        assert isinstance(Account.objects.get(id=uuid.UUID(record_id)), Account)
    assert_consistent(client, Account, Ticket)
