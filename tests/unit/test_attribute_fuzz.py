"""Fuzzing every attribute's conversion hooks without Redis (hypothesis).

Whatever a caller assigns, ``clean`` returns a value or raises a typed ``RepocketError``
naming the field; a cleaned value encodes in both codecs and decodes back to itself; and
any stored bytes decode or raise one of the exceptions hydration turns into
``StoredDataError`` (never a RecursionError, a KeyError, an AttributeError...)."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repocket import ActiveRecord, attributes, configure, errors
from repocket.core.codecs import CODECS, CorruptValue
from tests.functional.hypothesis_support import example_reporter, profile

PROFILE = profile("attribute-fuzz", ci={"max_examples": 150}, soak={"max_examples": 5000})
EXAMPLES: dict[str, int] = {}
report_examples = example_reporter(EXAMPLES)

# what hydration catches around a decode (repocket.core.hydrate.from_redis)
DECODE_ERRORS = (CorruptValue, ValueError, TypeError, ArithmeticError)


class FuzzTarget(ActiveRecord):
    class Meta:
        namespace = "unit.fuzz"

    name = attributes.Unicode()


class FuzzColor(enum.Enum):
    RED = "red"
    ODD = "\x00é"


class FuzzLevel(enum.IntEnum):
    LOW = -(2**64)
    HIGH = 3


class FuzzAll(ActiveRecord):
    class Meta:
        namespace = "unit.fuzz"

    uni = attributes.Unicode()
    uni_null = attributes.Unicode(null=True)
    latin = attributes.Unicode(encoding="latin-1")
    raw = attributes.Bytes()
    stream = attributes.ByteStream(null=True)
    num = attributes.Integer()
    fl = attributes.Float()
    fl_nan = attributes.Float(allow_nan=True)
    dec = attributes.Decimal()
    at = attributes.DateTime()
    ref = attributes.UUID()
    js = attributes.JSON()
    ptr = attributes.Pointer(FuzzTarget, null=True)
    flag = attributes.Boolean()
    day = attributes.Date()
    color = attributes.Enum(FuzzColor)
    level = attributes.Enum(FuzzLevel)


FIELDS = {name: f for name, f in FuzzAll._meta.fields.items() if name != "id"}


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": [value]}
    return value


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)
ANYTHING = (
    st.none() | st.booleans() | st.integers() | st.sampled_from([2**63, -(2**64), 10**30,
                                                                10**5000, -(10**4299)])
    | st.floats() | st.decimals() | st.text() | st.binary()
    | st.datetimes(timezones=st.none() | st.timezones()) | st.dates() | st.uuids()
    | st.sampled_from([math.inf, "nan", "1e400", "9" * 5000, "\ud800", b"\xff\xfe",
                       decimal.Decimal("sNaN"), decimal.Decimal("1E+999999"),
                       _nested(2_000), [[[]]] * 3, {1: 2, "a": 3}, {(1, 2): 3}, {1, 2},
                       object(), type, FuzzTarget, FuzzTarget(name="t"), FuzzAll(),
                       bytearray(b"ba"), memoryview(b"mv"), dt.timedelta(1),
                       dt.datetime(2020, 1, 1, tzinfo=dt.timezone(
                           dt.timedelta(seconds=1, microseconds=5))),
                       FuzzColor.ODD, FuzzLevel.HIGH, "red", 3, -(2**64), "true", "0"])
    | JSONISH)


def same(a: Any, b: Any) -> bool:
    """Equal, of one type, and of one text (0.0 is not -0.0, Decimal 1.0 is not 1)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or repr(a) == repr(b)
    if isinstance(a, decimal.Decimal):
        return type(b) is decimal.Decimal and str(a) == str(b)
    if isinstance(a, dt.datetime):
        return (type(b) is dt.datetime and a.replace(tzinfo=None) == b.replace(tzinfo=None)
                and a.utcoffset() == b.utcoffset())
    return type(a) is type(b) and bool(a == b)


def _cleaned(name: str, value: Any) -> tuple[bool, Any]:
    try:
        return True, FIELDS[name].clean(value, "FuzzAll")
    except errors.RepocketError as exc:
        assert isinstance(exc, errors.FieldError)
        assert (exc.model, exc.field) == ("FuzzAll", name)
        str(exc)  # the message itself can be built
        return False, None


@pytest.mark.parametrize("name", sorted(FIELDS))
@PROFILE
@given(value=ANYTHING)
def test_clean_is_typed_and_what_it_accepts_round_trips(name: str, value: Any) -> None:
    EXAMPLES[f"clean[{name}]"] = EXAMPLES.get(f"clean[{name}]", 0) + 1
    ok, cleaned = _cleaned(name, value)
    if not ok or cleaned is None:
        return
    field = FIELDS[name]
    expected = cleaned
    if isinstance(field, attributes.Pointer):
        expected = field.target_id(cleaned)
    elif isinstance(field, attributes.JSON):  # the JSON value: an IntEnum reads back an int
        expected = json.loads(json.dumps(cleaned))
    for codec in CODECS.values():
        back = codec.decode(field, codec.encode(field, cleaned))
        assert same(expected, back), (codec.name, cleaned, back)
    assert isinstance(field.to_string(cleaned), str)
    record = FuzzAll()
    setattr(record, name, value)
    repr(record)  # a record holding it can be shown


@pytest.mark.parametrize("name", sorted(FIELDS))
@PROFILE
@given(raw=st.binary() | st.text().map(str.encode)
       | st.sampled_from([b"[" * 5_000 + b"]" * 5_000, b"9" * 5_000, b"-0", b"1e400",
                          b'{"value": "x"}', b'{"value": "' + b"[" * 5000 + b'"}', b"nan",
                          b"\xff", b"2020-13-45T00:00:00", b"1_000"]))
def test_decoding_any_stored_bytes_succeeds_or_raises_what_hydration_catches(
        name: str, raw: bytes) -> None:
    EXAMPLES[f"decode[{name}]"] = EXAMPLES.get(f"decode[{name}]", 0) + 1
    for codec in CODECS.values():
        with contextlib.suppress(*DECODE_ERRORS):  # anything else fails the test
            codec.decode(FIELDS[name], raw)


def test_a_json_value_deeper_than_python_can_write_or_read_is_a_value_error() -> None:
    field = FIELDS["js"]
    with pytest.raises(errors.ValidationError) as raised:
        field.clean(_nested(100_000), "FuzzAll")
    assert "nested too deeply" in str(raised.value)
    with pytest.raises(ValueError, match="nested too deeply"):
        field.decode(b"[" * 100_000 + b"]" * 100_000)


def test_an_unknown_encoding_fails_at_declaration() -> None:
    with pytest.raises(errors.RepocketActiveRecordDefinitionError, match="no-such-codec"):
        attributes.Unicode(encoding="no-such-codec")


def test_pointer_clean_keeps_an_id_and_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_io() -> None:
        raise AssertionError("a Pointer assignment talked to Redis")

    monkeypatch.setattr(configure, "get_connection", no_io)
    target_id = uuid.uuid4()
    field = FIELDS["ptr"]
    assert field.clean(str(target_id), "FuzzAll") == target_id
    assert field.clean(target_id.hex, "FuzzAll") == target_id
    target = FuzzTarget(name="t")
    assert field.clean(target, "FuzzAll") is target
    with pytest.raises(errors.ValidationError):
        field.clean(FuzzAll(), "FuzzAll")  # another model's instance
