"""The asyncio clients: one ``redis.asyncio.Redis`` per event loop.

An asyncio connection belongs to the loop that opened it: used from another
loop it fails, or worse, hangs. So repocket keys its async clients by the
running loop (weakly: a closed, forgotten loop takes its client with it), builds
each from the settings given to ``configure.connection_pool`` (or from the
settings of the sync client given there), without automatic retries like the
sync client (a write whose reply was lost may have run: resending it could run
it twice). A client passed in as is is refused in any loop but the first that
used it; pass a factory (a callable) to get one per loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, Union

import redis
import redis.asyncio
import redis.asyncio.connection as aconnection
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from .errors import ConfigurationError

AsyncClientSource = Union["redis.asyncio.Redis", Callable[[], "redis.asyncio.Redis"]]

# Settings of a sync connection that mean the same to an asyncio one.
_PORTABLE = {"host", "port", "db", "path", "username", "password", "credential_provider",
             "socket_timeout", "socket_connect_timeout", "socket_keepalive", "client_name",
             "health_check_interval", "protocol", "encoding", "encoding_errors",
             "decode_responses", "socket_read_size"}
_CONNECTION_CLASSES = ("SSLConnection", "UnixDomainSocketConnection", "Connection")


def no_retries() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 0)


def factory_from_settings(url: str | None, options: dict[str, Any]) -> Callable[[], Any]:
    """A factory of async clients with the settings ``configure.connection_pool`` got."""
    options = {**options, "retry": no_retries()}

    def build() -> redis.asyncio.Redis:
        if url is not None:
            return redis.asyncio.Redis.from_url(url, **options)
        return redis.asyncio.Redis(**options)

    return build


def factory_from_sync(client: redis.Redis) -> Callable[[], redis.asyncio.Redis]:
    """A factory of async clients reaching the same server as a sync client, as the same
    user, with its timeouts and TLS settings."""
    pool = client.connection_pool
    kwargs = {key: value for key, value in pool.connection_kwargs.items()
              if key in _PORTABLE or key.startswith("ssl_")}
    names = {cls.__name__ for cls in pool.connection_class.__mro__}
    kind = next((name for name in _CONNECTION_CLASSES if name in names), "Connection")
    connection_class = getattr(aconnection, kind)

    def build() -> redis.asyncio.Redis:
        async_pool = redis.asyncio.ConnectionPool(
            connection_class=connection_class, retry=no_retries(), **kwargs)
        return redis.asyncio.Redis(connection_pool=async_pool, retry=no_retries())

    return build


def cluster_factory_from_settings(url: str | None, options: dict[str, Any]
                                  ) -> Callable[[], Any]:
    """A factory of asyncio cluster clients with the settings ``configure.connection_pool``
    got (``cluster=True``), without retries of their own."""
    options = {key: value for key, value in options.items() if key != "retry"}

    def build() -> AsyncRedisCluster:
        if url is not None:
            return AsyncRedisCluster.from_url(url, retry=no_retries(), **options)
        return AsyncRedisCluster(retry=no_retries(), **options)

    return build


def cluster_factory_from_sync(client: Any) -> Callable[[], Any]:
    """A factory of asyncio cluster clients reaching the nodes a sync ``RedisCluster`` knows,
    as the same user, with its timeouts and TLS settings."""
    nodes = [(node.host, node.port) for node in client.get_nodes()]
    kwargs = {key: value for key, value in client.get_connection_kwargs().items()
              if key in _PORTABLE - {"host", "port", "db", "path"} or key.startswith("ssl_")}

    def build() -> AsyncRedisCluster:
        return AsyncRedisCluster(startup_nodes=[AsyncClusterNode(host, port)
                                                for host, port in nodes],
                                 retry=no_retries(), **kwargs)

    return build


class AsyncClients:
    """The async clients of one configuration, by event loop."""

    def __init__(self, source: AsyncClientSource, owned: bool):
        self._source = source
        self._owned = owned  # repocket builds the clients (and so closes them)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                  redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary())
        self._pinned_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def get(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is not None:
            return client
        if isinstance(self._source, (redis.asyncio.Redis, AsyncRedisCluster)):
            if self._pinned_loop is not None and self._pinned_loop() is not loop:
                raise ConfigurationError(
                    "the redis.asyncio client given to configure.connection_pool(async_client=...) "
                    "was first used in another event loop, and its connections belong to that "
                    "loop; pass a factory instead (async_client=lambda: redis.asyncio.Redis(...)) "
                    "to get one client per loop")
            client, self._pinned_loop = self._source, weakref.ref(loop)
        else:
            client = self._source()
        if client.get_connection_kwargs().get(  # type: ignore[no-untyped-call]
                "decode_responses"):
            raise ConfigurationError(
                "repocket needs a client with decode_responses=False: it stores binary values")
        self._by_loop[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's client (if repocket or a factory built it)."""
        client = self._by_loop.pop(asyncio.get_running_loop(), None)
        if client is not None and (self._owned or client is not self._source):
            await client.aclose()
