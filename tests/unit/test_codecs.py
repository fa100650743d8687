"""The envelope and compact codecs, without Redis."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repocket import ActiveRecord, attributes, configure, errors
from repocket.core.codecs import (
    CODECS,
    CompactCodec,
    CorruptValue,
    EnvelopeCodec,
    envelope_decoder,
    get_codec,
)

UID = "970773fa-4de1-11e5-86f4-6c4008a70392"
ENVELOPE, COMPACT = EnvelopeCodec(), CompactCodec()

VALUES: list[tuple[attributes.Attribute, object]] = [
    (attributes.Unicode(), "Harry Potter"),
    (attributes.Unicode(), "日本 \x00 \"quoted\" \\ \U0001f600"),
    (attributes.Bytes(), b"harry@hogwards.uk"),
    (attributes.Bytes(), bytes(range(256))),
    (attributes.Bytes(), b"\xff"),
    (attributes.Bytes(), b""),
    (attributes.ByteStream(), b"\x80abc"),
    (attributes.Integer(), -(2**63)),
    (attributes.Float(), -0.0),
    (attributes.Float(), 5e-324),
    (attributes.Float(), 1e308),
    (attributes.Float(), float("inf")),
    (attributes.Float(), float("-inf")),
    (attributes.Decimal(), decimal.Decimal("1.10")),
    (attributes.Decimal(), decimal.Decimal("1E+2")),
    (attributes.DateTime(), dt.datetime(2015, 8, 27, 1, 2, 3, 45)),
    (attributes.DateTime(), dt.datetime(2015, 8, 27, 1, 2, 3, 45,
                                        dt.timezone(dt.timedelta(hours=-3, minutes=-30)))),
    (attributes.UUID(), uuid.UUID(UID)),
    (attributes.AutoUUID(), uuid.UUID(UID)),
    (attributes.JSON(), {"known_tricks": ["Protego", "Expelliarmus"], "n": 1.5, "x": None}),
    (attributes.JSON(), "just a string"),
]


def identical(a: object, b: object) -> bool:
    if isinstance(a, float):
        return (isinstance(b, float) and a.hex() == b.hex()
                and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, decimal.Decimal):
        return isinstance(b, decimal.Decimal) and a.as_tuple() == b.as_tuple()
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset() and a.microsecond == b.microsecond
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("codec", [ENVELOPE, COMPACT], ids=["envelope", "compact"])
@pytest.mark.parametrize(("attribute", "value"), VALUES, ids=[repr(v)[:30] for _, v in VALUES])
def test_round_trip_is_exact(codec: object, attribute: attributes.Attribute, value: object) -> None:
    raw = codec.encode(attribute, value)  # type: ignore[attr-defined]
    assert isinstance(raw, bytes)
    assert identical(codec.decode(attribute, raw), value)  # type: ignore[attr-defined]


def test_envelope_format_is_exactly_the_documented_one() -> None:
    assert ENVELOPE.encode(attributes.Unicode(), "Harry Potter") == (
        b'{"type": "Unicode", "value": "Harry Potter", "module": "repocket.attributes"}')
    assert ENVELOPE.encode(attributes.Bytes(), b"harry@hogwards.uk") == (
        b'{"type": "Bytes", "value": "harry@hogwards.uk", "module": "repocket.attributes"}')
    assert ENVELOPE.encode(attributes.AutoUUID(), uuid.UUID(UID)) == (
        b'{"type": "AutoUUID", "value": "' + UID.encode() + b'", "module": "repocket.attributes"}')
    assert ENVELOPE.encode(attributes.Integer(), 5) == (
        b'{"type": "Integer", "value": "5", "module": "repocket.attributes"}')
    # not ASCII-escaped: UTF-8 text stays readable in redis-cli
    assert ENVELOPE.encode(attributes.Unicode(), "é") == (
        '{"type": "Unicode", "value": "é", "module": "repocket.attributes"}'.encode())


def test_envelope_of_json_holds_json_text() -> None:
    stored = json.loads(ENVELOPE.encode(attributes.JSON(), {"a": [1, "b"]}))
    assert stored["type"] == "JSON"
    assert json.loads(stored["value"]) == {"a": [1, "b"]}


def test_non_utf8_bytes_use_a_base64_envelope() -> None:
    value = b"\xff\xfe\x00binary"
    stored = json.loads(ENVELOPE.encode(attributes.Bytes(), value))
    assert stored == {"type": "Bytes", "value": base64.b64encode(value).decode(),
                      "module": "repocket.attributes", "encoding": "base64"}
    utf8 = json.loads(ENVELOPE.encode(attributes.Bytes(), "é".encode()))
    assert "encoding" not in utf8 and utf8["value"] == "é"


def test_compact_stores_the_canonical_bytes_alone() -> None:
    assert COMPACT.encode(attributes.Unicode(), "é") == "é".encode()
    assert COMPACT.encode(attributes.Bytes(), b"\xff\x00") == b"\xff\x00"
    assert COMPACT.encode(attributes.Integer(), -12) == b"-12"
    assert COMPACT.encode(attributes.Float(), -0.0) == b"-0.0"
    assert COMPACT.encode(attributes.Decimal(), decimal.Decimal("1.10")) == b"1.10"
    assert COMPACT.encode(attributes.UUID(), uuid.UUID(UID)) == UID.encode()


@pytest.mark.parametrize(("forged_type", "module"), [
    ("Integer", "os"), ("JSON", "subprocess"), ("Pointer", "repocket.attributes"),
    ("Bytes", "builtins"),
])
def test_decoding_ignores_forged_type_and_module(forged_type: str, module: str) -> None:
    raw = json.dumps({"type": forged_type, "value": "__import__('os')", "module": module}).encode()
    assert ENVELOPE.decode(attributes.Unicode(), raw) == "__import__('os')"
    assert ENVELOPE.decode(attributes.Bytes(), raw) == b"__import__('os')"
    with pytest.raises(ValueError):
        ENVELOPE.decode(attributes.Integer(), raw)


def test_decoding_uses_the_declared_field_not_the_stored_type() -> None:
    raw = ENVELOPE.encode(attributes.Unicode(), "12")
    assert ENVELOPE.decode(attributes.Integer(), raw) == 12
    assert ENVELOPE.decode(attributes.Decimal(), raw) == decimal.Decimal("12")
    raw = json.dumps({"type": "Whatever", "value": "1.5"}).encode()  # no module at all
    assert ENVELOPE.decode(attributes.Float(), raw) == 1.5


@pytest.mark.parametrize("raw", [
    b"not json", b"\xff\xfe", b"[1, 2]", b'"a string"', b"{}", b'{"value": 5}',
    b'{"value": null}', b'{"value": "!!!", "encoding": "base64"}',
    b'{"value": "\\u00e9", "encoding": "base64"}',
])
def test_envelope_corrupt_values_raise_corrupt_value(raw: bytes) -> None:
    with pytest.raises(CorruptValue):
        ENVELOPE.decode(attributes.Bytes(), raw)
    assert issubclass(CorruptValue, ValueError)


def test_get_codec() -> None:
    assert get_codec("envelope") is CODECS["envelope"]
    assert get_codec("compact") is CODECS["compact"]
    with pytest.raises(ValueError, match="unknown codec"):
        get_codec("pickle")


def test_model_codec_choice_and_global_default() -> None:
    class Free(ActiveRecord):
        class Meta:
            namespace = "unit"

        name = attributes.Unicode()

    class Pinned(ActiveRecord):
        class Meta:
            namespace = "unit"
            codec = "compact"

        name = attributes.Unicode()

    try:
        assert Free._meta.codec.name == "envelope"
        assert Pinned._meta.codec.name == "compact"
        configure.default_codec("compact")
        assert Free._meta.codec.name == "compact"
        configure.default_codec("envelope")
        assert Pinned._meta.codec.name == "compact"
        with pytest.raises(errors.ConfigurationError):
            configure.default_codec("pickle")
    finally:
        configure.reset()
    assert configure.default_codec() == "envelope"


# -- the fast envelope decoder (hydration's) agrees with the general one --------------------
_FAST_FIELDS = [attributes.Unicode(), attributes.Bytes(), attributes.Integer(),
                attributes.DateTime(), attributes.UUID(), attributes.JSON()]


def _general_or_error(attribute: attributes.Attribute, raw: bytes) -> object:
    try:
        return ("value", ENVELOPE.decode(attribute, raw))
    except (CorruptValue, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        return ("error", type(exc))


@pytest.mark.parametrize("attribute", _FAST_FIELDS, ids=lambda a: type(a).__name__)
@settings(max_examples=300, deadline=None)
@given(middle=st.binary(max_size=24) | st.text(max_size=12).map(lambda t: t.encode("utf-8",
                                                                                  "surrogatepass")))
def test_fast_envelope_decoder_agrees_with_json_loads(attribute: attributes.Attribute,
                                                      middle: bytes) -> None:
    """Any bytes between the exact prefix and suffix the encoder writes (quotes,
    backslashes, control characters, bytes that are not UTF-8 included) decode as
    ``json.loads`` of the whole envelope says, or fail the same way."""
    decode = envelope_decoder(attribute)
    template = ENVELOPE.encode(attributes.Unicode(), "\ue000")
    raw = template.replace(b'"Unicode"', json.dumps(type(attribute).__name__).encode())
    raw = raw.replace("\ue000".encode(), middle)
    try:
        fast: object = ("value", decode(raw))
    except (CorruptValue, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        fast = ("error", type(exc))
    general = _general_or_error(attribute, raw)
    assert fast[0] == general[0]
    if fast[0] == "value":
        assert identical(fast[1], general[1])
