"""The global connection: one shared redis-py client (and pool) per process.

Before any ``configure`` call repocket connects to ``$REPOCKET_URL``, else to
``redis://localhost:6379/0``, creating that client once, on first use.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from .aio_clients import (
    AsyncClients,
    AsyncClientSource,
    cluster_factory_from_settings,
    cluster_factory_from_sync,
    factory_from_settings,
    factory_from_sync,
)
from .core import layout
from .core.codecs import get_codec
from .errors import ConfigurationError, RepocketConnectionError
from .exec import guard, observe, retire

DEFAULT_URL = "redis://localhost:6379/0"


def _no_retries() -> Retry:
    # A write whose reply was lost may have run: resending it could append twice.
    # repocket raises a typed, retriable error and leaves the retry to the caller.
    return Retry(NoBackoff(), 0)


class configure:
    """Global Redis connection manager, used as a singleton.

    ``connection_pool`` sets the global pool; ``get_connection`` returns a
    client on it at any time (the default pool is created on first use).
    """

    _client: redis.Redis | None = None
    _owned = False  # repocket built the client (and so closes it when replaced)
    _default_codec: str = "envelope"
    _async: AsyncClients | None = None  # the asyncio clients, one per event loop
    _lock = threading.Lock()

    @classmethod
    def connection_pool(
        cls,
        hostname: str = "localhost",
        port: int = 6379,
        db: int = 0,
        *,
        url: str | None = None,
        client: redis.Redis | RedisCluster | None = None,
        async_client: AsyncClientSource | None = None,
        codec: str | None = None,
        cluster: bool = False,
        **options: Any,
    ) -> Any:
        """Set the global connection.

        - ``hostname``/``port``/``db`` as in repocket 0.1;
        - ``url``: ``redis://``, ``rediss://`` (TLS) or ``unix://`` (a socket path);
        - ``client``: an existing ``redis.Redis`` (its pool is shared, not copied, and
          never closed by repocket; give it ``retry=Retry(NoBackoff(), 0)``: redis-py's
          default retries may run a write twice after a lost reply);
        - ``async_client``: what the asyncio API uses: a ``redis.asyncio.Redis`` (never
          closed by repocket, and usable in the first event loop that uses it only), or a
          callable building one, called once per event loop. Without it, each event loop
          gets a client repocket builds from the same settings (or from ``client``'s), with
          no automatic retries; ``await configure.aclose()`` closes the running loop's;
        - ``codec``: the default codec of models that do not choose one;
        - ``cluster``: the server is a Redis Cluster node (``client=`` a
          ``redis.cluster.RedisCluster`` says so by itself): each model is then split into
          ``Meta.shards`` hash-tagged shards (README "Redis Cluster"); the asyncio API
          then uses a ``redis.asyncio.cluster.RedisCluster`` (built per event loop, or
          ``async_client=``);
        - any other keyword goes to ``redis.Redis``: ``password``, ``username``, ``retry``
          (none by default: a resent write may run twice; pass ``client=`` likewise
          without retries),
          ``socket_timeout``, ``socket_connect_timeout``, ``ssl``, ``ssl_ca_certs``,
          ``ssl_certfile``, ``ssl_keyfile``, ``unix_socket_path``, ``max_connections``...

        Each thread running repocket calls keeps one connection of the client's pool (at
        most half of ``max_connections``; the README's "Connections" says why and when
        redis-py's own calls are used instead).
        """
        if client is not None and (url is not None or options):
            raise ConfigurationError("pass either an existing client or connection settings")
        if not isinstance(db, int) or isinstance(db, bool) or db < 0:
            raise ConfigurationError(f"db must be a non-negative integer, not {db!r}")
        on_cluster = cluster or isinstance(client, RedisCluster)
        if on_cluster and db != 0:
            raise ConfigurationError("a Redis Cluster has only database 0")
        owned = client is None
        if client is None and on_cluster:
            async_source = async_client or cluster_factory_from_settings(
                url, options if url is not None else {"host": hostname, "port": port, **options})
            options.setdefault("retry", _no_retries())
            client = _cluster_client(url, hostname, port, options)
        elif client is None:
            async_source = async_client or factory_from_settings(
                url, options if url is not None else
                {"host": hostname, "port": port, "db": db, **options})
            options.setdefault("retry", _no_retries())
            if url is not None:
                client = redis.Redis.from_url(url, **options)
            else:
                client = redis.Redis(host=hostname, port=port, db=db, **options)
        if client.get_connection_kwargs().get("decode_responses"):
            raise ConfigurationError(
                "repocket needs a client with decode_responses=False: it stores binary values"
            )
        elif on_cluster:
            async_source = async_client or cluster_factory_from_sync(client)
        else:
            async_source = async_client or factory_from_sync(client)  # type: ignore[arg-type]
        if codec is not None:
            cls.default_codec(codec)
        with cls._lock:
            previous, previous_owned = cls._client, cls._owned
            cls._client, cls._owned = client, owned  # type: ignore[assignment]
            cls._async = AsyncClients(async_source, owned=async_client is None)
            layout.set_cluster(on_cluster)
        if previous is not None and previous is not client:
            cls._let_go(previous, previous_owned)
        return client

    @classmethod
    def get_connection(cls) -> redis.Redis:
        """The shared client; created from ``$REPOCKET_URL`` (or localhost) on first use."""
        client = cls._client
        if client is None:
            with cls._lock:
                if cls._client is None:
                    cls._client = redis.Redis.from_url(
                        os.environ.get("REPOCKET_URL", DEFAULT_URL), retry=_no_retries())
                    cls._owned = True
                client = cls._client
        return client

    @classmethod
    def get_async_connection(cls) -> Any:
        """The running event loop's ``redis.asyncio`` client (built on first use in it)."""
        clients = cls._async
        if clients is None:
            with cls._lock:
                if cls._async is None:
                    cls._async = AsyncClients(factory_from_settings(
                        os.environ.get("REPOCKET_URL", DEFAULT_URL), {}), owned=True)
                clients = cls._async
        return clients.get()

    @classmethod
    async def aclose(cls) -> None:
        """Close the running event loop's async client (call it before the loop ends, e.g.
        in an application's shutdown hook); the next async call builds a new one."""
        if cls._async is not None:
            await cls._async.aclose()

    @staticmethod
    def allow_sync_in_event_loop(allowed: bool = True) -> None:
        """Let sync calls run inside a running event loop (blocking it) instead of raising
        SyncInEventLoop: for notebooks and scripts that block knowingly."""
        guard.allow_sync_in_event_loop(allowed)

    @staticmethod
    def instrument(callback: observe.Hook | None) -> None:
        """Call ``callback(report)`` after every script call, sync or async, with a
        ``repocket.CallReport``: ``operation`` (the script: ``save``, ``get``, ``query``,
        ``delete``...), ``model``, ``round_trips``, ``duration`` (seconds) and ``error`` (the
        exception raised, or None). For metrics and tracing; None removes the hook. An
        exception the hook raises is logged, not raised (the call has run)."""
        observe.instrument(callback)

    @staticmethod
    def slow_call_threshold(seconds: float | None) -> None:
        """Log a warning on the ``repocket`` logger for each script call slower than
        ``seconds`` (None, the default: never)."""
        observe.slow_call_threshold(seconds)

    @classmethod
    def default_codec(cls, name: str | None = None) -> str:
        """Get, or set with ``name``, the codec of models without ``Meta.codec``."""
        if name is not None:
            try:
                get_codec(name)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            cls._default_codec = name
        return cls._default_codec

    @classmethod
    def reset(cls) -> None:
        """Forget the configured client (closing it if repocket built it) and restore the
        defaults (no instrumentation hook, no slow-call threshold)."""
        with cls._lock:
            previous, owned = cls._client, cls._owned
            cls._client, cls._owned = None, False
            cls._async = None
            cls._default_codec = "envelope"
            layout.set_cluster(False)
        observe.instrument(None)
        observe.slow_call_threshold(None)
        if previous is not None:
            cls._let_go(previous, owned)

    @staticmethod
    def _let_go(client: redis.Redis, owned: bool) -> None:
        """A client repocket stops using: the connections its threads kept go back to its
        pool (busy ones when their call ends); closed if repocket built it."""
        retire(client)
        if owned:
            client.close()


def _cluster_client(url: str | None, hostname: str, port: int,
                    options: dict[str, Any]) -> RedisCluster:
    """A cluster client. redis-py's asks its startup node for the slot map as it is built,
    so an unreachable node raises here: the typed, retriable error of any call (a node not
    in cluster mode is a ConfigurationError), not redis-py's RedisClusterException."""
    where = url if url is not None else f"{hostname}:{port}"
    try:
        return (RedisCluster.from_url(url, **options) if url is not None
                else RedisCluster(host=hostname, port=port, **options))
    except (redis.exceptions.RedisClusterException, redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError) as exc:
        cluster_refused = isinstance(exc, redis.exceptions.RedisClusterException)
        cause = exc.__cause__ if cluster_refused else exc  # redis-py wraps the node's error
        if isinstance(cause, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            raise RepocketConnectionError(
                f"cannot reach the Redis Cluster at {where}: {cause}") from exc
        raise ConfigurationError(f"{where} cannot serve as a Redis Cluster: {exc}") from exc
