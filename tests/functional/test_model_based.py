"""Model-based testing: a hypothesis state machine drives random sequences of create,
save, partial save of loaded (possibly stale) instances, delete, append, bulk_create,
filter/exclude/order_by/slicing/count, get by unique field and QuerySet.delete against
repocket on a real server and against a plain in-memory model, and requires identical
observable results. A third model has Meta.optimistic_lock: the in-memory model keeps
each record's version and each instance's, and expects StaleRecord where they differ;
it has Meta.changes too: its feed must hold one entry per write that succeeded.

Profiles: ``REPOCKET_HYPOTHESIS_PROFILE=soak`` runs 10,000 examples per test (the
default, ``ci``, a short run). The examples run are written to the terminal summary
(``[hypothesis] ... examples``) and to ``.hypothesis/repocket-examples.txt``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import functools
import time
import uuid
from typing import Any

import hypothesis.strategies as st
import pytest
import redis
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from repocket import ActiveRecord, F, attributes, errors

from .hypothesis_support import example_reporter, profile

D = decimal.Decimal
UTC = dt.timezone.utc

PROFILE = profile("repocket", ci={"max_examples": 60, "stateful_step_count": 30},
                  soak={"max_examples": 10_000, "stateful_step_count": 50})
EXAMPLES: dict[str, int] = {}
_report_examples = example_reporter(EXAMPLES)




# -- the models under test -----------------------------------------------------------------
class Target(ActiveRecord):
    class Meta:
        namespace = "mbt"

    name = attributes.Unicode()


class Item(ActiveRecord):
    class Meta:
        namespace = "mbt"

    n = attributes.Integer(index=True, null=True)
    n_plain = attributes.Integer()
    s = attributes.Unicode(index=True)
    s_plain = attributes.Unicode(null=True)
    at = attributes.DateTime(index=True, null=True)  # aware and naive values mixed
    at_plain = attributes.DateTime(null=True)
    dec = attributes.Decimal(index=True)
    dec_plain = attributes.Decimal(null=True)
    fl = attributes.Float(index=True, null=True)
    fl_plain = attributes.Float()
    email = attributes.Unicode(unique=True, null=True)
    ptr = attributes.Pointer(Target, null=True, index=True)
    log = attributes.ByteStream()


class CompactItem(Item):
    class Meta:
        namespace = "mbt"
        codec = "compact"


class LockedItem(Item):
    class Meta:
        namespace = "mbt"
        optimistic_lock = True
        changes = True


TARGET_IDS = [uuid.UUID(int=(i + 1) << 64 | 0x8000_0000_0000_1000) for i in range(3)]

# -- value domains: small, so that ties, equal instants and unique clashes are common -------
ZONES = [None, UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
         dt.timezone(-dt.timedelta(hours=1, minutes=1, seconds=1))]
INSTANTS = [dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2020, 1, 1, 5, 30, tzinfo=UTC),
            dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            dt.datetime(2300, 1, 1, tzinfo=UTC), dt.datetime(2300, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            dt.datetime(1, 1, 2, tzinfo=UTC)]


def _in_zone(instant: dt.datetime, zone: dt.tzinfo | None) -> dt.datetime:
    return instant.replace(tzinfo=None) if zone is None else instant.astimezone(zone)


INTS = st.sampled_from([-2**63, -5, -1, 0, 1, 2, 5, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1])
DECIMALS = st.sampled_from([D(t) for t in (
    "-1E+2", "-1", "-0", "0", "0.0", "0.001", "1", "1.0", "1.50", "1.5", "1E+2", "100",
    "9007199254740993", "9007199254740993.5", "-9007199254740993")])
FLOATS = st.sampled_from([float("-inf"), -1e300, -1.5, -0.0, 0.0, 0.1, 1.5, 2.0**53,
                          2.0**53 + 2, 1e300, float("inf")]) | st.floats(allow_nan=False)
TEXTS = st.text(alphabet="ab\x00\x7fé\U0001f600", max_size=3)
DATETIMES = st.builds(_in_zone, st.sampled_from(INSTANTS), st.sampled_from(ZONES))
EMAILS = st.sampled_from(["a", "b", "c", "a\x00", ""])
POINTERS = st.sampled_from(TARGET_IDS)
NULLABLE = {"n", "s_plain", "at", "at_plain", "dec_plain", "fl", "email", "ptr"}
BASE = {"n": INTS, "n_plain": INTS, "s": TEXTS, "s_plain": TEXTS, "at": DATETIMES,
        "at_plain": DATETIMES, "dec": DECIMALS, "dec_plain": DECIMALS, "fl": FLOATS,
        "fl_plain": FLOATS, "email": EMAILS, "ptr": POINTERS}
VALUES = {name: (st.none() | strategy) if name in NULLABLE else strategy
          for name, strategy in BASE.items()}
HASH_FIELDS = sorted(BASE)
ORDERABLE = HASH_FIELDS
# what a field never given a value holds: None when null=True (as in Django), else its
# type's empty value
EMPTY = {"n_plain": 0, "s": "", "dec": D(0), "fl_plain": 0.0}

RECORDS = st.fixed_dictionaries(
    {"email": VALUES["email"]},
    optional={k: v for k, v in {**VALUES, "log": st.binary(max_size=4)}.items() if k != "email"})


@st.composite
def changes(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from([*HASH_FIELDS, "log"]), min_size=1, max_size=3,
                          unique=True))
    return {name: draw(VALUES[name]) if name != "log" else draw(st.binary(max_size=4))
            for name in names}


def _ops(name: str) -> list[str]:
    ops = ["exact", "in", "gt", "gte", "lt", "lte", "range", "isnull"]
    return [*ops, "startswith"] if name in ("s", "s_plain", "email") else ops


@st.composite
def lookups(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(HASH_FIELDS))
    op = draw(st.sampled_from(_ops(name)))
    value: Any
    if op == "isnull":
        value = draw(st.booleans())
    elif op == "in":
        value = draw(st.lists(BASE[name], max_size=3))
    elif op == "range":  # often one value twice: an inclusive range of a single value
        low = draw(BASE[name])
        value = (low, low if draw(st.booleans()) else draw(BASE[name]))
    elif op == "exact":
        value = draw(VALUES[name])  # None: isnull
    else:
        value = draw(BASE[name])
    if name == "ptr" and op != "isnull" and draw(st.booleans()):  # an id as text, or an instance
        as_text = draw(st.booleans())
        convert = (lambda v: str(v)) if as_text else (lambda v: Target(id=v, name="x"))
        value = ([convert(v) for v in value] if op == "in" else
                 tuple(convert(v) for v in value) if op == "range" else
                 value if value is None else convert(value))
    return (name if op == "exact" and draw(st.booleans()) else f"{name}__{op}"), value


# update(): per numeric field, the F arithmetic drawn (operator, operand), as Python computes it
ARITHMETIC = {
    "n": [("+", 1), ("*", -3), ("//", 2)],
    "n_plain": [("+", 2**60), ("-", 7), ("*", 2**70), ("//", -3)],
    "dec": [("+", D("0.10")), ("*", D("-1.5")), ("-", D("1E+2"))],
    "dec_plain": [("+", D("-0.001")), ("*", 3)],
    "fl_plain": [("+", 1.5), ("*", -2.0), ("/", 4.0)],
}
UPDATABLE = sorted({*ARITHMETIC, "s", "s_plain", "email", "ptr", "at", "fl"})


@st.composite
def assignments(draw: st.DrawFn) -> dict[str, tuple[str, Any, Any]]:
    """update() keywords: ('F', op, operand) for arithmetic on the field itself, or
    ('=', value, None) for a literal."""
    names = draw(st.lists(st.sampled_from(UPDATABLE), min_size=1, max_size=3, unique=True))
    drawn: dict[str, tuple[str, Any, Any]] = {}
    for name in names:
        if name in ARITHMETIC and draw(st.integers(0, 3)) > 0:  # F three times in four
            op, operand = draw(st.sampled_from(ARITHMETIC[name]))
            drawn[name] = ("F", op, operand)
        else:
            drawn[name] = ("=", draw(VALUES[name]), None)
    return drawn


_PY_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a / b, "//": lambda a, b: a // b}


def computed(value: Any, op: str, operand: Any) -> Any:
    """What F(field) op operand gives, as Python computes it exactly (None stays None)."""
    if value is None:
        return None
    with decimal.localcontext(decimal.Context(prec=10_000)):
        return _PY_OPS[op](value, operand)


ORDERS = st.lists(st.sampled_from(ORDERABLE), min_size=1, max_size=2, unique=True).flatmap(
    lambda names: st.tuples(*[st.sampled_from([n, f"-{n}"]) for n in names]))
WINDOWS = st.none() | st.tuples(st.integers(0, 4), st.none() | st.integers(0, 6))


# -- the in-memory model -------------------------------------------------------------------
def typed(name: str, value: Any) -> Any:
    """A stored value as it compares: instants (naive taken as UTC), ids as their text."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if name == "ptr" or isinstance(value, ActiveRecord):
        return str(value.pk if isinstance(value, ActiveRecord) else uuid.UUID(str(value)))
    return value


def rep(value: Any) -> Any:
    """What a value is stored as: two values with one rep are one stored value."""
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"datetime:{value.isoformat()}"
    if isinstance(value, D):
        return f"decimal:{value}"
    return (type(value).__name__, value)


def holds(key: str, lookup: Any, record: dict[str, Any]) -> bool:
    name, _, op = key.partition("__")
    op = op or "exact"
    stored = typed(name, record[name])
    if op == "isnull" or (op == "exact" and lookup is None):
        return (stored is None) == (True if lookup is None else lookup)
    if stored is None:
        return False
    if op == "in":
        return any(stored == typed(name, v) for v in lookup)
    if op == "range":
        return typed(name, lookup[0]) <= stored <= typed(name, lookup[1])
    value = typed(name, lookup)
    return {"exact": stored == value, "gt": stored > value, "gte": stored >= value,
            "lt": stored < value, "lte": stored <= value,
            "startswith": op == "startswith" and stored.startswith(value)}[op]


def expected_order(db: dict[uuid.UUID, dict[str, Any]], ids: list[uuid.UUID],
                   specs: tuple[str, ...]) -> list[uuid.UUID]:
    """README: typed values, None first, each field in its direction; ties by id text in
    the first field's direction."""
    def compare(a: uuid.UUID, b: uuid.UUID) -> int:
        for spec in specs:
            name = spec.lstrip("-")
            x, y = typed(name, db[a][name]), typed(name, db[b][name])
            if x == y:
                continue
            less = x is None or (y is not None and x < y)
            return (1 if less else -1) if spec.startswith("-") else (-1 if less else 1)
        first_desc = specs[0].startswith("-")
        less = str(a) < str(b)
        return (1 if less else -1) if first_desc else (-1 if less else 1)

    return sorted(ids, key=functools.cmp_to_key(compare))


@dataclasses.dataclass
class Handle:
    """One Python instance, and what the model says it knows."""

    instance: ActiveRecord
    values: dict[str, Any]  # field -> value (Pointer: target id), 'log' -> bytes
    persisted: bool = False
    known: dict[str, Any] = dataclasses.field(default_factory=dict)  # field -> rep last synced
    synced: bytes | None = None  # the ByteStream as this instance last synced it
    version: int = 0  # optimistic_lock: the record's version as this instance knows it


def _full(values: dict[str, Any]) -> dict[str, Any]:
    full = {name: values.get(name, EMPTY.get(name)) for name in HASH_FIELDS}
    full["log"] = values.get("log", b"")
    return full


class ItemMachine(RuleBasedStateMachine):
    model: type[Item] = Item

    def __init__(self) -> None:
        super().__init__()
        CLIENT.flushdb()
        for i, target_id in enumerate(TARGET_IDS):
            Target.create(id=target_id, name=f"t{i}")
        self.db: dict[uuid.UUID, dict[str, Any]] = {}  # id -> field values, 'log': bytes|None
        self.versions: dict[uuid.UUID, int] = {}  # id -> version (optimistic_lock)
        self.locked = self.model._meta.optimistic_lock
        self.feed_entries = 0  # Meta.changes: one per committed write
        # records whose deadline passed: their 'expire' entries come with a later write's sweep
        self.expirations: collections.Counter[uuid.UUID] = collections.Counter()
        self.handles: list[Handle] = []
        self.steps = 0

    # -- the API under test -------------------------------------------------------------------
    def io(self, target: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call repocket: ``target.method(...)`` (``list``: the queryset's records); the
        async machine awaits ``target.amethod(...)`` instead."""
        if method == "list":
            return list(target)
        return getattr(target, method)(*args, **kwargs)

    # -- model helpers ----------------------------------------------------------------------
    def _email_taken(self, email: Any, owner: uuid.UUID, claimed: set[str]) -> bool:
        if email is None:
            return False
        return email in claimed or any(
            record["email"] == email for rid, record in self.db.items() if rid != owner)

    def _plan_save(self, handle: Handle) -> tuple[dict[str, Any], bool]:
        """The record a save of ``handle`` would store, and whether it is a partial save."""
        rid = handle.instance.pk
        if handle.persisted and rid in self.db:
            new = dict(self.db[rid])
            for name in HASH_FIELDS:
                if rep(handle.values[name]) != handle.known.get(name):
                    new[name] = handle.values[name]
            current, synced = handle.values["log"], handle.synced
            if synced is not None and current.startswith(synced):
                added = current[len(synced):]
                if added:
                    new["log"] = (new["log"] or b"") + added
            elif synced != current:
                new["log"] = current or None
            return new, True
        new = {name: handle.values[name] for name in HASH_FIELDS}
        new["log"] = handle.values["log"] or None
        return new, False

    def _synced(self, handle: Handle) -> None:
        handle.persisted = True
        handle.known = {name: rep(handle.values[name]) for name in HASH_FIELDS}
        handle.synced = handle.values["log"]
        handle.version = self.versions.get(handle.instance.pk, 0)
        if self.locked:
            assert handle.instance.lock_version == handle.version

    def _written(self, rid: uuid.UUID, record: dict[str, Any]) -> None:
        """A save or create of ``rid`` succeeded: its values, the next version."""
        self.db[rid] = record
        self.versions[rid] = self.versions.get(rid, 0) + 1
        self.feed_entries += 1

    def _removed(self, rid: uuid.UUID) -> dict[str, Any] | None:
        self.versions.pop(rid, None)
        self.feed_entries += rid in self.db
        return self.db.pop(rid, None)

    def _is_stale(self, handle: Handle) -> bool:
        """Whether a save or delete of ``handle`` must raise StaleRecord (optimistic_lock):
        the record exists at another version than the instance holds."""
        rid = handle.instance.pk
        return self.locked and rid in self.db and handle.version != self.versions[rid]

    def _check_record(self, record: ActiveRecord | None, rid: uuid.UUID) -> None:
        expected = self.db.get(rid)
        if expected is None:
            assert record is None, f"{rid} should not exist"
            return
        assert record is not None, f"{rid} is missing"
        got = record.to_dict()
        for name in HASH_FIELDS:
            assert rep(got[name]) == rep(expected[name]), (name, got[name], expected[name])
        assert got["log"] == (expected["log"] or b"")
        if expected["ptr"] is not None:
            assert isinstance(record._values["ptr"], Target)

    def _handle(self, at: int) -> Handle:
        return self.handles[at % len(self.handles)]

    def _expect_write(self, action: Any, violation: bool) -> Any:
        if violation:
            with_error: Any = None
            try:
                action()
            except errors.UniqueViolation as exc:
                with_error = exc
            assert with_error is not None, "the email is taken: UniqueViolation expected"
            assert with_error.field == "email"
            return None
        return action()

    # -- rules ----------------------------------------------------------------------------------
    @rule(values=RECORDS, reuse=st.none() | st.integers(0, 99))
    def create(self, values: dict[str, Any], reuse: int | None) -> None:
        """A new instance, saved; with ``reuse``, it takes an existing record's id (a whole
        overwrite of that record)."""
        given = dict(values)
        if reuse is not None and self.db:
            given["id"] = sorted(self.db)[reuse % len(self.db)]
        instance = self.model(**given)
        handle = Handle(instance, _full(values))
        self.handles.append(handle)
        if self._is_stale(handle):  # a new instance expects no record: version 0
            with pytest.raises(errors.StaleRecord):
                self.io(instance, "save")
            return
        new, _ = self._plan_save(handle)
        violation = self._email_taken(new["email"], instance.pk, set())
        self._expect_write(lambda: self.io(instance, "save"), violation)
        if not violation:
            self._written(instance.pk, new)
            self._synced(handle)

    @rule(values=RECORDS)
    def get_or_create(self, values: dict[str, Any]) -> None:
        """get_or_create by the unique email (one atomic script): the record holding the
        email, untouched, or a new one from the email and the defaults."""
        email = values["email"]
        if email is None:
            return  # no unique lookup: the query-then-create path, tested elsewhere
        owner = next((rid for rid, record in self.db.items() if record["email"] == email),
                     None)
        defaults = {name: value for name, value in values.items() if name != "email"}
        record, created = self.io(self.model.objects, "get_or_create", email=email,
                                  defaults=defaults)
        assert created == (owner is None)
        if owner is not None:
            assert record.pk == owner
            # found: its Pointers hold ids, loaded on first access (pointer_depth=0)
            loaded = self.io(self.model.objects, "get", id=owner)
            self._check_record(loaded, owner)
            assert ({n: rep(v) for n, v in record.to_dict().items()}
                    == {n: rep(v) for n, v in loaded.to_dict().items()})
            handle = Handle(record, {**{n: self.db[owner][n] for n in HASH_FIELDS},
                                     "log": self.db[owner]["log"] or b""})
        else:
            handle = Handle(record, _full(values))
            self._written(record.pk, self._plan_save(handle)[0])
        self._synced(handle)
        self.handles.append(handle)

    @precondition(lambda self: self.handles)
    @rule(at=st.integers(0, 99), change=changes())
    def modify(self, at: int, change: dict[str, Any]) -> None:
        handle = self._handle(at)
        for name, value in change.items():
            setattr(handle.instance, name, value)
            handle.values[name] = value

    @precondition(lambda self: self.handles)
    @rule(at=st.integers(0, 99), extend=st.binary(min_size=1, max_size=3))
    def extend_log(self, at: int, extend: bytes) -> None:
        """Assign a value that extends the stream: the save APPENDs the difference."""
        handle = self._handle(at)
        handle.values["log"] = handle.values["log"] + extend
        handle.instance.log = handle.values["log"]

    @precondition(lambda self: self.handles)
    @rule(at=st.integers(0, 99))
    def save(self, at: int) -> None:
        handle = self._handle(at)
        rid = handle.instance.pk
        if handle.persisted and rid not in self.db:  # deleted through another handle
            with pytest.raises(errors.DoesNotExist):  # no resurrection: nothing written
                self.io(handle.instance, "save")
            return
        if self._is_stale(handle):  # another instance saved since: nothing written
            with pytest.raises(errors.StaleRecord):
                self.io(handle.instance, "save")
            return
        new, _ = self._plan_save(handle)
        violation = self._email_taken(new["email"], rid, set())
        reply = self._expect_write(lambda: self.io(handle.instance, "save"), violation)
        if not violation:
            key = f"repocket:mbt:{self.model.__name__}:{rid}"
            assert reply == {"hash": key, "strings": {"log": f"{key}:field:log"}}
            self._written(rid, new)
            self._synced(handle)

    @precondition(lambda self: self.handles)
    @rule(at=st.integers(0, 99))
    def expire(self, at: int) -> None:
        """A save with a 1 ms TTL, then its deadline passes: the record is gone as if
        deleted (its unique value free, its entries swept by a later write)."""
        handle = self._handle(at)
        rid = handle.instance.pk
        if handle.persisted and rid not in self.db:
            with pytest.raises(errors.DoesNotExist):
                self.io(handle.instance, "save", ttl=0.001)
            return
        if self._is_stale(handle):
            with pytest.raises(errors.StaleRecord):
                self.io(handle.instance, "save", ttl=0.001)
            return
        new, _ = self._plan_save(handle)
        violation = self._email_taken(new["email"], rid, set())
        self._expect_write(lambda: self.io(handle.instance, "save", ttl=0.001), violation)
        if not violation:
            self._written(rid, new)
            self._synced(handle)
            self.db.pop(rid)  # gone, as if deleted (no 'delete' entry: a later 'expire' one)
            self.versions.pop(rid, None)
            self.expirations[rid] += 1
            time.sleep(0.004)  # the deadline passes (Redis' clock ticks in ms)

    @precondition(lambda self: self.db and self.handles)
    @rule(at=st.integers(0, 99))
    def deadline_and_persist(self, at: int) -> None:
        """A deadline far off, read back, then cleared: the record is unchanged."""
        handle = self._handle(at)
        rid = handle.instance.pk
        if not handle.persisted or rid not in self.db or self._is_stale(handle):
            return
        new, _ = self._plan_save(handle)
        if self._email_taken(new["email"], rid, set()):
            return
        self.io(handle.instance, "save", ttl=600)
        self._written(rid, new)
        self._synced(handle)
        left = self.io(handle.instance, "ttl")
        assert left is not None and 0 < left <= 600
        assert self.io(handle.instance, "persist") is True
        assert self.io(handle.instance, "ttl") is None

    @rule(at=st.integers(0, 99), missing=st.booleans())
    def load(self, at: int, missing: bool) -> None:
        rid = uuid.uuid4() if missing or not self.db else sorted(self.db)[at % len(self.db)]
        record = self.io(self.model.objects, "get", id=rid if at % 2 else str(rid))
        self._check_record(record, rid)
        if record is not None:
            handle = Handle(record, {**{n: self.db[rid][n] for n in HASH_FIELDS},
                                     "log": self.db[rid]["log"] or b""})
            self._synced(handle)
            self.handles.append(handle)

    @precondition(lambda self: self.handles)
    @rule(at=st.integers(0, 99))
    def delete(self, at: int) -> None:
        handle = self._handle(at)
        rid = handle.instance.pk
        if self._is_stale(handle):  # a stale instance deletes nothing
            with pytest.raises(errors.StaleRecord):
                self.io(handle.instance, "delete")
            return
        record = self._removed(rid)
        expected = 0 if record is None else 1 + (record["log"] is not None)
        assert self.io(handle.instance, "delete") == expected
        handle.persisted, handle.known, handle.synced, handle.version = False, {}, None, 0

    @precondition(lambda self: self.handles)
    @rule(at=st.integers(0, 99), data=st.binary(max_size=3))
    def append(self, at: int, data: bytes) -> None:
        handle = self._handle(at)
        rid = handle.instance.pk
        if handle.persisted and rid not in self.db:
            with pytest.raises(errors.DoesNotExist):
                self.io(handle.instance, "append_log", data)
            return
        length = self.io(handle.instance, "append_log", data)
        handle.values["log"] += data
        if handle.persisted:
            self.db[rid]["log"] = (self.db[rid]["log"] or b"") + data
            self.feed_entries += 1
            handle.synced = (handle.synced or b"") + data
            assert length == len(self.db[rid]["log"])
        else:
            assert length == len(handle.values["log"])

    @rule(batch=st.lists(RECORDS, min_size=1, max_size=3))
    def bulk_create(self, batch: list[dict[str, Any]]) -> None:
        handles = [Handle(self.model(**values), _full(values)) for values in batch]
        claimed: set[str] = set()
        violation = False
        for handle in handles:
            email = handle.values["email"]
            violation = violation or self._email_taken(email, handle.instance.pk, claimed)
            if email is not None:
                claimed.add(email)
        self._expect_write(
            lambda: self.io(self.model.objects, "bulk_create", [h.instance for h in handles],
                            batch_size=len(handles)), violation)
        if not violation:
            for handle in handles:
                self._written(handle.instance.pk, self._plan_save(handle)[0])
                self._synced(handle)
        self.handles += handles

    def _matching(self, filters: dict[str, Any], excludes: dict[str, Any]) -> list[uuid.UUID]:
        return [rid for rid, record in self.db.items()
                if all(holds(k, v, record) for k, v in filters.items())
                and not (excludes and all(holds(k, v, record) for k, v in excludes.items()))]

    @rule(filters=st.lists(lookups(), max_size=2), excludes=st.lists(lookups(), max_size=1),
          order=st.none() | ORDERS, window=WINDOWS, as_ids=st.booleans())
    def query(self, filters: list[tuple[str, Any]], excludes: list[tuple[str, Any]],
              order: tuple[str, ...] | None, window: tuple[int, int | None] | None,
              as_ids: bool) -> None:
        f, e = dict(filters), dict(excludes)
        expected = self._matching(f, e)
        qs = self.model.objects.filter(**f)
        if e:
            qs = qs.exclude(**e)
        assert self.io(qs, "count") == len(expected)
        if order:
            qs = qs.order_by(*order)
            expected = expected_order(self.db, expected, order)
        size = len(expected)
        if window is not None:
            start, stop = window
            qs = qs[start:stop]
            size = len(expected[start:stop])
            expected = expected[start:stop] if order else expected
        got = self.io(qs, "ids") if as_ids else [record.pk for record in self.io(qs, "list")]
        assert len(got) == size
        if order:
            assert got == expected, (order, window)
        else:
            assert len(set(got)) == len(got) and set(got) <= set(expected)
        if window is not None:
            assert self.io(qs, "count") == size
        else:
            assert self.io(qs, "exists") == bool(expected)
            if order:
                first, last = self.io(qs, "first"), self.io(qs, "last")
                assert (first.pk if first else None) == (expected[0] if expected else None)
                assert (last.pk if last else None) == (expected[-1] if expected else None)

    @rule(email=EMAILS)
    def get_unique(self, email: str) -> None:
        owners = [rid for rid, record in self.db.items() if record["email"] == email]
        assert len(owners) <= 1
        found = self.io(self.model.objects, "get", email=email)
        assert (found.pk if found else None) == (owners[0] if owners else None)
        if found is not None:
            self._check_record(found, found.pk)

    @rule(lookup=lookups())
    def queryset_delete(self, lookup: tuple[str, Any]) -> None:
        doomed = self._matching(dict([lookup]), {})
        assert self.io(self.model.objects.filter(**dict([lookup])), "delete") == len(doomed)
        for rid in doomed:
            self._removed(rid)

    @rule(lookup=st.none() | lookups(), drawn=assignments())
    def update(self, lookup: tuple[str, Any] | None, drawn: dict[str, tuple[str, Any, Any]]
               ) -> None:
        """QuerySet.update(): literals and F arithmetic on the matching records, in one
        atomic call; a unique email given to two records (or taken) writes nothing."""
        matched = self._matching(dict([lookup]) if lookup else {}, {})
        values = {name: (_PY_OPS[op](F(name), operand) if how == "F" else op)
                  for name, (how, op, operand) in drawn.items()}
        email = drawn.get("email")
        violation = email is not None and email[1] is not None and bool(matched) and (
            len(matched) > 1 or self._email_taken(email[1], matched[0], set()))
        queryset = self.model.objects.filter(**dict([lookup])) if lookup else \
            self.model.objects.all()
        updated = self._expect_write(lambda: self.io(queryset, "update", **values), violation)
        if violation:
            return
        assert updated == len(matched)
        for rid in matched:
            self.versions[rid] += 1  # optimistic_lock: an update() is a write like any other
            self.feed_entries += 1
            record = self.db[rid]
            for name, (how, op, operand) in drawn.items():
                if how == "=":
                    record[name] = op.pk if isinstance(op, ActiveRecord) else op
                else:
                    record[name] = computed(record[name], op, operand)

    @invariant()
    def counts_agree(self) -> None:
        self.steps += 1
        assert self.io(self.model.objects, "count") == len(self.db)

    def teardown(self) -> None:
        ids = sorted(self.db)
        assert set(self.io(self.model.objects.all(), "ids")) == set(ids)
        for rid, record in zip(ids, self.io(self.model.objects, "get_many", ids)):
            self._check_record(record, rid)
            if self.locked:
                assert record.lock_version == self.versions[rid]
        if self.model._meta.changes:
            changes = list(self.model.objects.changes())
            assert CLIENT.xlen(self.model._meta.changes_key) == len(changes)
            # an expiry shows when a write sweeps it (at most once per expiry), the rest
            # exactly as written
            expired = collections.Counter(c.record_id for c in changes if c.op == "expire")
            assert len(changes) - sum(expired.values()) == self.feed_entries
            assert all(n <= self.expirations[rid] for rid, n in expired.items())
        if hasattr(self.model.objects, "check"):
            report = self.io(self.model.objects, "check", repair=False)
            assert report.ok, report.problems
        EXAMPLES[self.model.__name__] = EXAMPLES.get(self.model.__name__, 0) + 1


class CompactItemMachine(ItemMachine):
    model = CompactItem


class LockedItemMachine(ItemMachine):
    model = LockedItem


CLIENT: redis.Redis


@pytest.mark.parametrize("machine", [ItemMachine, CompactItemMachine, LockedItemMachine],
                         ids=["envelope", "compact", "locked"])
def test_model_based(client: redis.Redis, machine: type[ItemMachine]) -> None:
    global CLIENT
    CLIENT = client
    run_state_machine_as_test(machine, settings=PROFILE)
    assert EXAMPLES.get(machine.model.__name__, 0) > 0
