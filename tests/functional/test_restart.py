"""Scripts are reloaded after a server restart (its script cache is empty)."""

from __future__ import annotations

import pytest
import redis

from repocket import configure, errors
from repocket.core.lua import SCRIPTS
from repocket.exec import kept_connection
from tests.conftest import counting_client
from tests.support.servers import StartServer

from .models import Project


def test_restart_reloads_scripts_and_unreachable_server_is_a_typed_error(
        start_server: StartServer) -> None:
    server = start_server("--save", "3600 1")  # a snapshot point: a clean stop saves the data
    configure.connection_pool(client=counting_client(server.url, socket_connect_timeout=1))
    try:
        project = Project.create(name="survives")
        server.stop()
        with pytest.raises(errors.RepocketConnectionError) as raised:
            Project.objects.get(id=project.id)
        assert "Project" in str(raised.value)
        server.start()  # a new process: its script cache is empty
        raw = configure.get_connection()
        assert raw.script_exists(SCRIPTS["get"].sha) == [False]
        assert Project.objects.get(id=project.id).name == "survives"  # saved on stop
        again = Project.create(name="after restart")
        assert Project.objects.get(id=again.id).name == "after restart"
    finally:
        configure.reset()


def test_a_restart_between_calls_is_invisible_and_costs_one_round_trip(
        start_server: StartServer) -> None:
    """The kept connection's readiness check finds the closed socket before sending: the call
    reconnects, loads its script with it (the new process has none), and succeeds."""
    server = start_server("--save", "3600 1")
    configure.connection_pool(client=counting_client(server.url, socket_connect_timeout=1))
    try:
        project = Project.create(name="kept")
        kept = kept_connection(configure.get_connection())
        assert kept is not None
        server.stop()
        server.start()
        admin = redis.Redis.from_url(server.url)
        admin.config_resetstat()
        assert Project.objects.get(id=project.id).name == "kept"  # no error
        stats = admin.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 1
        assert stats["cmdstat_script|load"]["calls"] == 1
        assert "cmdstat_eval" not in stats  # loaded with the call, not after a NOSCRIPT
        assert kept_connection(configure.get_connection()) is kept  # the same, reconnected
        admin.close()
    finally:
        configure.reset()


def test_unreachable_server_raises_a_connection_error_not_none() -> None:
    configure.reset()
    configure.connection_pool(url="redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(errors.RepocketConnectionError):
            Project.objects.get(id="970773fa-4de1-11e5-86f4-6c4008a70392")
        with pytest.raises(redis.exceptions.ConnectionError):  # still a redis-py error too
            Project.create(name="nowhere")
    finally:
        configure.reset()
