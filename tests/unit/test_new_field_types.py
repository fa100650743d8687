"""Boolean, Date and Enum without Redis: what they take, refuse, store and read back."""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Any

import pytest

from repocket import ActiveRecord, attributes, errors
from repocket.core.codecs import CODECS


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"
    NUL = "a\x00b"  # any text, NUL and non-ASCII included
    CAFE = "café"


class Level(enum.IntEnum):
    LOW = -1
    MID = 10
    HIGH = 2**70  # any int, as Integer fields


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


class Typed(ActiveRecord):
    class Meta:
        namespace = "unit.types"

    flag = attributes.Boolean()
    maybe = attributes.Boolean(null=True)
    day = attributes.Date(null=True)
    color = attributes.Enum(Color, default=Color.RED)
    level = attributes.Enum(Level, null=True)
    perm = attributes.Enum(Perm, null=True)


def field(name: str) -> attributes.Attribute:
    return Typed._meta.fields[name]


@pytest.mark.parametrize(("name", "given", "expected"), [
    ("flag", True, True), ("flag", False, False), ("flag", 1, True), ("flag", 0, False),
    ("flag", "true", True), ("flag", "FALSE", False), ("flag", "1", True), ("flag", "0", False),
    ("day", dt.date(2026, 1, 2), dt.date(2026, 1, 2)), ("day", "2026-01-02", dt.date(2026, 1, 2)),
    ("day", dt.date(1, 1, 1), dt.date(1, 1, 1)), ("day", dt.date.max, dt.date.max),
    ("color", Color.BLUE, Color.BLUE), ("color", "blue", Color.BLUE),
    ("color", "café", Color.CAFE), ("level", Level.HIGH, Level.HIGH), ("level", 10, Level.MID),
    ("level", -1, Level.LOW), ("perm", Perm.R | Perm.W, Perm.R | Perm.W), ("perm", 5, Perm(5)),
])
def test_accepted_values_round_trip_in_both_codecs(name: str, given: Any, expected: Any) -> None:
    attribute = field(name)
    cleaned = attribute.clean(given, "Typed")
    assert cleaned == expected and type(cleaned) is type(expected)
    for codec in CODECS.values():
        back = codec.decode(attribute, codec.encode(attribute, cleaned))
        assert back == expected and type(back) is type(expected)
    record = Typed(**{name: given})
    assert getattr(record, name) == expected


@pytest.mark.parametrize(("name", "bad"), [
    ("flag", "yes"), ("flag", "no"), ("flag", 2), ("flag", -1), ("flag", 1.0), ("flag", None),
    ("flag", []), ("day", dt.datetime(2026, 1, 2, 3)), ("day", "2026-13-01"), ("day", "soon"),
    ("day", 20260102), ("color", "green"), ("color", Level.MID), ("color", 1),
    ("level", "10"), ("level", 11), ("level", Color.RED), ("level", [1]),
])
def test_refused_values_are_validation_errors_naming_the_field(name: str, bad: Any) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        Typed(**{name: bad})
    assert (raised.value.model, raised.value.field) == ("Typed", name)
    assert raised.value.value is bad


def test_defaults_and_empty_values() -> None:
    record = Typed()
    assert record.flag is False  # the empty value of a Boolean, as 0 for an Integer
    assert record.maybe is None and record.day is None and record.level is None
    assert record.color is Color.RED
    # like DateTime, an Enum has no empty value: without a default it starts as None
    assert attributes.Enum(Color).initial_value() is None


def test_storage_forms() -> None:
    assert field("flag").encode(True) == b"1" and field("flag").encode(False) == b"0"
    assert field("day").encode(dt.date(33, 2, 3)) == b"0033-02-03"  # orders as text
    assert field("color").encode(Color.CAFE) == "café".encode()
    assert field("level").encode(Level.HIGH) == b"%d" % 2**70
    envelope = json.loads(CODECS["envelope"].encode(field("color"), Color.BLUE))
    assert envelope == {"type": "Enum", "value": "blue", "module": "repocket.attributes"}


def test_families_follow_the_stored_text() -> None:
    assert (field("flag").family, field("flag").index_kind) == ("exact", "score")
    assert (field("day").family, field("day").index_kind) == ("text", "lex")
    assert (field("color").family, field("color").index_kind) == ("text", "lex")
    assert (field("level").family, field("level").index_kind) == ("exact", "score")
    assert attributes.Enum.family == "text"  # the class default is untouched


@pytest.mark.parametrize(("name", "raw"), [
    ("flag", b"2"), ("flag", b"true"), ("flag", b""), ("day", b"2026-1-2"), ("day", b"20260102"),
    ("day", b"2026-02-30"), ("color", b"green"), ("color", b"\xff"), ("level", b"11"),
    ("level", b"1e3"), ("perm", b"-"),
])
def test_stored_bytes_that_are_no_value_raise_value_error(name: str, raw: bytes) -> None:
    with pytest.raises(ValueError):
        field(name).decode(raw)


@pytest.mark.parametrize("enum_type", [
    enum.Enum("Mixed", {"A": 1, "B": "b"}), enum.Enum("Floats", {"A": 1.5}),
    enum.Enum("Bools", {"T": True}), enum.Enum("Empty", {}), str, "Color",
])
def test_an_enum_whose_values_have_no_stored_form_is_refused_at_declaration(
        enum_type: Any) -> None:
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        attributes.Enum(enum_type)


def test_base_types() -> None:
    assert attributes.Boolean.get_base_type() is bool
    assert attributes.Date.get_base_type() is dt.date
    assert attributes.Enum.get_base_type() is enum.Enum
