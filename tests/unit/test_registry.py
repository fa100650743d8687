"""The script registry's decisions (no Redis): what one round trip carries, what the replies
teach it, and the eviction policy warning."""

from __future__ import annotations

import logging

import pytest
import redis.exceptions as rexc

from repocket.core.lua import SCRIPTS
from repocket.exec.registry import (
    BARE,
    LEAST_PRIVILEGE,
    ServerScripts,
    client_mode,
    eviction_policy,
    server_name,
)

GET, SAVE = SCRIPTS["get"], SCRIPTS["save"]
INFO = b"# Memory\r\nused_memory:1\r\nmaxmemory_policy:noeviction\r\n"


def names(commands: list[tuple[object, ...]]) -> list[str]:
    return [" ".join(str(part) for part in command[:2]) if command[0] in ("SCRIPT", "INFO")
            else str(command[0]) for command in commands]


def test_first_call_asks_the_policy_and_loads_then_evalsha_alone() -> None:
    scripts = ServerScripts("h:1")
    batch = scripts.batch(GET, ("k",), ("a",))
    assert names(batch.commands) == ["INFO memory", "SCRIPT LOAD", "EVALSHA"]
    assert batch.commands[1][2] == GET.source
    assert batch.commands[2] == ("EVALSHA", GET.sha, 1, "k", "a")
    assert scripts.settle(batch, [INFO, GET.sha, b"reply"]) == b"reply"
    assert names(scripts.batch(GET, ("k",), ()).commands) == ["EVALSHA"]
    assert names(scripts.batch(SAVE, ("k",), ()).commands) == ["SCRIPT LOAD", "EVALSHA"]


def test_noscript_forgets_every_script_and_evals() -> None:
    scripts = ServerScripts("h:1")
    scripts.settle(scripts.batch(GET, (), ()), [INFO, GET.sha, b"ok"])
    batch = scripts.after_noscript(GET, ("k",), ("a",))
    assert batch.commands == [("EVAL", GET.source, 1, "k", "a")]
    assert scripts.settle(batch, [b"ok"]) == b"ok"
    assert names(scripts.batch(GET, (), ()).commands) == ["SCRIPT LOAD", "EVALSHA"]  # pinned


def test_a_refused_script_load_switches_to_eval_on_first_use() -> None:
    scripts = ServerScripts("h:1")
    batch = scripts.batch(GET, (), ())
    noscript = rexc.NoScriptError("No matching script")
    assert isinstance(scripts.settle(batch, [INFO, rexc.NoPermissionError("no"), noscript]),
                      rexc.NoScriptError)
    assert names(scripts.batch(SAVE, (), ()).commands) == ["EVAL"]


def test_a_least_privilege_user_sends_only_eval_and_evalsha() -> None:
    scripts = ServerScripts("h:1", LEAST_PRIVILEGE)
    batch = scripts.batch(GET, (), ())
    assert names(batch.commands) == ["EVAL"]
    scripts.settle(batch, [b"ok"])
    assert names(scripts.batch(GET, (), ()).commands) == ["EVALSHA"]
    assert client_mode({"username": "repocket"}) == LEAST_PRIVILEGE
    assert client_mode({"username": "default"}) != LEAST_PRIVILEGE
    assert client_mode({"password": "x"}) != LEAST_PRIVILEGE


def test_bare_clients_get_evalsha_only() -> None:
    scripts = ServerScripts("cluster", BARE)
    assert names(scripts.batch(GET, (), ()).commands) == ["EVALSHA"]


def test_an_error_reply_to_the_call_is_returned_not_raised() -> None:
    scripts = ServerScripts("h:1")
    error = rexc.ResponseError("REPOCKET {}")
    assert scripts.settle(scripts.batch(GET, (), ()), [INFO, GET.sha, error]) is error


@pytest.mark.parametrize("policy, warned", [("noeviction", False), ("allkeys-lru", True),
                                            ("volatile-ttl", True)])
def test_the_eviction_policy_is_warned_about_once(caplog: pytest.LogCaptureFixture,
                                                  policy: str, warned: bool) -> None:
    info = f"# Memory\r\nmaxmemory:0\r\nmaxmemory_policy:{policy}\r\n".encode()
    scripts = ServerScripts("h:1")
    with caplog.at_level(logging.WARNING, logger="repocket"):
        scripts.settle(scripts.batch(GET, (), ()), [info, GET.sha, b"ok"])
        scripts.settle(scripts.batch(SAVE, (), ()), [SAVE.sha, b"ok"])
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == int(warned)
    if warned:
        assert policy in messages[0] and "h:1" in messages[0]


def test_an_info_refused_by_acl_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    scripts = ServerScripts("h:1")
    with caplog.at_level(logging.WARNING, logger="repocket"):
        reply = scripts.settle(scripts.batch(GET, (), ()),
                               [rexc.NoPermissionError("no info"), GET.sha, b"ok"])
    assert reply == b"ok" and caplog.records == []


def test_parsing_helpers() -> None:
    assert eviction_policy(INFO) == "noeviction"
    assert eviction_policy({"maxmemory_policy": "allkeys-lfu"}) == "allkeys-lfu"
    assert eviction_policy(b"# Memory\r\n") is None
    assert server_name({"host": "10.0.0.1", "port": 7000}) == "10.0.0.1:7000"
    assert server_name({"path": "/run/redis.sock"}) == "unix:/run/redis.sock"
