"""Test fixtures: a real redis-server started by the suite (pytest-redis) on a free
loopback port, or the server at $REPOCKET_TEST_URL (which the tests flush)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from pytest_redis import factories

from repocket import configure

repocket_redis_proc = factories.redis_proc(port=None)
spare_redis_proc = factories.redis_proc(port=None)  # for tests that restart their server


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
def redis_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("REPOCKET_TEST_URL")
    if url:
        return url
    proc = request.getfixturevalue("repocket_redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"


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


@pytest.fixture
def roundtrips(client: redis.Redis) -> RoundTrips:
    client.ping()  # the connection handshake is not the operation under test
    return RoundTrips()


def snapshot(client: redis.Redis) -> dict[bytes, tuple[bytes, bytes | None]]:
    """Every key with its type and DUMP payload, to prove a failed call changed nothing."""
    return {key: (client.type(key), client.dump(key)) for key in client.scan_iter(count=1000)}
