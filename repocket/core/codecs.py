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
