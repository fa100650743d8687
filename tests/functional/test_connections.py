"""configure: the documented call, URLs, existing clients, one shared pool."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from repocket import configure, errors
from repocket.tools.server import RedisServer

from .models import Project


def test_connection_pool_with_documented_arguments(redis_url: str) -> None:
    host_port = redis_url.split("//")[1].split("/")[0]
    host, port = host_port.rsplit(":", 1)
    configure.reset()
    try:
        client = configure.connection_pool(hostname=host, port=int(port), db=3)
        client.flushdb()
        assert configure.get_connection() is configure.get_connection() is client
        project = Project.create(name="db three")
        assert client.connection_pool.connection_kwargs["db"] == 3
        assert Project.objects.get(id=project.id).name == "db three"
        client.flushdb()
    finally:
        configure.reset()


def test_url_unix_socket_and_existing_client(own_server: RedisServer, redis_url: str) -> None:
    configure.reset()
    try:
        configure.connection_pool(url=f"unix://{own_server.unixsocket}?db=4")
        project = Project.create(name="over a socket")
        configure.connection_pool(client=redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/4"))
        assert Project.objects.get(id=project.id).name == "over a socket"
        configure.get_connection().flushdb()
    finally:
        configure.reset()


def test_decode_responses_client_is_refused() -> None:
    with pytest.raises(errors.ConfigurationError, match="decode_responses"):
        configure.connection_pool(client=redis.Redis(decode_responses=True))
    with pytest.raises(errors.ConfigurationError):
        configure.connection_pool(db=-1)
    with pytest.raises(errors.ConfigurationError):
        configure.default_codec("yaml")


def test_default_connection_comes_from_repocket_url(redis_url: str) -> None:
    code = (
        "from repocket import configure\n"
        "a = configure.get_connection(); b = configure.get_connection()\n"
        "assert a is b\n"
        "print(a.connection_pool.connection_kwargs['port'], a.ping())\n"
    )
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    env = {"REPOCKET_URL": redis_url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == [port, "True"]
