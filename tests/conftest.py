"""Test fixtures: a real server started by the suite (tests/support/servers.py) on a free
loopback port, or the server at $REPOCKET_TEST_URL (which the tests flush)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio

from repocket import configure
from repocket.tools.server import LocalCluster, RedisServer
from tests.support.servers import CLUSTER, SESSION, start_server

__all__ = ["start_server"]  # a fixture, offered to every test


def pytest_sessionstart(session: pytest.Session) -> None:
    SESSION.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    SESSION.close()
    CLUSTER.close()


def pytest_report_header(config: pytest.Config) -> str:
    SESSION.start()  # the header may be asked for before the session starts
    return SESSION.header()


class CountingConnection(redis.Connection):
    """Counts requests sent: one per command, or one per pipeline (a round trip each)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        type(self).sent += 1
        super().send_packed_command(command, check_health)


class RoundTrips:
    def __init__(self) -> None:
        self.start = CountingConnection.sent

    @property
    def count(self) -> int:
        return CountingConnection.sent - self.start

    def reset(self) -> None:
        self.start = CountingConnection.sent


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared server's URL: the suite's own, or $REPOCKET_TEST_URL."""
    return SESSION.url


@pytest.fixture(scope="session")
def local_cluster() -> LocalCluster:
    """The suite's Redis Cluster (3 primaries + 3 replicas), started on first use."""
    return CLUSTER.get()


@pytest.fixture(scope="session")
def own_server() -> RedisServer:
    """The shared server when the suite started it (skips under $REPOCKET_TEST_URL)."""
    return SESSION.owned()


def counting_client(url: str, **options: object) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection, **options)
    return redis.Redis(connection_pool=pool)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A flushed server, configured as repocket's global connection (counting round trips)."""
    configure.reset()
    raw = counting_client(redis_url)
    raw.flushdb()
    configure.connection_pool(client=raw)
    yield raw
    configure.reset()


@pytest_asyncio.fixture
async def aclient(client: redis.Redis, redis_url: str) -> AsyncIterator[Any]:
    """``client``'s flushed server, the async API on a plain redis.asyncio client of this
    loop (test_aio.py has its own, counting round trips)."""
    configure.connection_pool(
        client=client, async_client=lambda: redis.asyncio.Redis.from_url(redis_url))
    yield configure.get_async_connection()
    await configure.aclose()


@pytest.fixture
def roundtrips(client: redis.Redis) -> RoundTrips:
    client.ping()  # the connection handshake is not the operation under test
    return RoundTrips()


def _contents(client: redis.Redis, key: bytes, kind: bytes) -> Any:
    """What a key holds, in an order that only a write can change."""
    if kind == b"string":
        return client.get(key)
    if kind == b"hash":
        return sorted(client.hgetall(key).items())
    if kind == b"set":
        return sorted(client.smembers(key))
    if kind == b"zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"stream":
        return client.xrange(key)
    return client.dump(key)


def snapshot(client: redis.Redis) -> dict[bytes, tuple[bytes, Any, int]]:
    """Every key with its type, contents and expiry time (PEXPIRETIME), to prove a failed
    call changed nothing. Not DUMP: a hashtable-encoded hash or set is dumped in its dict's
    order, which Redis' incremental rehashing changes on reads alone (a read-only failed
    call then looked like a write, about one run in ten)."""
    found = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        found[key] = (kind, _contents(client, key, kind),
                      client.execute_command("PEXPIRETIME", key))
    return found
