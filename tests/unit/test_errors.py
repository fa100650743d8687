"""The error hierarchy and translate.translate_error / sync.execute on synthetic redis-py errors.
No Redis: a stand-in client object raises what a server would make redis-py raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.exceptions as rexc

from repocket import errors
from repocket.core.lua import SCRIPTS
from repocket.core.plan import Call
from repocket.exec import execute, translate_error

HASH = "repocket:ns:Build:970773fa-4de1-11e5-86f4-6c4008a70392"
STREAM = HASH + ":field:stdout"
TARGET = "repocket:ns:Project:40997aa4-71fc-4ad3-b0d7-04c0fac6d6d8"


def call(script: str = "save", key_fields: dict[str, str] | None = None) -> Call:
    return Call(SCRIPTS[script], (HASH,), (), lambda reply: reply, "Build", key_fields or {})


def repocket_error(**details: Any) -> rexc.ResponseError:
    return rexc.ResponseError("REPOCKET " + json.dumps(details))


# -- hierarchy ----------------------------------------------------------------------------
@pytest.mark.parametrize(("error", "bases"), [
    (errors.RepocketActiveRecordDefinitionError, (errors.RepocketError, TypeError)),
    (errors.ConfigurationError, (errors.RepocketError, ValueError)),
    (errors.ValidationError, (errors.FieldError, ValueError)),
    (errors.InvalidId, (errors.ValidationError,)),
    (errors.UnknownField, (errors.FieldError, AttributeError)),
    (errors.UnsavedPointer, (errors.FieldError, ValueError)),
    (errors.PointerTargetMissing, (errors.FieldError, LookupError)),
    (errors.DoesNotExist, (errors.FieldError, LookupError)),
    (errors.WrongKeyType, (errors.StoredDataError,)),
    (errors.StoredDataError, (errors.RepocketError,)),
    (errors.MultipleObjectsReturned, (errors.RepocketError, LookupError)),
    (errors.InvalidQuery, (errors.RepocketError, ValueError)),
    (errors.ScriptError, (errors.RepocketError,)),
    (errors.RepocketConnectionError, (errors.RepocketError, rexc.ConnectionError)),
    (errors.RepocketTimeoutError, (errors.RepocketError, rexc.TimeoutError)),
    (errors.ServerBusy, (errors.RepocketConnectionError, rexc.ConnectionError)),
    (errors.OutOfMemory, (errors.RepocketError, rexc.OutOfMemoryError)),
    (errors.ReadOnly, (errors.RepocketError, rexc.ReadOnlyError)),
])
def test_hierarchy(error: type, bases: tuple[type, ...]) -> None:
    for base in bases:
        assert issubclass(error, base)
    assert issubclass(error, errors.RepocketError)


def test_definition_error_alias() -> None:
    assert errors.DefinitionError is errors.RepocketActiveRecordDefinitionError


def test_field_error_attributes() -> None:
    err = errors.ValidationError("msg", model="M", field="f", value=3)
    assert (str(err), err.model, err.field, err.value) == ("msg", "M", "f", 3)
    stored = errors.WrongKeyType("msg", model="M", field="f", key="k")
    assert (stored.model, stored.field, stored.key, stored.value) == ("M", "f", "k", None)


# -- translate_error ------------------------------------------------------------------------
def test_wrongtype_names_model_field_and_key() -> None:
    exc = repocket_error(code="wrongtype", key=STREAM, expected="string", actual="list")
    err = translate_error(exc, call("append", {STREAM: "stdout"}))
    assert type(err) is errors.WrongKeyType
    assert (err.model, err.field, err.key) == ("Build", "stdout", STREAM)
    assert "list" in str(err) and "string" in str(err) and STREAM in str(err)
    assert "nothing was written" in str(err)


def test_wrongtype_on_a_key_without_a_field() -> None:
    exc = repocket_error(code="wrongtype", key=HASH, expected="hash", actual="string")
    err = translate_error(exc, call())
    assert type(err) is errors.WrongKeyType
    assert (err.model, err.field, err.key) == ("Build", "", HASH)


def test_pointer_missing_names_the_pointer_field() -> None:
    err = translate_error(repocket_error(code="pointer_missing", key=TARGET),
                          call("save", {TARGET: "project"}))
    assert type(err) is errors.PointerTargetMissing
    assert (err.model, err.field, err.value) == ("Build", "project", TARGET)
    assert "Build.project" in str(err)


def test_record_missing_is_does_not_exist() -> None:
    err = translate_error(repocket_error(code="record_missing", key=HASH),
                          call("append", {STREAM: "stdout"}))
    assert type(err) is errors.DoesNotExist
    assert (err.model, err.value) == ("Build", HASH)
    assert HASH in str(err)


def test_unknown_repocket_code_is_a_script_error() -> None:
    err = translate_error(repocket_error(code="surprise", key=HASH), call())
    assert type(err) is errors.ScriptError
    assert "surprise" in str(err) and "Build.save" in str(err)


def test_malformed_repocket_error_is_a_script_error() -> None:
    err = translate_error(rexc.ResponseError("REPOCKET {not json"), call())
    assert isinstance(err, errors.ScriptError)


@pytest.mark.parametrize(("exc", "expected", "redis_base"), [
    (rexc.ConnectionError("Error 111 connecting"), errors.RepocketConnectionError,
     rexc.ConnectionError),
    (rexc.AuthenticationError("bad password"), errors.RepocketConnectionError,
     rexc.ConnectionError),
    (rexc.BusyLoadingError("loading"), errors.RepocketConnectionError, rexc.ConnectionError),
    (rexc.TimeoutError("Timeout reading"), errors.RepocketTimeoutError, rexc.TimeoutError),
    (rexc.OutOfMemoryError("OOM command not allowed"), errors.OutOfMemory,
     rexc.OutOfMemoryError),
    (rexc.ReadOnlyError("READONLY You can't write"), errors.ReadOnly, rexc.ReadOnlyError),
    (rexc.ResponseError("WRONGTYPE Operation against a key"), errors.WrongKeyType,
     rexc.ResponseError),
    (rexc.ResponseError("ERR something else"), errors.ScriptError, rexc.RedisError),
    (rexc.NoScriptError("NOSCRIPT No matching script"), errors.ScriptError, rexc.RedisError),
    (rexc.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
     errors.ServerBusy, rexc.ConnectionError),
    (rexc.ResponseError("BUSY Valkey is busy running a script."), errors.ServerBusy,
     rexc.ConnectionError),
])
def test_redis_errors_map_to_repocket_errors(exc: rexc.RedisError, expected: type,
                                             redis_base: type) -> None:
    err = translate_error(exc, call("get"))
    assert type(err) is expected
    assert isinstance(err, errors.RepocketError)
    assert "Build.get" in str(err)
    assert str(exc) in str(err)
    if expected in (errors.RepocketConnectionError, errors.RepocketTimeoutError,
                    errors.OutOfMemory, errors.ReadOnly, errors.ServerBusy):
        assert isinstance(err, redis_base)  # code catching redis-py errors keeps working
    if expected is errors.WrongKeyType:
        assert err.model == "Build"


# ACL refusals as each server words them (measured on Redis 7.0.15 and Valkey 8.1.8)
ACL_REFUSALS = [
    rexc.NoPermissionError("this user has no permissions to run the 'evalsha' command"),
    rexc.NoPermissionError("User u has no permissions to run the 'evalsha' command"),
    rexc.ResponseError("NOPERM No permissions to access a key"),
    rexc.ResponseError("The user executing the script can't run this command or subcommand "
                       "script: 2224b39e, on @user_script:1."),
    rexc.ResponseError("The user executing the script can't access at least one of the keys "
                       "mentioned in the command arguments script: a2e69d92, on @user_script:1."),
    rexc.ResponseError("ACL failure in script: User u has no permissions to run the 'hgetall' "
                       "command script: 2224b39e, on @user_script:1."),
    rexc.ResponseError("ACL failure in script: No permissions to access a key script: a2e69d92, "
                       "on @user_script:1."),
]


@pytest.mark.parametrize("exc", ACL_REFUSALS, ids=range(len(ACL_REFUSALS)))
def test_acl_refusals_are_permission_errors_whatever_the_server_wording(
        exc: rexc.RedisError) -> None:
    err = translate_error(exc, call("get"))
    assert type(err) is errors.PermissionDenied
    assert isinstance(err, rexc.NoPermissionError)
    assert "Build.get" in str(err) and str(exc) in str(err)


# -- execute with a stand-in client ---------------------------------------------------------
class StandIn:
    """Answers evalsha from a queue of replies or exceptions; records what was sent."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.sent: list[tuple[Any, ...]] = []
        self.loaded: list[str] = []

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        self.sent.append((sha, numkeys, *keys_and_args))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def eval(self, source: str, numkeys: int, *keys_and_args: Any) -> Any:
        """EVAL runs the script and caches it: what a NOSCRIPT is answered with."""
        self.loaded.append(source)
        return self.evalsha("(eval)", numkeys, *keys_and_args)


def test_execute_answers_noscript_with_eval() -> None:
    client = StandIn(rexc.NoScriptError("NOSCRIPT"), b"ok")
    c = Call(SCRIPTS["get"], ("k1", "k2"), ("a1",), lambda reply: ("decoded", reply), "Build")
    assert execute(client, c) == ("decoded", b"ok")  # type: ignore[arg-type]
    assert client.loaded == [SCRIPTS["get"].source]
    assert client.sent == [(SCRIPTS["get"].sha, 2, "k1", "k2", "a1"),
                           ("(eval)", 2, "k1", "k2", "a1")]


def test_execute_runs_follow_up_calls() -> None:
    client = StandIn(b"gone", b"saved")
    second = Call(SCRIPTS["save"], ("k",), ("whole",), lambda reply: {"reply": reply}, "Build")
    first = Call(SCRIPTS["save"], ("k",), ("partial",), lambda reply: second, "Build")
    assert execute(client, first) == {"reply": b"saved"}  # type: ignore[arg-type]
    assert [sent[-1] for sent in client.sent] == ["partial", "whole"]


def test_execute_translates_and_chains_the_cause() -> None:
    original = rexc.ConnectionError("down")
    client = StandIn(original)
    with pytest.raises(errors.RepocketConnectionError) as raised:
        execute(client, call("delete"))  # type: ignore[arg-type]
    assert raised.value.__cause__ is original


def test_an_error_from_the_eval_fallback_is_typed() -> None:
    client = StandIn(rexc.NoScriptError("NOSCRIPT"), rexc.ResponseError("ERR boom"))
    with pytest.raises(errors.ScriptError):
        execute(client, call("get"))  # type: ignore[arg-type]
    assert len(client.loaded) == 1
