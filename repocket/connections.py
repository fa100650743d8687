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
from redis.retry import Retry

from .core.codecs import get_codec
from .errors import ConfigurationError

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
    _lock = threading.Lock()

    @classmethod
    def connection_pool(
        cls,
        hostname: str = "localhost",
        port: int = 6379,
        db: int = 0,
        *,
        url: str | None = None,
        client: redis.Redis | None = None,
        codec: str | None = None,
        **options: Any,
    ) -> redis.Redis:
        """Set the global connection.

        - ``hostname``/``port``/``db`` as in repocket 0.1;
        - ``url``: ``redis://``, ``rediss://`` (TLS) or ``unix://`` (a socket path);
        - ``client``: an existing ``redis.Redis`` (its pool is shared, not copied, and
          never closed by repocket; give it ``retry=Retry(NoBackoff(), 0)``: redis-py's
          default retries may run a write twice after a lost reply);
        - ``codec``: the default codec of models that do not choose one;
        - any other keyword goes to ``redis.Redis``: ``password``, ``username``, ``retry``
          (none by default: a resent write may run twice; pass ``client=`` likewise
          without retries),
          ``socket_timeout``, ``socket_connect_timeout``, ``ssl``, ``ssl_ca_certs``,
          ``ssl_certfile``, ``ssl_keyfile``, ``unix_socket_path``, ``max_connections``...
        """
        if client is not None and (url is not None or options):
            raise ConfigurationError("pass either an existing client or connection settings")
        if not isinstance(db, int) or isinstance(db, bool) or db < 0:
            raise ConfigurationError(f"db must be a non-negative integer, not {db!r}")
        owned = client is None
        if client is None:
            options.setdefault("retry", _no_retries())
            if url is not None:
                client = redis.Redis.from_url(url, **options)
            else:
                client = redis.Redis(host=hostname, port=port, db=db, **options)
        if client.get_connection_kwargs().get("decode_responses"):
            raise ConfigurationError(
                "repocket needs a client with decode_responses=False: it stores binary values"
            )
        if codec is not None:
            cls.default_codec(codec)
        with cls._lock:
            previous, previous_owned = cls._client, cls._owned
            cls._client, cls._owned = client, owned
        if previous is not None and previous is not client and previous_owned:
            previous.close()
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
        defaults."""
        with cls._lock:
            previous, owned = cls._client, cls._owned
            cls._client, cls._owned = None, False
            cls._default_codec = "envelope"
        if previous is not None and owned:
            previous.close()
