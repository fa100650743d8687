"""A throwaway ``redis-server`` for demos and benchmarks.

``repocket demo`` and the benchmark suite need a server they are allowed to
fill and wipe. When the user gives no URL, they start one of these: a
``redis-server`` on a free loopback port, with persistence off, in a temporary
directory that is removed afterwards. The test suite uses pytest-redis instead.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from ..errors import RepocketError


class ServerStartError(RepocketError):
    """``redis-server`` could not be found or did not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                client.ping()
                return True
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        return False
    finally:
        client.close()


@contextmanager
def given_or_throwaway(url: str | None) -> Iterator[str]:
    """``url`` when given, else a throwaway server's, for as long as the block runs."""
    if url:
        yield url
    else:
        with throwaway_redis() as started:
            yield started


@contextmanager
def throwaway_redis(
    executable: str = "redis-server", *extra_args: str, timeout: float = 10.0
) -> Iterator[str]:
    """Run a private ``redis-server`` on loopback and yield its URL.

    The server is stopped and its directory removed when the block exits,
    including on ``KeyboardInterrupt``.
    """
    binary = shutil.which(executable)
    if binary is None:
        raise ServerStartError(
            f"{executable!r} was not found on PATH; install Redis (e.g. "
            "'apt-get install redis-server') or pass --url to use a running server"
        )
    workdir = tempfile.mkdtemp(prefix="repocket-redis-")
    try:
        for _attempt in range(5):  # the port may be taken between probe and bind
            port = _free_port()
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", workdir, *extra_args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"redis://127.0.0.1:{port}/0"
            try:
                if _wait_until_ready(url, process, timeout):
                    yield url
                    return
            finally:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        raise ServerStartError(f"{binary} did not start on a free loopback port")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
