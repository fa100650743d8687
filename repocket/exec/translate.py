"""Error translation: the repocket error for a redis-py error raised while running a
:class:`~repocket.core.plan.Call`. Pure (no I/O); shared by every executor."""

from __future__ import annotations

import json
import re
from typing import Any

import redis.exceptions as rexc

from .. import errors
from ..core import keys as keyspace
from ..core.plan import Call


def translate_error(exc: rexc.RedisError, call: Call) -> errors.RepocketError:
    """The repocket error for a redis-py error raised while running ``call``."""
    where = f"{call.model}.{call.script.name}"
    if isinstance(exc, rexc.ResponseError) and str(exc).startswith("REPOCKET "):
        try:
            details = json.loads(str(exc)[len("REPOCKET "):])
        except ValueError:
            details = None
        if isinstance(details, dict):
            return _script_error(details, call)
    if isinstance(exc, rexc.ResponseError) and str(exc).startswith("BUSY"):
        # A script is running past lua-time-limit: this call was refused, not run.
        return errors.ServerBusy(f"{where}: Redis is busy running a script (BUSY); nothing ran, "
                                 f"retry later: {exc}")
    if isinstance(exc, rexc.ClusterDownError):
        # CLUSTERDOWN / MASTERDOWN: a refusal (a failover in progress), the call did not run
        return errors.RepocketConnectionError(
            f"{where}: the cluster cannot serve this slot now (failing over?); nothing ran, "
            f"retry: {exc}")
    if isinstance(exc, rexc.TimeoutError):
        return errors.RepocketTimeoutError(f"{where}: Redis did not answer in time: {exc}")
    if isinstance(exc, rexc.ConnectionError):
        return errors.RepocketConnectionError(f"{where}: cannot reach Redis: {exc}")
    if isinstance(exc, rexc.OutOfMemoryError):
        return errors.OutOfMemory(f"{where}: Redis is over maxmemory, nothing written: {exc}")
    if _is_acl_denial(exc):
        return errors.PermissionDenied(f"{where}: the Redis user lacks a permission: {exc}")
    if isinstance(exc, rexc.ReadOnlyError):
        return errors.ReadOnly(f"{where}: the server is read-only, nothing written: {exc}")
    if isinstance(exc, rexc.ResponseError) and str(exc).startswith("WRONGTYPE"):
        return errors.WrongKeyType(f"{where}: {exc}", model=call.model)
    return errors.ScriptError(f"{where}: {exc}")


# An ACL refusal of a command a script runs is a plain error reply whose words depend on the
# server: Redis 7.0 says "The user executing the script can't run this command or subcommand"
# (or "can't access at least one of the keys", "can't publish to the channel"), Redis 7.2+ and
# Valkey say "ACL failure in script: User u has no permissions to run the 'hgetall' command"
# (or "No permissions to access a key"). A refusal of the call itself has the NOPERM code,
# which redis-py turns into NoPermissionError.
_ACL_DENIAL_WORDS = ("acl failure", "no permissions to", "the user executing the script can't")


def _is_acl_denial(exc: rexc.RedisError) -> bool:
    if isinstance(exc, rexc.NoPermissionError):
        return True
    message = str(exc).lower()
    return message.startswith("noperm") or any(words in message for words in _ACL_DENIAL_WORDS)


def _script_error(details: dict[str, Any], call: Call) -> errors.RepocketError:
    code, key = details.get("code"), str(details.get("key", ""))
    field = call.key_fields.get(key) or keyspace.stream_field(key)
    if code == "wrongtype":
        return errors.WrongKeyType(
            f"{call.model}: key {key!r} holds a {details.get('actual')}, expected a "
            f"{details.get('expected')}; nothing was written",
            model=call.model, field=field, key=key)
    if code == "pointer_missing":
        return errors.PointerTargetMissing(
            f"{call.model}.{field} points at {key!r}, which does not exist; nothing was written",
            model=call.model, field=field, value=key)
    if code == "unique":
        fields, values = list(details.get("fields") or []), list(details.get("values") or [])
        shown = " and ".join(f"{name}={value!r}" for name, value in zip(fields, values))
        return errors.UniqueViolation(
            f"{call.model}: {shown} already belongs to record {details.get('owner')}; "
            "nothing was written",
            model=call.model, field=",".join(fields),
            value=values[0] if len(values) == 1 else values, owner=str(details.get("owner")))
    if code == "too_large":
        limit = f" {details['limit']}" if "limit" in details else ""
        return errors.ValueTooLarge(
            f"{call.model}.{field}: {details.get('size')} bytes would pass the longest string "
            f"the server accepts (proto-max-bulk-len{limit}); nothing was written",
            model=call.model, field=field, value=details.get("size"))
    if code == "arith":
        field = str(details.get("field", ""))
        stored = _unreadable_operand(str(details.get("reason", "")))
        if stored is not None:
            # literals are checked in Python before sending: an operand that is not a
            # number can only be a value stored behind repocket's back
            return errors.StoredDataError(
                f"{call.model}: update() cannot compute {field} of record "
                f"{details.get('id')}: {details.get('reason')}; nothing was written",
                model=call.model, field=stored or field, value=details.get("id"))
        return errors.ValidationError(
            f"{call.model}.{field}: update() cannot compute the value of record "
            f"{details.get('id')}: {details.get('reason')}; nothing was written",
            model=call.model, field=field, value=details.get("id"))
    if code == "stale":
        record_id, expected, found = (details.get(name) for name in ("id", "expected", "found"))
        return errors.StaleRecord(
            f"{call.model} {record_id} is stale: this instance holds version {expected}, the "
            f"stored record version {found} (another write came first); nothing was written "
            "(refresh_from_db(), apply the change again, retry)",
            model=call.model, value=record_id, expected=_int(expected),
            found=_int(found))
    if code == "bad_version":
        return errors.StoredDataError(
            f"{call.model}: the version of {key!r} is {details.get('value')!r}, not a count; "
            "nothing was written", model=call.model, key=key, value=details.get("value"))
    if code == "record_missing":
        field = keyspace.stream_field(str(details.get("stream", "")))
        return errors.DoesNotExist(
            f"{call.model} record {key!r} does not exist (deleted?); nothing was written",
            model=call.model, field=field, value=key)
    return errors.ScriptError(f"{call.model}.{call.script.name}: {details}")


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


_UNREADABLE = re.compile(r"the stored value of (\w+) is unreadable")
_NOT_A_NUMBER = frozenset(("not an integer", "not a decimal", "not a float"))


def _unreadable_operand(reason: str) -> str | None:
    """The field whose stored value an update's arithmetic could not read ('' when the
    script did not name it), or None when the reason is not about a stored value."""
    found = _UNREADABLE.fullmatch(reason)
    if found:
        return found.group(1)
    return "" if reason in _NOT_A_NUMBER else None
