"""Fuzzing with hypothesis: every attribute type, ids and lookup values (huge, empty,
non-UTF-8 bytes, lone surrogates, NaN/inf, integers beyond int64 and 2^53, naive and
aware datetimes with odd offsets and far years, glob characters, braces, colons,
newlines). Each value round-trips exactly through save+get in both codecs, or raises a
typed ``RepocketError``; no key is written outside the model's prefix and a failed call
changes nothing; filter lookups equal Python's evaluation over the stored records.

Profiles: ``REPOCKET_HYPOTHESIS_PROFILE=soak`` runs 10,000 examples per test (the
default, ``ci``, a short run). The examples run are written to the terminal summary
(``[hypothesis] ... examples``) and to ``.hypothesis/repocket-examples.txt``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import math
import re
import uuid
from typing import Any

import hypothesis.strategies as st
import pytest
import redis
from hypothesis import example, given, settings

from repocket import ActiveRecord, attributes, errors
from repocket.api.model import ModelBase
from repocket.core.query import canonical
from tests.conftest import snapshot

from .hypothesis_support import example_reporter, profile

D = decimal.Decimal
UTC = dt.timezone.utc

PROFILE = profile("repocket-fuzz", ci={"max_examples": 100}, soak={"max_examples": 10_000})
EXAMPLES: dict[str, int] = {}
_report_examples = example_reporter(EXAMPLES)


def _count(name: str) -> None:
    EXAMPLES[name] = EXAMPLES.get(name, 0) + 1




# -- models --------------------------------------------------------------------------------
class FTarget(ActiveRecord):
    class Meta:
        namespace = "fuzz"

    name = attributes.Unicode()


def _model(name: str, codec: str | None, fields: dict[str, attributes.Attribute]) -> Any:
    meta = type("Meta", (), {"namespace": "fuzz", **({"codec": codec} if codec else {})})
    return ModelBase(name, (ActiveRecord,), {"__module__": __name__, "Meta": meta, **fields})


def _every_type() -> dict[str, attributes.Attribute]:
    return {"uni": attributes.Unicode(null=True), "raw": attributes.Bytes(null=True),
            "js": attributes.JSON(), "num": attributes.Integer(null=True),
            "fl": attributes.Float(allow_nan=True, null=True),
            "dec": attributes.Decimal(null=True), "at": attributes.DateTime(null=True),
            "ref": attributes.UUID(), "ptr": attributes.Pointer(FTarget, null=True),
            "stream": attributes.ByteStream(null=True)}


def _filterable() -> dict[str, attributes.Attribute]:
    return {"uni_i": attributes.Unicode(index=True, null=True),
            "uni": attributes.Unicode(null=True),
            "raw_i": attributes.Bytes(index=True, null=True), "raw": attributes.Bytes(null=True),
            "num_i": attributes.Integer(index=True, null=True),
            "num": attributes.Integer(null=True),
            "fl_i": attributes.Float(index=True, null=True),
            "fl": attributes.Float(allow_nan=True, null=True),
            "dec_i": attributes.Decimal(index=True, null=True),
            "dec": attributes.Decimal(null=True),
            "at_i": attributes.DateTime(index=True, null=True),
            "at": attributes.DateTime(null=True),
            "ref_i": attributes.UUID(index=True, null=True), "ref": attributes.UUID(null=True),
            "ptr_i": attributes.Pointer(FTarget, index=True, null=True),
            "js": attributes.JSON(null=True)}


FuzzEnvelope = _model("FuzzEnvelope", None, _every_type())
FuzzCompact = _model("FuzzCompact", "compact", _every_type())
FilterEnvelope = _model("FilterEnvelope", None, _filterable())
FilterCompact = _model("FilterCompact", "compact", _filterable())

# -- value strategies -------------------------------------------------------------------------
ODD_TEXT = st.sampled_from(["", "*", "?", "[", "[a-z]", "{x}", "a:b", ":", "\n", "\r\n", "\x00",
                            "repocket:fuzz:FuzzEnvelope:ids", "{repocket}*?[]", "é", "\U0001f600"])
TEXTS = st.text() | ODD_TEXT | st.text(alphabet="ab*?[{}:\n\x00é", max_size=6)
SURROGATES = st.sampled_from(["\ud800", "a\udfff", "\udc80\ud800"])
HUGE_TEXT = st.integers(10, 20).map(lambda k: "é" * 2**k)
HUGE_BYTES = st.integers(10, 21).map(lambda k: b"\xff\x00" * 2**k)
BIG_INTS = st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63),
                            2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)])
INT64 = st.integers(-(2**63), 2**63 - 1) | BIG_INTS.filter(lambda n: -(2**63) <= n < 2**63)
ODD_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308,
                              2.0**53 + 2, 0.1])


def _offsets() -> st.SearchStrategy[dt.tzinfo]:
    odd = st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59, seconds=59),
                        max_value=dt.timedelta(hours=23, minutes=59, seconds=59))
    return st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=14)),
                            dt.timezone(dt.timedelta(hours=-12)),
                            dt.timezone(dt.timedelta(hours=5, minutes=45)),
                            dt.timezone(dt.timedelta(seconds=1)),
                            dt.timezone(dt.timedelta(hours=-3, minutes=-30, seconds=-7))]) \
        | odd.map(dt.timezone)


DATETIMES = st.datetimes(timezones=st.none() | _offsets()) | st.sampled_from([
    dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(1, 1, 1, 23, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23))),
    dt.datetime(9999, 12, 31, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59))),
    dt.datetime(1970, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)])
# what a DateTime can hold: offsets with a fraction of a second are refused
STORABLE_DATETIMES = DATETIMES.filter(
    lambda d: d.utcoffset() is None or not d.utcoffset().microseconds)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=8)
JSON_STORABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | TEXTS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=8)
UUID_TEXTS = st.uuids().flatmap(lambda u: st.sampled_from([
    str(u), str(u).upper(), u.hex, f"urn:uuid:{u}", f"{{{u}}}", f" {u}", f"{u}\n", f"{u}:x",
    str(u)[:-1] + "*", str(u).replace("-", ":")]))
IDS = st.uuids() | UUID_TEXTS | UUID_TEXTS.map(lambda t: t.encode()) | TEXTS | st.binary() \
    | st.integers() | st.none()

# Inputs per field of _every_type(): valid and invalid values, of the base type or not.
# Pointer inputs are placeholders resolved against saved targets ('target', 'doomed':
# deleted before the save, 'unsaved', 'missing' id).
INPUTS: dict[str, st.SearchStrategy[Any]] = {
    "uni": TEXTS | SURROGATES | HUGE_TEXT | st.binary() | st.none() | st.integers(),
    "raw": st.binary() | TEXTS | HUGE_BYTES | st.none() | st.integers(),
    "js": JSON_VALUES | st.sampled_from([math.nan, {"a": math.inf}, {1: "x"}, {"x": {1, 2}}]),
    "num": INT64 | BIG_INTS | st.integers() | st.from_regex(r"\A[+-]?[0-9]{1,22}\Z")
    | st.floats() | st.booleans() | TEXTS | st.none(),
    "fl": st.floats() | ODD_FLOATS | st.integers() | BIG_INTS | st.decimals() | TEXTS | st.none()
    | st.sampled_from(["nan", "-inf", "1e400"]),
    "dec": st.decimals() | st.floats() | st.integers() | BIG_INTS | TEXTS | st.none()
    | st.sampled_from([D("1E+999999"), D("-0E-1000"), D("1.10"), D("sNaN"), "1e5", "Infinity"]),
    "at": DATETIMES | DATETIMES.map(lambda d: d.isoformat()) | TEXTS | st.none()
    | st.dates(),
    "ref": st.uuids() | UUID_TEXTS | TEXTS | st.none(),
    "ptr": st.sampled_from(["target", "doomed", "unsaved", "missing", "target-id", None]),
    "stream": st.binary() | HUGE_BYTES | TEXTS | st.none(),
}


# -- exact sameness ---------------------------------------------------------------------------
def same(a: Any, b: Any) -> bool:
    """Equal, and of one type and one stored form (-0.0 is not 0.0, Decimal 1.0 is not 1,
    +05:30 is not UTC)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if isinstance(a, D):
        return str(a) == str(b)
    if isinstance(a, dt.datetime):
        return (a.replace(tzinfo=None) == b.replace(tzinfo=None)
                and a.utcoffset() == b.utcoffset())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def base_expectation(name: str, value: Any) -> tuple[bool, Any]:
    """(True, what get must return) for an input of the field's own type whose value is
    known to be storable; (False, None) when the test has no independent expectation."""
    if name == "uni" and isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False, None
        return True, value
    if name in ("raw", "stream") and isinstance(value, bytes):
        return True, value
    if name == "js" and not isinstance(value, float):
        try:
            return True, json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            return False, None
    if name == "num" and type(value) is int:  # any size (Python's digit limit aside)
        return True, value
    if name == "fl" and type(value) is float:
        return True, value
    if name == "dec" and type(value) is D and value.is_finite():
        return True, value
    if name == "at" and type(value) is dt.datetime:
        offset = value.utcoffset()
        # an offset with a fraction of a second has no ISO form that reads back: refused
        return (True, value) if offset is None or not offset.microseconds else (False, None)
    if name == "ref" and isinstance(value, uuid.UUID):
        return True, value
    return False, None


UUID_FORM = re.compile(r"(urn:uuid:)?[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


def allowed_keys(model: Any) -> list[str]:
    return [f"{model._meta.prefix}:", f"{FTarget._meta.prefix}:"]


def check_keyspace(client: redis.Redis, model: Any, before: dict[bytes, Any] | None = None,
                   ) -> dict[bytes, Any]:
    now = snapshot(client)
    for key in now:
        assert any(key.decode().startswith(p) for p in allowed_keys(model)), key
        head = key.decode()[len(model._meta.prefix) + 1:]
        if key.decode().startswith(model._meta.prefix + ":"):
            record_id = head.split(":")[0]
            assert head == "ids" or (str(uuid.UUID(record_id)) == record_id), key
    if before is not None:
        assert now == before, "a failed call changed the keyspace"
    return now


# -- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [FuzzEnvelope, FuzzCompact], ids=["envelope", "compact"])
@settings(PROFILE)
@given(values=st.fixed_dictionaries({}, optional=INPUTS), raw_id=IDS)
@example(values={"fl": -0.0, "dec": D("1.10"), "at": dt.datetime(
    2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30, seconds=15,
                                                 microseconds=7)))},
         raw_id="urn:uuid:970773FA-4DE1-11E5-86F4-6C4008A70392")
@example(values={"uni": "\ud800", "raw": b"\xff\xfe", "stream": b"\xff" * 3}, raw_id="*")
@example(values={"stream": b""}, raw_id=None)  # an empty nullable ByteStream is not None
@example(values={"at": dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(microseconds=1)))},
         raw_id=None)  # an offset with microseconds
def test_round_trip(client: redis.Redis, model: Any, values: dict[str, Any],
                    raw_id: Any) -> None:
    client.flushdb()
    _count(f"test_round_trip[{model.__name__}]")
    target, doomed = FTarget.create(name="t"), FTarget.create(name="doomed")
    pointers = {"target": target, "doomed": doomed, "unsaved": FTarget(name="u"),
                "missing": uuid.uuid4(), "target-id": str(target.id).upper(), None: None}
    try:
        instance = model(id=raw_id)
    except errors.InvalidId:
        assert not (isinstance(raw_id, (str, uuid.UUID))
                    and (isinstance(raw_id, uuid.UUID) or UUID_FORM.fullmatch(raw_id))), raw_id
        instance = model()
    else:
        expected_id = raw_id if isinstance(raw_id, uuid.UUID) else uuid.UUID(
            raw_id.decode() if isinstance(raw_id, bytes) else raw_id)
        assert instance.pk == expected_id
    accepted: dict[str, Any] = {}
    for name, value in values.items():
        value = pointers[value] if name == "ptr" else value
        try:
            setattr(instance, name, value)
        except errors.RepocketError:
            ok, _ = base_expectation(name, value)
            assert not ok, f"{name}={value!r:.200} refused"
            continue
        accepted[name] = value
    if accepted.get("ptr") is doomed:
        doomed.delete()
    before = check_keyspace(client, model)
    try:
        instance.save()
    except errors.RepocketError:
        check_keyspace(client, model, before)
        # a missing id is accepted on assignment (no I/O) and refused by the save script
        assert accepted.get("ptr") in (doomed, pointers["unsaved"], pointers["missing"])
        return
    check_keyspace(client, model)
    for lookup in (instance.pk, str(instance.pk), raw_id):
        try:
            got = model.objects.get(id=lookup)
        except errors.InvalidId:
            assert lookup is raw_id
            continue
        assert got is not None and got.pk == instance.pk
    got_many = model.objects.get_many([instance.pk])[0]
    for name, value in accepted.items():
        stored = got._values[name]
        assert same(got_many._values[name] if name != "ptr" else stored, stored)
        if name == "ptr":
            assert (stored.pk if stored is not None else None) == (
                None if value is None else target.pk)
            continue
        ok, expected = base_expectation(name, value)
        if ok:
            assert same(stored, expected), (name, stored, expected)
        held = instance._values[name]
        if name == "js":  # JSON text has string keys and lists only: what JSON gives back
            held = json.loads(json.dumps(held))
        assert same(stored, held), (name, stored, held)


# -- filter lookups ---------------------------------------------------------------------------
TARGET_IDS = [uuid.UUID(int=(i + 1) << 64 | 0x8000_0000_0000_1000) for i in range(2)]
FILTER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "uni": st.text(alphabet="ab\x00é\U0001f600*:", max_size=3) | TEXTS,
    "raw": st.binary(max_size=3) | st.sampled_from([b"\xff", b"a\x00", b"\x00\x01", b"\xff\xff"]),
    "num": st.integers(-3, 3) | st.sampled_from([2**53, 2**53 + 1, 2**63 - 1, -(2**63)]) | INT64,
    "fl": st.sampled_from([-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, math.inf, -math.inf])
    | st.floats(allow_nan=False),
    "fl_nan": st.sampled_from([math.nan, -1.5, 0.0, -0.0, 1.0, math.inf]) | st.floats(),
    "dec": st.sampled_from([D(t) for t in ("-1.5", "-1", "-1.0", "-0.5", "-0", "0", "1", "1.0",
                                           "1E+2", "9007199254740993", "9007199254740992.9999")])
    | st.decimals(allow_nan=False, allow_infinity=False),
    "at": st.builds(lambda d, z: d if z is None else d.replace(tzinfo=dt.timezone(z)),
                    st.datetimes(dt.datetime(1969, 12, 31), dt.datetime(1970, 1, 2)),
                    st.sampled_from([None, dt.timedelta(0), dt.timedelta(hours=-5)]))
    | STORABLE_DATETIMES,
    "ref": st.sampled_from(TARGET_IDS) | st.uuids(),
    "ptr": st.sampled_from(TARGET_IDS),
    "js": JSON_STORABLE.filter(lambda v: v is not None) | st.sampled_from([1, 1.0, True, -0.0,
                                                                         0, [1], {"a": 1}]),
}
KIND = {"uni_i": "uni", "uni": "uni", "raw_i": "raw", "raw": "raw", "num_i": "num",
        "num": "num", "fl_i": "fl", "fl": "fl_nan", "dec_i": "dec", "dec": "dec",
        "at_i": "at", "at": "at", "ref_i": "ref", "ref": "ref", "ptr_i": "ptr", "js": "js"}
FILTER_FIELDS = sorted(KIND)
ORDERED_OPS = ["exact", "in", "gt", "gte", "lt", "lte", "range", "isnull"]
# weird lookup values of any type: each must be answered, or refused with a typed error
WEIRD = (st.none() | st.integers() | BIG_INTS | st.floats() | TEXTS | SURROGATES | st.binary()
         | HUGE_TEXT | HUGE_BYTES
         | st.booleans() | st.decimals() | st.uuids() | DATETIMES | st.just([1, 2]))


def _ops(name: str) -> list[str]:
    kind = KIND[name]
    if kind == "js":
        return ["exact", "in", "isnull"]
    return ORDERED_OPS + (["startswith"] if kind in ("uni", "raw") else [])


@st.composite
def lookup_values(draw: st.DrawFn, name: str, op: str, stored: list[Any]) -> Any:
    def one() -> Any:
        if stored and draw(st.integers(0, 2)) == 0:
            return draw(st.sampled_from(stored))
        if draw(st.integers(0, 5)) == 0:
            return draw(WEIRD)
        return draw(FILTER_VALUES[KIND[name]])

    if op == "isnull":
        return draw(st.booleans() | WEIRD)
    if op == "in":
        return [one() for _ in range(draw(st.integers(0, 3)))]
    if op == "range":
        if not draw(st.integers(0, 9)):
            return draw(WEIRD)
        low = one()
        return (low, low if draw(st.booleans()) else one())
    if op == "startswith" and stored and draw(st.booleans()):
        text = draw(st.sampled_from(stored))
        return None if text is None else text[:draw(st.integers(0, 3))]
    return one()


def typed(name: str, value: Any) -> Any:
    """A value as Python compares it: instants (naive as UTC), ids as their text."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ActiveRecord):
        return str(value.pk)
    return value


def json_equal(a: Any, b: Any) -> bool:
    """JSON value equality: numbers by value, booleans only equal booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def holds(name: str, op: str, stored: Any, wanted: Any) -> bool:
    """Python's evaluation of ``name__op=wanted`` (lookup values already coerced)."""
    if op == "isnull" or (op == "exact" and wanted is None):
        return (stored is None) == (True if wanted is None else wanted)
    if stored is None:
        return False
    equal = json_equal if KIND[name] == "js" else (lambda x, y: typed(name, x) == typed(name, y))
    if op == "exact":
        return equal(stored, wanted)
    if op == "in":
        return any(equal(stored, w) for w in wanted)
    x = typed(name, stored)
    if op == "range":
        return typed(name, wanted[0]) <= x <= typed(name, wanted[1])
    y = typed(name, wanted)
    if op == "startswith":
        return bool(x.startswith(y))
    return {"gt": x > y, "gte": x >= y, "lt": x < y, "lte": x <= y}[op]


def coerce_lookup(model: Any, name: str, op: str, value: Any) -> Any:
    """The lookup value as the field's Python type, through the field's own coercion
    (raises RepocketError when it cannot be one)."""
    attribute = model._meta.fields[name]

    def one(v: Any) -> Any:
        return attribute.decode(canonical(model, attribute, v))

    if op == "isnull":
        return value
    if op == "exact" and value is None:
        return None
    if op == "in":
        return [one(v) for v in value]
    if op == "range":
        return (one(value[0]), one(value[1]))
    return one(value)


def _sorted_ids(name: str, records: dict[uuid.UUID, Any], ids: list[uuid.UUID],
                descending: bool) -> list[uuid.UUID]:
    def compare(a: uuid.UUID, b: uuid.UUID) -> int:
        x, y = typed(name, records[a][name]), typed(name, records[b][name])
        less = (x is None or (y is not None and x < y)) if x != y else str(a) < str(b)
        return (1 if less else -1) if descending else (-1 if less else 1)

    return sorted(ids, key=functools.cmp_to_key(compare))


RECORD = st.fixed_dictionaries(
    {name: st.none() | FILTER_VALUES[kind] for name, kind in KIND.items()})


@pytest.mark.parametrize("model", [FilterEnvelope, FilterCompact], ids=["envelope", "compact"])
@settings(PROFILE)
@given(rows=st.lists(RECORD, max_size=6), data=st.data())
# Pinned regressions: `data` is then the one lookup (field, op, value) to check.
@example(rows=[{"num_i": n} for n in range(8)], data=("num_i", "range", (5, 5)))
@example(rows=[{"uni_i": "a"}, {"uni_i": "b"}], data=("uni_i", "range", ("a", "a")))
@example(rows=[{"fl": math.nan}, {"fl": 1.0}], data=("fl", "exact", 1.0))
@example(rows=[{"fl": math.nan}, {"fl": 1.0}], data=("fl", "lt", 0.0))
@example(rows=[{"uni": "a"}, {}], data=("uni", "in", [None, "a"]))
@example(rows=[{"num_i": 1}], data=("num_i", "gt", None))
@example(rows=[{"js": 1}, {"js": {"a": 1.0}}], data=("js", "in", [1.0, {"a": 1}]))
def test_filter_lookups(client: redis.Redis, model: Any, rows: list[dict[str, Any]],
                        data: Any) -> None:
    client.flushdb()
    _count(f"test_filter_lookups[{model.__name__}]")
    for i, target_id in enumerate(TARGET_IDS):
        FTarget.create(id=target_id, name=f"t{i}")
    created = [model.create(**row) for row in rows]
    records = {record.pk: record.to_dict() for record in created}
    assert {r.pk: r.to_dict() for r in model.objects.all()}.keys() == records.keys()
    if isinstance(data, tuple):
        pinned = [data]
    else:
        pinned = []
        for _ in range(data.draw(st.integers(1, 8), label="lookups")):
            name = data.draw(st.sampled_from(FILTER_FIELDS), label="field")
            op = data.draw(st.sampled_from(_ops(name)), label="op")
            stored = [r[name] for r in records.values()]
            pinned.append((name, op, data.draw(lookup_values(name, op, stored), label="value")))
    for name, op, value in pinned:
        key = f"{name}__{op}"
        try:
            got = {r.pk for r in model.objects.filter(**{key: value})}
        except errors.RepocketError:
            bad_shape = (op == "isnull" and not isinstance(value, bool)) or (
                op in ("in", "range") and (isinstance(value, (str, bytes)) or not isinstance(
                    value, (list, tuple)) or (op == "range" and len(value) != 2)))
            if not bad_shape:
                with pytest.raises(errors.RepocketError):
                    coerce_lookup(model, name, op, value)
            continue
        wanted = coerce_lookup(model, name, op, value)
        expected = {rid for rid, r in records.items() if holds(name, op, r[name], wanted)}
        assert got == expected, (key, value, wanted)
        assert model.objects.filter(**{key: value}).count() == len(expected)
        assert set(model.objects.exclude(**{key: value}).ids()) == records.keys() - expected
        orderable = KIND[name] != "js" and not any(
            isinstance(r[name], float) and math.isnan(r[name]) for r in records.values())
        if orderable:
            for descending in (False, True):
                spec = f"-{name}" if descending else name
                assert model.objects.filter(**{key: value}).order_by(spec).ids() == \
                    _sorted_ids(name, records, list(expected), descending), spec
