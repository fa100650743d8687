"""Every error repocket raises derives from :class:`RepocketError`.

Errors caused by a value carry ``model``, ``field`` and ``value`` attributes so
that callers can react without parsing messages. Connection problems also
derive from the matching redis-py exception, so code that already catches
``redis.exceptions.ConnectionError`` keeps working.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions


class RepocketError(Exception):
    """Root of every repocket exception."""


class RepocketActiveRecordDefinitionError(RepocketError, TypeError):
    """A model declaration is inconsistent (two AutoUUIDs, a bad Pointer, a reserved name...)."""


DefinitionError = RepocketActiveRecordDefinitionError


class ConfigurationError(RepocketError, ValueError):
    """``configure`` was given something it cannot use."""


class FieldError(RepocketError):
    """Base for errors about one field of one model."""

    def __init__(self, message: str, *, model: str = "", field: str = "", value: Any = None):
        super().__init__(message)
        self.model = model
        self.field = field
        self.value = value


class ValidationError(FieldError, ValueError):
    """A value cannot be stored in a field (wrong type, out of range, not encodable)."""


class ValueTooLarge(ValidationError):
    """A value (or a ByteStream after an append) would be longer than the longest string
    the server accepts (its ``proto-max-bulk-len``, 512 MB by default); nothing was
    written. ``value`` is the size in bytes."""


class InvalidId(ValidationError):
    """An id is not a UUID (ids become part of key names, so they are strict)."""


class UniqueViolation(FieldError, ValueError):
    """A save would give a record a unique value (or combination) another record holds.

    ``field`` names the field(s), comma-separated; ``value`` is the value (a list
    for ``unique_together``); ``owner`` is the id of the record that holds it."""

    def __init__(self, message: str, *, model: str = "", field: str = "", value: Any = None,
                 owner: str = ""):
        super().__init__(message, model=model, field=field, value=value)
        self.owner = owner


class UnknownField(FieldError, AttributeError):
    """A keyword names no field of the model."""


class UnsavedPointer(FieldError, ValueError):
    """A Pointer targets an instance that was never saved."""


class PointerTargetMissing(FieldError, LookupError):
    """A Pointer targets a record that does not exist in Redis."""


class DoesNotExist(FieldError, LookupError):
    """The record an operation needs is not in Redis."""


class StaleRecord(FieldError, RuntimeError):
    """A save (or delete) of an instance of a ``Meta.optimistic_lock`` model that was loaded,
    or last saved, before another write of its record: nothing was written. ``value`` is
    the record's id; ``expected`` the version the instance holds, ``found`` the stored one.
    Reload it (``refresh_from_db()``), apply the change again and retry."""

    def __init__(self, message: str, *, model: str = "", field: str = "", value: Any = None,
                 expected: int | None = None, found: int | None = None):
        super().__init__(message, model=model, field=field, value=value)
        self.expected = expected
        self.found = found


class StoredDataError(RepocketError):
    """What is stored in Redis does not match the model (wrong key type, undecodable value)."""

    def __init__(self, message: str, *, model: str = "", field: str = "", key: str = "",
                 value: Any = None):
        super().__init__(message)
        self.model = model
        self.field = field
        self.key = key
        self.value = value


class WrongKeyType(StoredDataError):
    """A key repocket owns holds another Redis type (e.g. a string where a hash belongs)."""


class InvalidQuery(FieldError, ValueError):
    """A query the engine cannot run: an unsupported lookup, a bad slice, ``pointer_depth``
    out of range... ``field`` names the field when there is one."""


class Unsupported(RepocketError, NotImplementedError):
    """An operation this connection cannot run yet (on Redis Cluster: queries, unique
    constraints, Pointers, the checker, the asyncio API). Nothing was sent."""


class MultipleObjectsReturned(RepocketError, LookupError):
    """``get()`` matched more than one record."""


class SyncInEventLoop(RepocketError, RuntimeError):
    """A synchronous call that does I/O (a save, a query, a lazy Pointer or deferred-field
    load) was made inside a running asyncio event loop, where it would block every task:
    use the async form (``asave``, ``aget``, ``await record.afetch(name)``...)."""


class ScriptError(RepocketError):
    """A repocket Lua script failed in a way no specific error describes."""


class RepocketConnectionError(RepocketError, redis.exceptions.ConnectionError):
    """Redis is unreachable or the connection dropped. Retriable."""


class ServerBusy(RepocketConnectionError):
    """Redis answered ``BUSY``: a script has run past ``lua-time-limit`` (``busy-reply-threshold``)
    and the server refuses other commands until it ends or is killed. The call did not run.
    Retriable, like :class:`RepocketConnectionError` (which it derives from)."""


class RepocketTimeoutError(RepocketError, redis.exceptions.TimeoutError):
    """Redis did not answer in time. Retriable; the operation may or may not have run."""


class OutOfMemory(RepocketError, redis.exceptions.OutOfMemoryError):
    """Redis refused the write because it is over ``maxmemory``; nothing was written."""


class PermissionDenied(RepocketError, redis.exceptions.NoPermissionError):
    """The Redis user may not run a command repocket needs (see the ACL rule in the README)."""


class ReadOnly(RepocketError, redis.exceptions.ReadOnlyError):
    """The server is a read-only replica; nothing was written."""


class ModelRedefined(UserWarning):
    """A model class was defined again in the same module under the same name (a reload):
    the new class takes over its keys. A different model on the same keys is refused
    with :class:`RepocketActiveRecordDefinitionError` instead."""
