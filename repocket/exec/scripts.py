"""The executor that runs compiled operations: the only place repocket talks to Redis.

A :class:`~repocket.core.plan.Call` carries its script (source and SHA1); it runs
with EVALSHA; when the server
answers NOSCRIPT (after SCRIPT FLUSH, a restart or a failover) the call is made
again with EVAL, which runs the script and caches it. Errors are mapped to
``repocket.errors``.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import redis
import redis.exceptions as rexc

from .. import errors
from ..core import keys as keyspace
from ..core.lua import Script
from ..core.plan import DEFAULT_MAX_BYTES, Call
from . import observe
from .guard import in_event_loop, refuse_in_event_loop


def evalsha(client: redis.Redis, script: Script, keys: tuple[Any, ...],
            args: tuple[Any, ...]) -> Any:
    """EVALSHA; if the server does not know the script (after SCRIPT FLUSH, a restart, a
    failover), EVAL it instead, which runs it and caches it in one command: a flush
    between a SCRIPT LOAD and a retry cannot get in the way."""
    try:
        return client.evalsha(script.sha, len(keys), *keys, *args)
    except rexc.NoScriptError:
        return client.eval(script.source, len(keys), *keys, *args)


def execute(client: redis.Redis, call: Call) -> Any:
    """Run a compiled operation and its follow-ups; return the decoded result."""
    if in_event_loop() and isinstance(call, Call):
        refuse_in_event_loop(f"{call.model}.{call.script.name}")
    if not isinstance(call, Call):  # a result known already (cached): nothing to run
        return call
    watch = observe.start(call.script.name, call.model)
    try:
        result: Any = call
        while isinstance(result, Call):
            call = result
            if watch is not None:
                watch.round_trips += 1
            try:
                args = call.args
                if call.args_for_limit is not None:
                    args = call.args_for_limit(max_bytes(client))
                reply = evalsha(client, call.script, call.keys, args)
            except rexc.RedisError as exc:
                raise translate_error(exc, call) from exc
            result = call.decode(reply)
    except BaseException as exc:  # the hook hears of interrupted calls too
        if watch is not None:
            watch.finish(exc)
        raise
    if watch is not None:
        watch.finish(None)
    return result


_MAX_BYTES: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def max_bytes(client: redis.Redis) -> int:
    """The server's proto-max-bulk-len, read once per client with CONFIG GET; Redis'
    default when the user may not run CONFIG. A client logged in as a named ACL user
    does not ask (the documented ACL rule does not grant CONFIG, and a refusal would
    fill the server's ACL LOG)."""
    limit = _MAX_BYTES.get(client)
    if limit is None:
        limit = DEFAULT_MAX_BYTES
        if may_read_config(client):
            try:
                reply: dict[Any, Any] = client.config_get("proto-max-bulk-len")
                limit = int(reply.get("proto-max-bulk-len") or DEFAULT_MAX_BYTES)
            except (rexc.ResponseError, ValueError, TypeError):
                pass
        _MAX_BYTES[client] = limit
    return limit


def may_read_config(client: Any) -> bool:
    """False for a client logged in as a named ACL user (see max_bytes)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    return kwargs.get("username") in (None, "", "default")


# -- error mapping --------------------------------------------------------------
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
    if code == "record_missing":
        field = keyspace.stream_field(str(details.get("stream", "")))
        return errors.DoesNotExist(
            f"{call.model} record {key!r} does not exist (deleted?); nothing was written",
            model=call.model, field=field, value=key)
    return errors.ScriptError(f"{call.model}.{call.script.name}: {details}")
