"""configure.connection_pool(cluster=True) builds redis-py's cluster client, which reads the
slot map from its startup node at once: what it raises must be repocket's typed errors."""

from __future__ import annotations

import socket

import pytest
import redis

from repocket import configure, errors


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_cluster_is_a_typed_retriable_error_and_keeps_the_configuration(
        client: redis.Redis) -> None:
    url = f"redis://127.0.0.1:{closed_port()}"
    with pytest.raises(errors.RepocketConnectionError) as raised:
        configure.connection_pool(url=url, cluster=True)
    assert url in str(raised.value)
    assert isinstance(raised.value, redis.exceptions.ConnectionError)  # retriable, as documented
    with pytest.raises(errors.RepocketConnectionError):
        configure.connection_pool(hostname="127.0.0.1", port=closed_port(), cluster=True)
    assert configure.get_connection() is client  # the configuration in place stays


def test_a_server_not_in_cluster_mode_is_a_configuration_error(
        client: redis.Redis, redis_url: str) -> None:
    with pytest.raises(errors.ConfigurationError) as raised:
        configure.connection_pool(url=redis_url, cluster=True)
    assert "cluster" in str(raised.value).lower()
    assert configure.get_connection() is client
