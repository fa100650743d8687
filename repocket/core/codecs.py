"""How one field value becomes the bytes stored in a hash field, and back.

Each attribute knows its canonical byte form (``Attribute.encode`` /
``Attribute.decode``); a codec decides how that form is framed in Redis:

``envelope`` (default, repocket 0.1's "Serialization Rules")
    ``{"type": "Unicode", "value": "Harry Potter", "module": "repocket.attributes"}``.
    Bytes that are not UTF-8 are stored base64-encoded with ``"encoding": "base64"``.
``compact``
    The canonical bytes alone, for memory-sensitive deployments.

Decoding never looks at the stored ``type`` or ``module``: the declared field
decides. ``None`` is never encoded: a field holding ``None`` is absent from the
hash (the save script HDELs it).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..attributes import Attribute


class Codec(Protocol):
    name: str
    is_envelope: bool

    def encode(self, field: Attribute, value: Any) -> bytes: ...

    def decode(self, field: Attribute, raw: bytes) -> Any: ...


class CorruptValue(ValueError):
    """The stored bytes cannot be decoded as the declared field; callers add context."""


def envelope_dict(field: Attribute, canonical: bytes) -> dict[str, str]:
    """The JSON-safe envelope of a canonical value (``Attribute.to_python``'s format)."""
    envelope = {"type": type(field).__name__, "value": "", "module": type(field).__module__}
    if field.binary:
        try:
            envelope["value"] = canonical.decode("utf-8")
        except UnicodeDecodeError:
            envelope["value"] = base64.b64encode(canonical).decode("ascii")
            envelope["encoding"] = "base64"
    else:
        envelope["value"] = canonical.decode("utf-8")
    return envelope


class EnvelopeCodec:
    name = "envelope"
    is_envelope = True

    def encode(self, field: Attribute, value: Any) -> bytes:
        envelope = envelope_dict(field, field.encode(value))
        return json.dumps(envelope, ensure_ascii=False).encode("utf-8")

    def decode(self, field: Attribute, raw: bytes) -> Any:
        try:
            envelope = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError
            raise CorruptValue(f"not a JSON envelope: {exc}") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("value"), str):
            raise CorruptValue("the envelope has no string 'value'")
        text: str = envelope["value"]
        if envelope.get("encoding") == "base64":
            try:
                canonical = base64.b64decode(text.encode("ascii"), validate=True)
            except (ValueError, binascii.Error) as exc:
                raise CorruptValue(f"bad base64 value: {exc}") from None
        else:
            canonical = text.encode("utf-8", "surrogatepass")
        return field.decode(canonical)


def envelope_encoder(field: Attribute) -> Callable[[Any], bytes]:
    """``EnvelopeCodec().encode`` for one field, byte for byte, without building a dict:
    the JSON around the value is the same for every value of the field, so only the
    value is escaped (``json.dumps`` of one string); values that are not UTF-8 take the
    general path (base64)."""
    prefix = f'{{"type": {json.dumps(type(field).__name__, ensure_ascii=False)}, "value": '
    suffix = f', "module": {json.dumps(type(field).__module__, ensure_ascii=False)}}}'
    head, tail = prefix.encode("utf-8"), suffix.encode("utf-8")
    general = EnvelopeCodec().encode
    quote, encode = encode_basestring, field.encode  # what json.dumps does to one str

    def encode_envelope(value: Any) -> bytes:
        canonical = encode(value)
        try:
            text = canonical.decode("utf-8")
        except UnicodeDecodeError:
            return general(field, value)
        return head + quote(text).encode("utf-8") + tail

    return encode_envelope


def envelope_plain(field: Attribute) -> tuple[Callable[[bytes], Any], int, int]:
    """What recognises the envelope repocket writes for ``field`` around a value that JSON
    reads as it is and that is ASCII (printable, no quote or backslash: numbers, ids,
    dates, most text): a ``fullmatch`` (a match or None) and the slice ``[start:end]``
    holding the value's canonical bytes. Any other envelope needs ``envelope_decoder``."""
    head = f'{{"type": {json.dumps(type(field).__name__, ensure_ascii=False)}, "value": "'
    tail = f'", "module": {json.dumps(type(field).__module__, ensure_ascii=False)}}}'
    prefix, suffix = head.encode("utf-8"), tail.encode("utf-8")
    plain = re.compile(re.escape(prefix) + rb'[\x20\x21\x23-\x5b\x5d-\x7f]*' + re.escape(suffix),
                       re.DOTALL).fullmatch
    return plain, len(prefix), -len(suffix)


def envelope_decoder(field: Attribute) -> Callable[[bytes], Any]:
    """``EnvelopeCodec().decode`` for one field, with fast paths for the exact bytes
    repocket writes: ``{"type": "<T>", "value": "<v>", "module": "<m>"}`` where ``<v>``
    holds no escape, quote or control character, so it is the canonical value's UTF-8
    as it is. One regular-expression match finds an ASCII ``<v>`` (most values: numbers,
    ids, dates, plain text); other UTF-8 is checked as before. Anything else (escapes,
    base64, another type name, foreign JSON) goes through ``json.loads``."""
    head = f'{{"type": {json.dumps(type(field).__name__, ensure_ascii=False)}, "value": "'
    tail = f'", "module": {json.dumps(type(field).__module__, ensure_ascii=False)}}}'
    prefix, suffix = head.encode("utf-8"), tail.encode("utf-8")
    start, end = len(prefix), -len(suffix)
    # what JSON reads as it is: no quote, no backslash, no control character
    plain = re.compile(re.escape(prefix) + rb'([^"\\\x00-\x1f]*)' + re.escape(suffix),
                       re.DOTALL).fullmatch
    general = EnvelopeCodec().decode
    decode = field.decode

    def decode_envelope(raw: bytes) -> Any:
        found = plain(raw)
        if found is not None:
            middle = found[1]
            if middle.isascii():
                return decode(middle)
        if raw.startswith(prefix) and raw.endswith(suffix):
            middle = raw[start:end]
            if b"\\" not in middle and b'"' not in middle:
                try:  # bytes that are not UTF-8 are not JSON: the general path refuses them
                    if middle.decode("utf-8").isprintable():
                        return decode(middle)
                except UnicodeDecodeError:
                    pass
        return general(field, raw)

    return decode_envelope


def number_frame(codec: Codec, field: Attribute) -> tuple[bytes, bytes]:
    """What the codec writes around a number's canonical text (digits, sign, '.', 'E',
    'inf'...: nothing JSON escapes), so that a script computing the number stores exactly
    the bytes ``codec.encode`` would: the envelope's text before and after the value."""
    if not codec.is_envelope:
        return b"", b""
    head = f'{{"type": {json.dumps(type(field).__name__, ensure_ascii=False)}, "value": "'
    tail = f'", "module": {json.dumps(type(field).__module__, ensure_ascii=False)}}}'
    return head.encode("utf-8"), tail.encode("utf-8")


class CompactCodec:
    name = "compact"
    is_envelope = False

    def encode(self, field: Attribute, value: Any) -> bytes:
        return field.encode(value)

    def decode(self, field: Attribute, raw: bytes) -> Any:
        return field.decode(raw)


CODECS: dict[str, Codec] = {"envelope": EnvelopeCodec(), "compact": CompactCodec()}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; choose one of {sorted(CODECS)}") from None
