"""Typed field descriptors.

Every attribute has two conversion hooks, ``encode(value) -> bytes`` (the
canonical stored form) and ``decode(raw) -> value``, plus ``coerce`` which turns
what a user assigns into the field's Python type or raises. Values live in the
instance's ``_values`` dict; the descriptor validates on assignment, so an
instance never holds a value it could not save.
"""

from __future__ import annotations

import codecs as _text_codecs
import datetime as _dt
import decimal
import enum
import functools
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, overload

from dateutil import parser as _dateparser

from .core import codecs
from .core.ids import new_id
from .errors import (
    InvalidId,
    PointerTargetMissing,
    RepocketActiveRecordDefinitionError,
    ValidationError,
)

if TYPE_CHECKING:
    from typing_extensions import Self
    from typing_extensions import TypeVar as TypingExtensionsTypeVar

    from .api.model import ActiveRecord

__all__ = [
    "JSON",
    "UUID",
    "Attribute",
    "AutoUUID",
    "Boolean",
    "ByteStream",
    "Bytes",
    "Date",
    "DateTime",
    "Decimal",
    "Enum",
    "Float",
    "Integer",
    "Pointer",
    "Unicode",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_UUID_TEXT = re.compile(
    r"(?:urn:uuid:)?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?"
    r"([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})"
)


def parse_uuid(value: Any) -> uuid.UUID:
    """A ``uuid.UUID`` from a UUID or one of its string forms; strict, since ids become keys."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise TypeError(f"expected a UUID or its string form, not {type(value).__name__}")
    match = _UUID_TEXT.fullmatch(value) if len(value) <= 45 else None
    if match is None:
        raise ValueError(f"{short_repr(value)} is not a UUID")
    return uuid.UUID("".join(match.groups()))


_UUID_TEXTS: dict[int, str] = {}
_UUID_TEXTS_MAX = 1 << 16


def uuid_text(value: uuid.UUID) -> str:
    """``str(value)``, remembered: a save formats its ids several times (keys, fields).
    Kept by the UUID's integer (hashed in C; a UUID's own hash is Python code), at most
    ``_UUID_TEXTS_MAX`` of them (the cache starts over when full)."""
    number = value.int
    text = _UUID_TEXTS.get(number)
    if text is None:
        if len(_UUID_TEXTS) >= _UUID_TEXTS_MAX:
            _UUID_TEXTS.clear()
        text = _UUID_TEXTS[number] = str(value)
    return text


@functools.lru_cache(maxsize=1 << 16)
def uuid_from_ascii(raw: bytes) -> uuid.UUID:
    """``uuid.UUID(raw.decode())``, remembered: Pointers name the same records again and again."""
    return uuid.UUID(raw.decode("ascii"))


def random_node_uuid1() -> uuid.UUID:
    """A version-1 UUID whose node is random (multicast bit set, per RFC 4122), not the MAC."""
    return new_id()  # no system call per id (see core/ids.py)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message: cut at ``limit`` characters, and never raising
    (a deeply nested list, an int too long for Python to write)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # a deeply nested container, an int too long to write
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def _known_encoding(encoding: str) -> str:
    """``encoding`` if Python knows it: a typo fails when the model is declared, not as a
    LookupError on some later assignment."""
    try:
        _text_codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise RepocketActiveRecordDefinitionError(
            f"unknown text encoding {encoding!r}") from None
    return encoding


def mark_dangling(instance: ActiveRecord, name: str) -> None:
    """The Pointer ``name`` reads None because its target is gone; its stored id stays
    until the field is assigned (a save must not take the missing target for a change)."""
    instance.__dict__.setdefault("_dangling", set()).add(name)


class _HybridMethod:
    """``Attr.cast(v)`` works on the class (with default settings) and on a configured field."""

    def __init__(self, func: Callable[..., Any]):
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, instance: Any, owner: type) -> Callable[..., Any]:
        target = instance if instance is not None else owner()
        return functools.partial(self.func, target)


# The value type a field gives on an instance (None included with null=True). Its
# default (Any) lets code that handles any field write a bare ``Attribute``.
if TYPE_CHECKING:
    _V = TypingExtensionsTypeVar("_V", default=Any)
else:
    _V = TypeVar("_V")
_E = TypeVar("_E", bound=enum.Enum)
_M = TypeVar("_M", bound="ActiveRecord")


class Attribute(Generic[_V]):
    """Base of every field type.

    ``null=True`` makes ``None`` a storable value. ``default`` is a value or a
    callable used when the field is never given a value; without one (or with
    ``default=None``) a ``null=True`` field starts as ``None``, as in Django, and
    any other field as its type's empty value (``empty_value``). ``index=True`` maintains a
    secondary index (equality; ranges and ordering too for numbers, datetimes
    and text); ``unique=True`` also refuses a value another record holds.
    """

    __base_type__: ClassVar[type] = object
    empty_value: ClassVar[Any] = None
    binary: ClassVar[bool] = False  # canonical form may be non-UTF-8 bytes
    is_stream: ClassVar[bool] = False
    # How the Lua scripts compare canonical values (see lua/_values.lua) and
    # which kind of index holds them ('lex', 'score', or None: not indexable).
    # (An Enum field sets both per instance, from the type of its enum's values.)
    family: str = "text"
    index_kind: str | None = "lex"

    def __init__(self, null: bool = False, default: Any = None, encoding: str = "utf-8", *,
                 index: bool = False, unique: bool = False):
        self.null = null
        self.default = default
        self.encoding = _known_encoding(encoding)
        self.unique = unique
        self.index = index or unique
        self.name = ""

    # -- descriptor protocol -------------------------------------------------
    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Self: ...
    @overload
    def __get__(self, instance: ActiveRecord, owner: type) -> _V: ...

    def __get__(self, instance: ActiveRecord | None, owner: type) -> Any:
        if instance is None:
            return self
        try:
            return instance._values[self.name]
        except KeyError:  # deferred by only()/defer(): one round trip loads it
            return instance._load_deferred(self.name)

    def __set__(self, instance: ActiveRecord, value: Any) -> None:
        instance._values[self.name] = self.clean(value, type(instance).__name__)

    # -- conversion hooks (override these) ------------------------------------
    def coerce(self, value: Any) -> Any:
        """Turn an assigned value into ``__base_type__`` or raise TypeError/ValueError."""
        return value

    def encode(self, value: Any) -> bytes:
        """The canonical stored form of a (non-None) value."""
        raise NotImplementedError

    def decode(self, raw: bytes) -> Any:
        """The value back from its canonical form."""
        raise NotImplementedError

    # -- shared behaviour -----------------------------------------------------
    def clean(self, value: Any, model: str = "") -> Any:
        """Validate and coerce ``value`` for this field, raising ValidationError."""
        if value is None:
            if self.null or self.empty_value is None:
                return None
            raise ValidationError(
                f"{model}.{self.name} cannot be None (declare it with null=True)",
                model=model, field=self.name, value=value,
            )
        try:
            return self.coerce(value)
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise ValidationError(
                f"{model}.{self.name}: {exc} (got {short_repr(value)})",
                model=model, field=self.name, value=value,
            ) from None

    @property
    def nullable(self) -> bool:
        """Whether the field can hold None (declared null=True, or None is its empty value)."""
        return self.null or self.empty_value is None

    def initial_value(self) -> Any:
        """The value of a field that was never given one: its default (a callable is called
        per instance); else None where the field is null=True (a unique null=True field
        left empty must not claim '' from the next record), else the type's empty value."""
        if self.default is not None:
            return self.default() if callable(self.default) else self.default
        return None if self.null else self.empty_value

    def sort_key(self, value: Any) -> Any:
        return value

    def pre_save(self, instance: ActiveRecord) -> None:
        """Hook run just before an instance is saved (``DateTime(auto_now=True)``)."""

    # -- the repocket 0.1 API -------------------------------------------------
    @_HybridMethod
    def cast(self, value: Any) -> Any:
        """Casts the attribute value as the defined ``__base_type__``."""
        return self.clean(value)

    @classmethod
    def get_base_type(cls) -> type:
        """Returns the ``__base_type__``."""
        return cls.__base_type__

    def to_python(self, value: Any, simple: bool = False) -> Any:
        """A JSON-safe form of ``value``: its envelope dict, or with ``simple=True`` the value
        string alone (``None`` stays ``None``)."""
        if value is None:
            return None
        envelope = codecs.envelope_dict(self, self.encode(self.clean(value)))
        return envelope["value"] if simple else envelope

    def to_string(self, value: Any) -> str:
        """The JSON envelope text stored for ``value``."""
        return json.dumps(self.to_python(value), ensure_ascii=False)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '(unbound)'}>"


class Unicode(Attribute[_V]):
    """Handles unicode-safe values."""

    if TYPE_CHECKING:  # the value type: str, or str | None with null=True
        @overload
        def __init__(self: Unicode[str], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Unicode[str | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Unicode[str | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    __base_type__ = str
    empty_value = ""

    def coerce(self, value: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode(self.encoding)
        if not isinstance(value, str):
            raise TypeError(f"expected str, not {type(value).__name__}")
        value.encode("utf-8")  # rejects lone surrogates, which Redis could not store as UTF-8
        return value

    def encode(self, value: str) -> bytes:
        return value.encode("utf-8")

    def decode(self, raw: bytes) -> str:
        return raw.decode("utf-8")


class Bytes(Attribute[_V]):
    """Handles raw byte strings; a ``str`` is encoded with the field's ``encoding``."""

    if TYPE_CHECKING:  # the value type: bytes, or bytes | None with null=True
        @overload
        def __init__(self: Bytes[bytes], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Bytes[bytes | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Bytes[bytes | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    __base_type__ = bytes
    empty_value = b""
    binary = True

    def coerce(self, value: Any) -> bytes:
        if isinstance(value, str):
            return value.encode(self.encoding)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise TypeError(f"expected bytes or str, not {type(value).__name__}")

    def encode(self, value: bytes) -> bytes:
        return value

    def decode(self, raw: bytes) -> bytes:
        return raw


class ByteStream(Bytes[_V]):
    """Bytes stored in their own Redis string, so ``append_<field>()`` is one APPEND."""

    if TYPE_CHECKING:  # the value type: bytes, or bytes | None with null=True
        @overload
        def __init__(self: ByteStream[bytes], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: ByteStream[bytes | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: ByteStream[bytes | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    is_stream = True
    index_kind = None


class JSON(Attribute[Any]):
    """Any JSON-encodable Python value, stored as JSON text."""

    __base_type__ = str
    family = "json"
    index_kind = None

    def coerce(self, value: Any) -> Any:
        self.encode(value)  # fail now, not at save time
        return value

    def encode(self, value: Any) -> bytes:
        # sorted keys: one text per value (the server compares decoded values, and uses
        # the text's brackets to tell arrays from objects)
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False,
                              sort_keys=True).encode("utf-8")
        except RecursionError:
            raise ValueError(_TOO_DEEP) from None

    def decode(self, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except RecursionError:
            raise ValueError(_TOO_DEEP) from None


# Python's json recurses once per level, against the interpreter's recursion limit.
_TOO_DEEP = "JSON nested too deeply for Python's recursion limit"


class Integer(Attribute[_V]):
    """Handles int, of any size.

    Stored as decimal digits, which the server compares exactly whatever their
    length; index scores are doubles (exact within 2**53), so the query engine
    checks the stored value of candidates beyond that. Python itself refuses to
    write ints of more than ``sys.get_int_max_str_digits()`` digits (4300 by default).
    """

    if TYPE_CHECKING:  # the value type: int, or int | None with null=True
        @overload
        def __init__(self: Integer[int], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Integer[int | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Integer[int | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    __base_type__: ClassVar[type] = int
    empty_value = 0
    family = "exact"
    index_kind = "score"

    def coerce(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"expected int, not {type(value).__name__}")
        if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
            raise ValueError("not an integer")
        # int() also makes an int subclass (IntEnum) a plain int; from text it raises
        # ValueError beyond Python's digit limit
        result = int(value)
        if not INT64_MIN <= result <= INT64_MAX:
            self.encode(result)  # fails now, not at save time, beyond Python's digit limit
        return result

    def encode(self, value: int) -> bytes:
        return b"%d" % value

    def decode(self, raw: bytes) -> int:
        return int(raw)


class Boolean(Integer[_V]):
    """Handles bool, stored as ``1`` or ``0`` (Redis' own convention); indexed and compared
    as the Integers 1 and 0 (so False orders first). Takes True and False, the ints 1 and 0
    and the texts ``true``/``false``/``1``/``0`` (any case); anything else is refused rather
    than judged by its truthiness (``"no"`` is not False)."""

    if TYPE_CHECKING:  # the value type: bool, or bool | None with null=True
        @overload
        def __init__(self: Boolean[bool], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Boolean[bool | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Boolean[bool | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    __base_type__ = bool
    empty_value = False

    def coerce(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _BOOLEAN_TEXTS:
            return _BOOLEAN_TEXTS[value.lower()]
        if isinstance(value, (int, str)):
            raise ValueError("expected True or False (or 1, 0, 'true', 'false')")
        raise TypeError(f"expected bool, not {type(value).__name__}")

    def encode(self, value: int) -> bytes:  # a bool
        return b"1" if value else b"0"

    def decode(self, raw: bytes) -> bool:
        if raw not in (b"0", b"1"):
            raise ValueError("a Boolean is stored as 1 or 0")
        return raw == b"1"


_BOOLEAN_TEXTS = {"true": True, "false": False, "1": True, "0": False}


class Float(Attribute[_V]):
    """Handles float; ``repr`` is stored, so every float round-trips exactly.

    NaN is refused unless ``allow_nan=True`` (it equals nothing and cannot be ordered).
    """

    __base_type__ = float
    empty_value = 0.0
    family = "float"
    index_kind = "score"

    @overload
    def __init__(self: Float[float], null: Literal[False] = ...,
                 default: Any = ..., encoding: str = ...,
                 allow_nan: bool = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: Float[float | None], null: Literal[True],
                 default: Any = ..., encoding: str = ...,
                 allow_nan: bool = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: Float[float | None], null: bool,
                 default: Any = ..., encoding: str = ...,
                 allow_nan: bool = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...

    def __init__(self, null: bool = False, default: Any = None, encoding: str = "utf-8",
                 allow_nan: bool = False, **options: Any):
        super().__init__(null=null, default=default, encoding=encoding, **options)
        self.allow_nan = allow_nan

    def coerce(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, decimal.Decimal)):
            raise TypeError(f"expected float, not {type(value).__name__}")
        result = float(value)
        if math.isnan(result) and not self.allow_nan:
            raise ValueError("NaN is not allowed (declare the field with allow_nan=True)")
        return result

    def encode(self, value: float) -> bytes:
        return repr(value).encode("ascii")

    def sort_key(self, value: Any) -> Any:
        return (math.isnan(value), 0.0 if math.isnan(value) else value)  # NaN last

    def decode(self, raw: bytes) -> float:
        return float(raw)


class Decimal(Attribute[_V]):
    """Handles ``decimal.Decimal``, keeping every digit (``Decimal('1.10')`` stays ``'1.10'``)."""

    if TYPE_CHECKING:  # the value type: decimal.Decimal, or decimal.Decimal | None with null=True
        @overload
        def __init__(self: Decimal[decimal.Decimal], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Decimal[decimal.Decimal | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Decimal[decimal.Decimal | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    __base_type__ = decimal.Decimal
    empty_value = decimal.Decimal("0")
    family = "exact"
    index_kind = "score"

    def coerce(self, value: Any) -> decimal.Decimal:
        if isinstance(value, bool) or not isinstance(value, (decimal.Decimal, int, float, str)):
            raise TypeError(f"expected Decimal, not {type(value).__name__}")
        # repr() of a float is its shortest exact form: Decimal(0.1) would be 55 digits.
        result = decimal.Decimal(repr(value) if isinstance(value, float) else value)
        if not result.is_finite():
            raise ValueError("NaN and infinity are not allowed")
        return result

    def encode(self, value: decimal.Decimal) -> bytes:
        return str(value).encode("ascii")

    def decode(self, raw: bytes) -> decimal.Decimal:
        return decimal.Decimal(raw.decode("ascii"))


class DateTime(Attribute[_V]):
    """Handles ``datetime.datetime``, naive or aware, to the microsecond.

    ``auto_now=True`` sets the field to the current UTC time on every save.
    Strings are parsed as ISO 8601.
    """

    __base_type__ = _dt.datetime
    family = "datetime"
    index_kind = "score"

    @overload
    def __init__(self: DateTime[_dt.datetime], auto_now: bool = ..., null: Literal[False] = ...,
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: DateTime[_dt.datetime | None], auto_now: bool = ..., *, null: Literal[True],
                 default: Any = ..., encoding: str = ..., index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: DateTime[_dt.datetime | None], auto_now: bool = ..., *, null: bool,
                 default: Any = ..., encoding: str = ..., index: bool = ...,
                 unique: bool = ...) -> None: ...

    def __init__(self, auto_now: bool = False, null: bool = False, default: Any = None,
                 encoding: str = "utf-8", **options: Any):
        super().__init__(null=null, default=default, encoding=encoding, **options)
        self.auto_now = auto_now

    def coerce(self, value: Any) -> _dt.datetime:
        if isinstance(value, str):
            value = _dateparser.isoparse(value)
        if not isinstance(value, _dt.datetime):
            raise TypeError(f"expected datetime, not {type(value).__name__}")
        offset = value.utcoffset()
        if offset is not None and offset.microseconds:
            raise ValueError("UTC offsets with fractions of a second cannot be stored")
        return value

    def encode(self, value: _dt.datetime) -> bytes:
        # always six digits of microseconds: isoformat() writes them unless they are 0
        if value.microsecond:
            return value.isoformat().encode("ascii")
        return value.isoformat(timespec="microseconds").encode("ascii")

    def decode(self, raw: bytes) -> _dt.datetime:
        return _dt.datetime.fromisoformat(raw.decode("ascii"))

    def pre_save(self, instance: ActiveRecord) -> None:
        if self.auto_now:
            instance._values[self.name] = _dt.datetime.now(_dt.timezone.utc)

    def sort_key(self, value: Any) -> Any:
        # Naive datetimes are taken as UTC so that naive and aware values can be ordered.
        return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)


class Date(Attribute[_V]):
    """Handles ``datetime.date``, stored as ISO 8601 ``YYYY-MM-DD``.

    That text orders as the dates do (years have four digits), so a Date is indexed and
    compared as text: equality, ranges, ordering, and ``startswith`` (``"2026-01"``: a
    month). A ``datetime`` is refused rather than silently cut to its date (which date
    it falls on depends on a time zone): pass ``value.date()``. Strings are parsed as ISO
    8601 dates.
    """

    if TYPE_CHECKING:  # the value type: _dt.date, or _dt.date | None with null=True
        @overload
        def __init__(self: Date[_dt.date], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Date[_dt.date | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: Date[_dt.date | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    __base_type__ = _dt.date

    def coerce(self, value: Any) -> _dt.date:
        if isinstance(value, str):
            value = _dt.date.fromisoformat(value)
        if isinstance(value, _dt.datetime):
            raise TypeError("expected a date, not a datetime (pass its .date())")
        if not isinstance(value, _dt.date):
            raise TypeError(f"expected date, not {type(value).__name__}")
        return value

    def encode(self, value: _dt.date) -> bytes:
        return value.isoformat().encode("ascii")

    def decode(self, raw: bytes) -> _dt.date:
        if not _DATE_TEXT.fullmatch(raw):  # one stored form: the server compares the text
            raise ValueError("a Date is stored as YYYY-MM-DD")
        return _dt.date.fromisoformat(raw.decode("ascii"))


_DATE_TEXT = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Enum(Attribute[_V]):
    """Handles the members of one ``enum.Enum`` class, stored by value.

    Every value of the enum must be a str (stored as its text, compared and indexed as
    text) or every value an int (stored as decimal digits, compared and indexed as an
    Integer). Takes a member, or a value of one (``Color("red")``, so ``"red"``).
    """

    __base_type__ = enum.Enum

    @overload
    def __init__(self: Enum[_E], enum_type: type[_E], null: Literal[False] = ...,
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: Enum[_E | None], enum_type: type[_E], null: Literal[True],
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: Enum[_E | None], enum_type: type[_E], null: bool,
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...

    def __init__(self, enum_type: type[enum.Enum], null: bool = False, default: Any = None,
                 encoding: str = "utf-8", **options: Any):
        super().__init__(null=null, default=default, encoding=encoding, **options)
        self.enum_type = enum_type
        self.family, self.index_kind, by_text = _enum_storage(enum_type)
        self._members_by_text = by_text

    def coerce(self, value: Any) -> enum.Enum:
        if isinstance(value, self.enum_type):
            return value
        if isinstance(value, enum.Enum):
            raise TypeError(f"expected a {self.enum_type.__name__}, not a "
                            f"{type(value).__name__}")
        return self.enum_type(value)  # ValueError when no member has that value

    def encode(self, value: enum.Enum) -> bytes:
        return _enum_value_text(value.value)

    def decode(self, raw: bytes) -> enum.Enum:
        member = self._members_by_text.get(raw)
        if member is not None:
            return member
        # a value no member was declared with: a Flag combination (Perm.R | Perm.W), or junk
        text = raw.decode("utf-8")
        if self.family == "exact":
            if not _INTEGER_TEXT.fullmatch(text):
                raise ValueError(f"{text[:80]!r} is not an integer")
            return self.enum_type(int(text))
        return self.enum_type(text)

    def sort_key(self, value: Any) -> Any:
        return value.value


def _enum_value_text(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else b"%d" % value


def _enum_storage(enum_type: Any) -> tuple[str, str, dict[bytes, enum.Enum]]:
    """(family, index kind, members by stored text) for an Enum field over ``enum_type``."""
    if not (isinstance(enum_type, type) and issubclass(enum_type, enum.Enum)):
        raise RepocketActiveRecordDefinitionError(
            f"Enum fields take an enum.Enum class, not {enum_type!r}")
    values = [member.value for member in enum_type]
    if values and all(isinstance(v, str) for v in values):
        family, kind = "text", "lex"
    elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        family, kind = "exact", "score"
    else:
        raise RepocketActiveRecordDefinitionError(
            f"{enum_type.__name__}: an Enum field stores values that are all str or all int")
    try:
        by_text = {_enum_value_text(member.value): member for member in enum_type}
    except UnicodeEncodeError as exc:  # a lone surrogate in a value
        raise RepocketActiveRecordDefinitionError(f"{enum_type.__name__}: {exc}") from None
    return family, kind, by_text


class UUID(Attribute[_V]):
    """Handles ``uuid.UUID``; accepts any standard string form."""

    if TYPE_CHECKING:  # the value type: uuid.UUID, or uuid.UUID | None with null=True
        @overload
        def __init__(self: UUID[uuid.UUID], null: Literal[False] = ...,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: UUID[uuid.UUID | None], null: Literal[True],
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        @overload
        def __init__(self: UUID[uuid.UUID | None], null: bool,
                     default: Any = ..., encoding: str = ..., *, index: bool = ...,
                     unique: bool = ...) -> None: ...
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    __base_type__ = uuid.UUID

    def coerce(self, value: Any) -> uuid.UUID:
        return parse_uuid(value)

    def encode(self, value: uuid.UUID) -> bytes:
        return uuid_text(value).encode("ascii")

    def decode(self, raw: bytes) -> uuid.UUID:
        return uuid.UUID(raw.decode("ascii"))

    def sort_key(self, value: Any) -> Any:
        return str(value)


class AutoUUID(UUID[uuid.UUID]):
    """The record's id: a version-1 UUID generated on creation (with a random node id)."""

    def clean(self, value: Any, model: str = "") -> uuid.UUID:
        try:
            return parse_uuid(value)
        except (TypeError, ValueError) as exc:
            raise InvalidId(f"{model}.{self.name}: {exc}", model=model, field=self.name,
                            value=value) from None

    def initial_value(self) -> uuid.UUID:
        return random_node_uuid1()


class Pointer(Attribute[_V]):
    """A soft foreign key: stores the target's id and loads the target on ``get``.

    ``to_model`` is a model class, or ``"self"`` for the model being declared.
    Assign an instance of ``to_model`` or its id. An id is kept as it is, with no
    I/O: the save script checks that the target exists, in the same round trip
    (``PointerTargetMissing``), and reading the field loads the target. ``cast``
    alone uses a Redis connection: it returns the target record, as in 0.1.
    """

    __base_type__ = object

    @overload
    def __init__(self: Pointer[_M], to_model: type[_M], null: Literal[False] = ...,
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: Pointer[_M | None], to_model: type[_M], null: Literal[True],
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: Pointer[_M | None], to_model: type[_M], null: bool,
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...
    @overload
    def __init__(self: Pointer[Any], to_model: str, null: bool = ...,
                 default: Any = ..., encoding: str = ..., *, index: bool = ...,
                 unique: bool = ...) -> None: ...

    def __init__(self, to_model: type[ActiveRecord] | str, null: bool = False, default: Any = None,
                 encoding: str = "utf-8", **options: Any):
        super().__init__(null=null, default=default, encoding=encoding, **options)
        self.to_model: Any = to_model

    @overload
    def __get__(self, instance: None, owner: type) -> Self: ...
    @overload
    def __get__(self, instance: ActiveRecord, owner: type) -> _V: ...

    def __get__(self, instance: ActiveRecord | None, owner: type) -> Any:
        if instance is None:
            return self
        if self.name not in instance._values:
            instance._load_deferred(self.name)
        value = instance._values[self.name]
        if isinstance(value, uuid.UUID):  # an assigned id, or beyond the get's depth
            instance._refuse_lazy_load(self.name)  # in an event loop: await afetch(name)
            return self.take_target(instance, self.to_model.objects.get(id=value))
        return value

    def take_target(self, instance: ActiveRecord, target: Any) -> Any:
        """What reading the Pointer gives once its target is loaded (None: gone)."""
        if target is None and not instance._persisted:
            return None  # keep the id: saving reports the missing target
        instance._values[self.name] = target
        if target is None:
            mark_dangling(instance, self.name)
        return target

    def __set__(self, instance: ActiveRecord, value: Any) -> None:
        super().__set__(instance, value)
        instance.__dict__.get("_dangling", set()).discard(self.name)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, self.to_model):
            return value
        return parse_uuid(value)  # the target is checked by the save script

    @_HybridMethod
    def cast(self, value: Any) -> Any:
        """The record ``value`` points at (an instance, or an id this loads from Redis);
        ``PointerTargetMissing`` if there is none."""
        cleaned = self.clean(value)
        if not isinstance(cleaned, uuid.UUID):
            return cleaned
        target = self.to_model.objects.get(id=cleaned)
        if target is None:
            raise PointerTargetMissing(
                f"{self.to_model.__name__} {cleaned} does not exist",
                field=self.name, value=value)
        return target

    def lookup_id(self, value: Any) -> uuid.UUID:
        """The target id a lookup value names: an instance of ``to_model`` or an id."""
        if hasattr(value, "_meta") and not isinstance(value, self.to_model):
            raise TypeError(f"expected a {self.to_model.__name__} or its id, not a "
                            f"{type(value).__name__}")
        return self.target_id(value)

    def target_id(self, value: Any) -> uuid.UUID:
        """The id a value points at: an instance's id, or an id as is (unloaded pointer)."""
        if isinstance(value, uuid.UUID):
            return value
        if hasattr(value, "_meta"):
            pk: uuid.UUID = value.pk
            return pk
        return parse_uuid(value)

    def encode(self, value: Any) -> bytes:
        return uuid_text(self.target_id(value)).encode("ascii")

    def decode(self, raw: bytes) -> uuid.UUID:
        return uuid_from_ascii(raw)

    def sort_key(self, value: Any) -> Any:
        return str(self.target_id(value))
