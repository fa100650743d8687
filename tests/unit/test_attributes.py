"""Attributes without Redis: coerce/clean/encode/decode, the repocket 0.1 helpers
(cast, get_base_type, to_python, to_string), empty values, defaults and null."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import uuid

import pytest

from repocket import ActiveRecord, attributes, errors
from repocket.attributes import parse_uuid, random_node_uuid1

UID = "970773fa-4de1-11e5-86f4-6c4008a70392"
UTC = dt.timezone.utc


class Target(ActiveRecord):
    class Meta:
        namespace = "unit"

    name = attributes.Unicode()


class Everything(ActiveRecord):
    class Meta:
        namespace = "unit"

    text = attributes.Unicode()
    maybe_text = attributes.Unicode(null=True)
    raw = attributes.Bytes()
    number = attributes.Integer()
    ratio = attributes.Float()
    price = attributes.Decimal()
    at = attributes.DateTime()
    ref = attributes.UUID()
    data = attributes.JSON()
    target = attributes.Pointer(Target, null=True)
    log = attributes.ByteStream()


def field(name: str) -> attributes.Attribute:
    return Everything._meta.fields[name]


# -- base types and the 0.1 helpers ------------------------------------------------------
@pytest.mark.parametrize(("cls", "base"), [
    (attributes.Unicode, str), (attributes.Bytes, bytes), (attributes.ByteStream, bytes),
    (attributes.Integer, int), (attributes.Float, float), (attributes.Decimal, decimal.Decimal),
    (attributes.DateTime, dt.datetime), (attributes.UUID, uuid.UUID),
    (attributes.AutoUUID, uuid.UUID), (attributes.JSON, str), (attributes.Pointer, object),
])
def test_get_base_type(cls: type[attributes.Attribute], base: type) -> None:
    assert cls.get_base_type() is base


@pytest.mark.parametrize(("cls", "given", "expected"), [
    (attributes.Unicode, b"caf\xc3\xa9", "café"),
    (attributes.Unicode, "plain", "plain"),
    (attributes.Bytes, "café", b"caf\xc3\xa9"),
    (attributes.Bytes, bytearray(b"\x00\xff"), b"\x00\xff"),
    (attributes.Bytes, memoryview(b"mv"), b"mv"),
    (attributes.Integer, "-42", -42),
    (attributes.Integer, "+7", 7),
    (attributes.Integer, 2**63 - 1, 2**63 - 1),
    (attributes.Integer, -(2**63), -(2**63)),
    (attributes.Integer, 2**64, 2**64),  # any int: Python's int is unbounded
    (attributes.Integer, -(10**30), -(10**30)),
    (attributes.Integer, "-" + "9" * 400, -int("9" * 400)),
    (attributes.Float, 3, 3.0),
    (attributes.Float, "1.5", 1.5),
    (attributes.Float, decimal.Decimal("0.25"), 0.25),
    (attributes.Decimal, "1.10", decimal.Decimal("1.10")),
    (attributes.Decimal, 0.1, decimal.Decimal("0.1")),  # repr of the float, not 55 digits
    (attributes.Decimal, 5, decimal.Decimal(5)),
    (attributes.DateTime, "2015-08-27T10:11:12.000013+02:00",
     dt.datetime(2015, 8, 27, 10, 11, 12, 13, dt.timezone(dt.timedelta(hours=2)))),
    (attributes.UUID, UID.upper(), uuid.UUID(UID)),
    (attributes.UUID, "urn:uuid:" + UID, uuid.UUID(UID)),
    (attributes.UUID, UID.replace("-", ""), uuid.UUID(UID)),
    (attributes.UUID, UID.encode(), uuid.UUID(UID)),
])
def test_cast_on_the_class_coerces(cls: type[attributes.Attribute], given: object,
                                   expected: object) -> None:
    result = cls.cast(given)
    assert result == expected
    assert type(result) is type(expected)


def test_cast_of_decimal_float_keeps_the_short_form() -> None:
    assert str(attributes.Decimal.cast(0.1)) == "0.1"


@pytest.mark.parametrize(("cls", "bad"), [
    (attributes.Unicode, 5), (attributes.Unicode, b"\xff"), (attributes.Unicode, "\ud800"),
    (attributes.Unicode, ["a"]),
    (attributes.Bytes, 5), (attributes.Bytes, ["a"]), (attributes.Bytes, "\ud800"),
    (attributes.Integer, 1.5), (attributes.Integer, True), (attributes.Integer, "1.5"),
    (attributes.Integer, "12abc"), (attributes.Integer, "\uff11\uff12"),
    (attributes.Integer, "9" * 5000),  # beyond Python's int <-> text digit limit
    pytest.param(attributes.Integer, -(10**5000), id="Integer-minus-10e5000"),
    (attributes.Integer, decimal.Decimal(1)),
    (attributes.Float, "abc"), (attributes.Float, True), (attributes.Float, float("nan")),
    (attributes.Float, "nan"), (attributes.Float, 10**400), (attributes.Float, [1.0]),
    (attributes.Decimal, "abc"), (attributes.Decimal, decimal.Decimal("NaN")),
    (attributes.Decimal, decimal.Decimal("sNaN")), (attributes.Decimal, float("inf")),
    (attributes.Decimal, float("nan")), (attributes.Decimal, "Infinity"),
    (attributes.Decimal, False),
    (attributes.Decimal, [1]),
    (attributes.DateTime, dt.date(2020, 1, 1)), (attributes.DateTime, "yesterday"),
    (attributes.DateTime, 1234567890),
    (attributes.UUID, "not-a-uuid"), (attributes.UUID, 5), (attributes.UUID, "{" + UID + "}"),
    (attributes.UUID, UID + ":x"), (attributes.UUID, " " + UID),
    (attributes.JSON, {1, 2}), (attributes.JSON, object()), (attributes.JSON, float("nan")),
    (attributes.JSON, {"a": [float("inf")]}), (attributes.JSON, b"bytes"),
])
def test_cast_refuses_wrong_values_with_validation_error(cls: type[attributes.Attribute],
                                                         bad: object) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        cls.cast(bad)
    assert raised.value.value is bad


def test_nan_is_allowed_only_when_declared() -> None:
    assert math.isnan(attributes.Float(allow_nan=True).clean(float("nan")))
    with pytest.raises(errors.ValidationError):
        attributes.Float().clean(float("nan"))


def test_clean_errors_name_model_field_and_value() -> None:
    with pytest.raises(errors.ValidationError) as raised:
        Everything(number="twelve")
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Everything", "number", "twelve")
    assert "Everything.number" in str(raised.value)
    instance = Everything()
    with pytest.raises(errors.ValidationError) as raised:
        instance.ratio = "x"
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Everything", "ratio", "x")
    assert instance.ratio == 0.0  # the failed assignment left the value alone


def test_huge_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(errors.ValidationError) as raised:
        Everything(number="x" * 10_000)
    assert len(str(raised.value)) < 400
    assert raised.value.value == "x" * 10_000


# -- empty values, defaults and null ------------------------------------------------------
def test_empty_values_of_a_fresh_instance() -> None:
    record = Everything()
    assert record.text == ""
    assert record.maybe_text is None  # null=True without a default starts as None (Django)
    assert record.raw == b""
    assert record.log == b""
    assert record.number == 0 and type(record.number) is int
    assert record.ratio == 0.0 and type(record.ratio) is float
    assert record.price == decimal.Decimal("0")
    assert record.at is None
    assert record.ref is None
    assert record.data is None
    assert record.target is None
    assert isinstance(record.id, uuid.UUID)


def test_defaults_value_and_callable() -> None:
    calls = []

    def make() -> list[int]:
        calls.append(1)
        return [len(calls)]

    class Defaults(ActiveRecord):
        class Meta:
            namespace = "unit"

        count = attributes.Integer(default=7)
        coerced = attributes.Integer(default="8")
        label = attributes.Unicode(default=lambda: "generated")
        data = attributes.JSON(default=make)
        optional = attributes.Unicode(null=True, default="dflt")

    first, second = Defaults(), Defaults()
    assert (first.count, first.coerced, first.label) == (7, 8, "generated")
    assert first.data == [1] and second.data == [2]  # a callable default runs per instance
    assert first.data is not second.data
    assert Defaults(count=1).count == 1
    assert Defaults(optional=None).optional is None  # an explicit None beats the default
    assert Defaults().optional == "dflt"


def test_invalid_default_is_a_validation_error_at_construction() -> None:
    class BadDefault(ActiveRecord):
        class Meta:
            namespace = "unit"

        count = attributes.Integer(default="many")

    with pytest.raises(errors.ValidationError) as raised:
        BadDefault()
    assert (raised.value.model, raised.value.field) == ("BadDefault", "count")


@pytest.mark.parametrize("name", ["text", "raw", "number", "ratio", "price", "log"])
def test_none_refused_for_null_false_fields_with_an_empty_value(name: str) -> None:
    record = Everything()
    with pytest.raises(errors.ValidationError) as raised:
        setattr(record, name, None)
    assert (raised.value.model, raised.value.field, raised.value.value) == (
        "Everything", name, None)
    assert "null=True" in str(raised.value)
    with pytest.raises(errors.ValidationError):
        Everything(**{name: None})


@pytest.mark.parametrize("name", ["maybe_text", "at", "ref", "data", "target"])
def test_none_accepted_where_null_or_no_empty_value(name: str) -> None:
    record = Everything()
    setattr(record, name, None)
    assert getattr(record, name) is None


def test_null_true_accepts_none_for_every_type() -> None:
    for cls in (attributes.Unicode, attributes.Bytes, attributes.Integer, attributes.Float,
                attributes.Decimal, attributes.ByteStream):
        assert cls(null=True).clean(None) is None
        with pytest.raises(errors.ValidationError):
            cls(null=False).clean(None)


def test_encoding_option_of_unicode_and_bytes() -> None:
    assert attributes.Bytes(encoding="latin-1").clean("é") == b"\xe9"
    assert attributes.Unicode(encoding="latin-1").clean(b"\xe9") == "é"
    with pytest.raises(errors.ValidationError):
        attributes.Unicode().clean(b"\xe9")


# -- exact round trips through encode/decode ------------------------------------------------
FLOATS = [0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, 1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308,
          float("inf"), float("-inf"), 123456789.123456789, 1e16, 9007199254740993.0]


@pytest.mark.parametrize("value", FLOATS, ids=repr)
def test_float_round_trip_is_exact(value: float) -> None:
    f = attributes.Float()
    back = f.decode(f.encode(f.clean(value)))
    assert type(back) is float
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)  # -0.0 stays -0.0
    assert back.hex() == value.hex()


@pytest.mark.parametrize("text", ["1.10", "1E+2", "0.000", "-0", "123456789012345678901234567890.5",
                                  "1E-30", "-7.250", "0E-7"])
def test_decimal_keeps_every_digit(text: str) -> None:
    d = attributes.Decimal()
    back = d.decode(d.encode(d.clean(text)))
    assert str(back) == text
    assert back.as_tuple() == decimal.Decimal(text).as_tuple()


DATETIMES = [
    dt.datetime(2015, 8, 27, 10, 11, 12, 123456),  # naive
    dt.datetime(2015, 8, 27, 10, 11, 12),  # naive, no microseconds
    dt.datetime(2015, 8, 27, 10, 11, 12, 1, tzinfo=UTC),
    dt.datetime(2015, 8, 27, 10, 11, 12, 999999,
                tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2015, 8, 27, 10, 11, 12, 5, tzinfo=dt.timezone(-dt.timedelta(hours=9, minutes=45))),
    dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(999, 1, 2, 3, 4, 5, 6),
]


@pytest.mark.parametrize("value", DATETIMES, ids=str)
def test_datetime_round_trip_keeps_microseconds_and_offset(value: dt.datetime) -> None:
    f = attributes.DateTime()
    back = f.decode(f.encode(f.clean(value)))
    assert back == value
    assert back.microsecond == value.microsecond
    assert back.utcoffset() == value.utcoffset()
    assert (back.tzinfo is None) == (value.tzinfo is None)


def test_datetime_encoding_is_iso_with_microseconds() -> None:
    f = attributes.DateTime()
    assert f.encode(dt.datetime(2020, 1, 2, 3, 4, 5)) == b"2020-01-02T03:04:05.000000"
    assert f.encode(dt.datetime(2020, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == (
        b"2020-01-02T03:04:05.000007+00:00")


@pytest.mark.parametrize("value", [b"", b"\x00", bytes(range(256)), b"\xff\xfe\x80", b"caf\xc3\xa9",
                                   b"\xed\xa0\x80", b'{"type": "x"}', b"\r\n\t\\\""])
def test_bytes_round_trip_is_binary_safe(value: bytes) -> None:
    for cls in (attributes.Bytes, attributes.ByteStream):
        f = cls()
        assert f.decode(f.encode(f.clean(value))) == value


@pytest.mark.parametrize("value", ["", "Harry Potter", "日本語 ✓ \U0001f600", "\x00\n\"\\",
                                   "a" * 10_000])
def test_unicode_round_trip(value: str) -> None:
    f = attributes.Unicode()
    assert f.decode(f.encode(f.clean(value))) == value


@pytest.mark.parametrize("value", [0, 1, -1, 2**63 - 1, -(2**63)])
def test_integer_round_trip(value: int) -> None:
    f = attributes.Integer()
    assert f.encode(value) == str(value).encode()
    assert f.decode(f.encode(value)) == value


@pytest.mark.parametrize("value", [None, True, 0, -1.5, "s", [], {}, {"a": [1, {"b": None}]},
                                   "日本", 2**70])
def test_json_round_trip(value: object) -> None:
    f = attributes.JSON()
    if value is None:
        assert f.clean(None) is None
        return
    back = f.decode(f.encode(f.clean(value)))
    assert back == value and type(back) is type(value)


def test_json_is_real_json_text_not_a_python_repr() -> None:
    assert json.loads(attributes.JSON().encode({"k": ["x"]})) == {"k": ["x"]}
    assert attributes.JSON().encode("é") == '"é"'.encode()


def test_uuid_round_trip() -> None:
    f = attributes.UUID()
    assert f.encode(uuid.UUID(UID)) == UID.encode()
    assert f.decode(UID.encode()) == uuid.UUID(UID)


# -- to_python / to_string ---------------------------------------------------------------
def test_to_python_is_the_envelope_and_simple_is_the_value() -> None:
    f = attributes.Unicode()
    assert f.to_python("Harry Potter") == {
        "type": "Unicode", "value": "Harry Potter", "module": "repocket.attributes"}
    assert f.to_python("Harry Potter", simple=True) == "Harry Potter"
    assert f.to_python(None) is None
    assert f.to_python(None, simple=True) is None
    assert attributes.Integer().to_python(12, simple=True) == "12"
    assert attributes.Float().to_python(-0.0, simple=True) == "-0.0"
    assert attributes.Decimal().to_python("1.10", simple=True) == "1.10"
    assert attributes.UUID().to_python(UID)["type"] == "UUID"
    assert attributes.AutoUUID().to_python(UID) == {
        "type": "AutoUUID", "value": UID, "module": "repocket.attributes"}
    assert attributes.JSON().to_python({"a": 1}, simple=True) == '{"a": 1}'
    assert attributes.DateTime().to_python(dt.datetime(2020, 1, 1), simple=True) == (
        "2020-01-01T00:00:00.000000")


def test_to_python_validates() -> None:
    with pytest.raises(errors.ValidationError):
        attributes.Integer().to_python("nope")


def test_to_python_of_non_utf8_bytes_is_a_base64_envelope() -> None:
    envelope = attributes.Bytes().to_python(b"\xff\x00")
    assert envelope == {"type": "Bytes", "value": "/wA=", "module": "repocket.attributes",
                        "encoding": "base64"}
    assert attributes.Bytes().to_python(b"ok") == {
        "type": "Bytes", "value": "ok", "module": "repocket.attributes"}


def test_to_string_is_the_stored_envelope_text() -> None:
    assert attributes.Unicode().to_string("Harry Potter") == (
        '{"type": "Unicode", "value": "Harry Potter", "module": "repocket.attributes"}')
    assert attributes.Unicode().to_string("é") == (
        '{"type": "Unicode", "value": "é", "module": "repocket.attributes"}')
    assert json.loads(attributes.Bytes().to_string(b"\x80"))["encoding"] == "base64"


def test_to_python_of_a_pointer_is_the_target_id() -> None:
    target = Target(id=UID, name="t")
    assert field("target").to_python(target) == {
        "type": "Pointer", "value": UID, "module": "repocket.attributes"}


# -- UUIDs -------------------------------------------------------------------------------
def test_parse_uuid_forms() -> None:
    expected = uuid.UUID(UID)
    for form in (expected, UID, UID.upper(), UID.replace("-", ""), "urn:uuid:" + UID,
                 UID.encode()):
        assert parse_uuid(form) == expected


@pytest.mark.parametrize("bad", [
    UID + ":x", "*", UID[:-1] + "*", "{" + UID + "}", " " + UID, UID + " ", UID + "\n",
    UID + "\t", "\n" + UID, "x" * 10_000, "", UID[:-1], UID + "0",
])
def test_parse_uuid_is_strict(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_uuid(bad)


def test_parse_uuid_wrong_type() -> None:
    with pytest.raises(TypeError):
        parse_uuid(12)


def test_auto_uuid_is_version_1_with_a_random_multicast_node() -> None:
    ids = [random_node_uuid1() for _ in range(5000)] + [Everything().id for _ in range(50)]
    for value in ids:
        assert value.version == 1
        assert value.variant == uuid.RFC_4122
        assert value.node & (1 << 40), "the multicast bit marks a node that is not a MAC"
    assert len(set(ids)) == len(ids)  # unique even when made faster than the clock ticks
    assert [value.time for value in ids] == sorted(value.time for value in ids)
    # one random node per process (no system call per id), not the machine's MAC ...
    assert len({value.node for value in ids}) == 1
    assert ids[0].node != uuid.getnode()
    # ... and a forked child draws its own
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, str(random_node_uuid1().node).encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert int(os.read(read, 100)) != ids[0].node


def test_auto_uuid_clean_raises_invalid_id() -> None:
    for bad in (None, 5, "nope", UID + ":"):
        with pytest.raises(errors.InvalidId) as raised:
            Everything(id=bad)
        assert (raised.value.model, raised.value.field, raised.value.value) == (
            "Everything", "id", bad)
        assert isinstance(raised.value, errors.ValidationError)


def test_explicit_id_is_normalised() -> None:
    assert Everything(id=UID.upper().replace("-", "")).id == uuid.UUID(UID)


# -- pointers without Redis ----------------------------------------------------------------
def test_pointer_accepts_an_instance_and_refuses_other_models() -> None:
    target = Target(name="t")
    record = Everything(target=target)
    assert record.target is target
    with pytest.raises(errors.ValidationError) as raised:
        record.target = Everything()
    assert (raised.value.model, raised.value.field) == ("Everything", "target")
    with pytest.raises(errors.ValidationError):
        record.target = 42
    with pytest.raises(errors.ValidationError):
        record.target = "not:an:id"
    assert record.target is target


def test_pointer_target_id_and_sort_key() -> None:
    f = field("target")
    target = Target(id=UID)
    assert f.target_id(target) == uuid.UUID(UID)
    assert f.target_id(uuid.UUID(UID)) == uuid.UUID(UID)
    assert f.target_id(UID) == uuid.UUID(UID)
    assert f.encode(target) == UID.encode()
    assert f.decode(UID.encode()) == uuid.UUID(UID)
    assert f.sort_key(target) == UID


def test_sort_keys() -> None:
    naive = dt.datetime(2020, 1, 1, 12)
    aware = dt.datetime(2020, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # 11:00 UTC
    f = attributes.DateTime()
    assert f.sort_key(aware) < f.sort_key(naive)
    assert attributes.UUID().sort_key(uuid.UUID(UID)) == UID


def test_auto_now_sets_utc_now_on_pre_save() -> None:
    class Stamped(ActiveRecord):
        class Meta:
            namespace = "unit"

        at = attributes.DateTime(auto_now=True)
        fixed = attributes.DateTime()

    record = Stamped(fixed="2020-01-01T00:00:00")
    assert record.at is None
    before = dt.datetime.now(UTC)
    for f in Stamped._meta.fields.values():
        f.pre_save(record)
    assert before <= record.at <= dt.datetime.now(UTC)
    assert record.at.utcoffset() == dt.timedelta(0)
    assert record.fixed == dt.datetime(2020, 1, 1)


def test_descriptor_on_the_class_returns_the_attribute() -> None:
    assert isinstance(Everything.text, attributes.Unicode)
    assert Everything.text.name == "text"
    assert repr(Everything.text) == "<Unicode text>"
    assert repr(attributes.Integer()) == "<Integer (unbound)>"
