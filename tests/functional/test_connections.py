"""configure: the documented call, URLs, existing clients, one shared pool."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from repocket import configure, errors
from repocket.core.plan import Command
from repocket.exec import kept_connection
from repocket.exec.lean import why_not_lean
from repocket.exec.plans import run_command
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


# -- the lean path: a connection kept per thread ----------------------------------------------
def _client_id(connection: Any) -> int:
    """The server's id for a kept connection (asked on that very connection)."""
    connection.send_command("CLIENT", "ID")
    return int(connection.read_response())


def _in_use(client: redis.Redis) -> int:
    """Connections taken from the client's pool and not given back (redis-py's bookkeeping)."""
    pool: Any = client.connection_pool
    if isinstance(pool, redis.BlockingConnectionPool):
        idle = sum(1 for connection in pool.pool.queue if connection is not None)
        return len(pool._connections) - idle
    return len(pool._in_use_connections)


def test_configured_clients_keep_one_connection_per_thread(redis_url: str) -> None:
    configure.reset()
    try:
        client = configure.connection_pool(url=redis_url)
        project = Project.create(name="kept")
        kept = kept_connection(client)
        assert kept is not None
        first_id = _client_id(kept)
        for _ in range(5):
            assert Project.objects.get(id=project.id).name == "kept"
        assert kept_connection(client) is kept and _client_id(kept) == first_id
        assert _in_use(client) == 1
    finally:
        configure.reset()


def test_a_plans_plain_commands_use_the_threads_kept_connection(redis_url: str) -> None:
    """A plan's plain Command goes on the connection the thread keeps, not on a second one
    borrowed from the pool; its reply is parsed as redis-py parses it, an error is typed."""
    configure.reset()
    try:
        client = configure.connection_pool(url=redis_url)
        project = Project.create(name="kept")
        kept = kept_connection(client)
        kept_id = _client_id(kept)
        assert run_command(client, Command(("CLIENT", "ID"))) == kept_id
        stored = run_command(client, Command(("HGETALL", project._key())))
        assert isinstance(stored, dict) and stored  # redis-py's HGETALL callback ran
        assert run_command(client, Command(("EXISTS", "nothing:here"))) == 0
        with pytest.raises(errors.RepocketError):
            run_command(client, Command(("HGETALL", "a", "b"), "Project"))
        assert run_command(client, Command(("CLIENT", "ID"))) == kept_id  # still in step
        assert kept_connection(client) is kept and _in_use(client) == 1
    finally:
        configure.reset()


@pytest.mark.parametrize("why, options", [
    ("retries", {"retry": Retry(NoBackoff(), 2)}),
    ("resp3", {"protocol": 3}),
    ("single connection", {"single_connection_client": True}),
])
def test_clients_whose_features_need_redis_py_take_its_path(redis_url: str, why: str,
                                                            options: dict[str, Any]) -> None:
    client = redis.Redis.from_url(redis_url, **options)
    assert why_not_lean(client) is not None, why
    configure.reset()
    try:
        configure.connection_pool(client=client)
        project = Project.create(name=why)
        assert Project.objects.get(id=project.id).name == why
        assert kept_connection(client) is None
    finally:
        configure.reset()
        client.close()


def _child_uses_repocket(project_id: Any, parent_client_id: int, write: int) -> None:
    """In a forked child: repocket works on a connection of its own."""
    try:
        assert Project.objects.get(id=project_id).name == "before fork"
        Project.create(name="from child")
        kept = kept_connection(configure.get_connection())
        assert kept is not None
        assert _client_id(kept) != parent_client_id
        os.write(write, b"ok")
    except BaseException as exc:  # reported to the parent
        os.write(write, repr(exc).encode()[:500])
    finally:
        os._exit(0)


def test_fork_child_and_parent_each_use_their_own_socket(redis_url: str) -> None:
    configure.reset()
    try:
        client = configure.connection_pool(url=redis_url)
        client.flushdb()
        project = Project.create(name="before fork")
        parent_kept = kept_connection(client)
        parent_id = _client_id(parent_kept)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child_uses_repocket(project.id, parent_id, write)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        report = os.read(read, 1000).decode()
        os.close(read)
        assert report == "ok" and status == 0, report
        # the parent's connection was neither used nor closed by the child
        assert kept_connection(client) is parent_kept and _client_id(parent_kept) == parent_id
        assert Project.objects.get(id=project.id).name == "before fork"
        assert Project.objects.filter(name="from child").count() == 1
        assert _client_id(parent_kept) == parent_id
    finally:
        configure.reset()


def test_sixteen_threads_each_keep_one_and_give_it_back_when_they_end(redis_url: str) -> None:
    configure.reset()
    try:
        client = configure.connection_pool(url=redis_url)
        client.flushdb()
        Project.create(name="main")
        kept_ids: dict[int, set[int]] = {}
        failures: list[BaseException] = []
        start = threading.Barrier(16)

        def work(n: int) -> None:
            try:
                start.wait()
                seen = set()
                for i in range(20):
                    project = Project.create(name=f"t{n}-{i}")
                    assert Project.objects.get(id=project.id).name == f"t{n}-{i}"
                    seen.add(_client_id(kept_connection(client)))
                assert Project.objects.filter(name=f"t{n}-3").count() == 1
                kept_ids[n] = seen
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert all(len(seen) == 1 for seen in kept_ids.values()), kept_ids  # one each
        assert len(set().union(*kept_ids.values())) == 16  # never shared
        assert Project.objects.count() == 1 + 16 * 20
        del threads
        gc.collect()
        Project.objects.count()  # gives back what ended threads kept
        assert _in_use(client) == 1  # only this thread's
    finally:
        configure.reset()


@pytest.mark.parametrize("pool_class", [redis.ConnectionPool, redis.BlockingConnectionPool])
def test_kept_connections_never_exhaust_a_bounded_pool(redis_url: str,
                                                       pool_class: type[Any]) -> None:
    """max_connections=4: at most 2 threads keep one; 8 threads calling one at a time all
    succeed (each would with redis-py's own path too)."""
    options = {"timeout": 2} if pool_class is redis.BlockingConnectionPool else {}
    pool = pool_class.from_url(redis_url, max_connections=4, **options)
    client = redis.Redis(connection_pool=pool)
    configure.reset()
    configure.connection_pool(client=client)
    turn = threading.Lock()
    done: list[str] = []
    failures: list[BaseException] = []
    hold = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            for i in range(3):
                with turn:
                    Project.create(name=f"{n}-{i}")
                    done.append(f"{n}-{i}")
        except BaseException as exc:  # reported below
            failures.append(exc)
        hold.wait(timeout=20)  # every thread stays alive while the others call

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(done) == 24
        assert _in_use(client) <= 2
    finally:
        configure.reset()
        client.close()


def test_configure_gives_back_what_threads_kept_for_the_previous_client(redis_url: str) -> None:
    first = redis.Redis.from_url(redis_url)
    second = redis.Redis.from_url(redis_url)
    configure.reset()
    configure.connection_pool(client=first)
    called, switched, finished = threading.Event(), threading.Event(), threading.Event()
    seen: list[Any] = []

    def idle_thread() -> None:
        Project.create(name="on first")
        seen.append(kept_connection(first))
        called.set()
        switched.wait(10)
        Project.create(name="on second")
        seen.append(kept_connection(second))
        finished.set()

    try:
        thread = threading.Thread(target=idle_thread)
        thread.start()
        assert called.wait(10)
        assert seen[0] is not None and _in_use(first) == 1
        configure.connection_pool(client=second)  # the thread is alive and idle
        assert _in_use(first) == 0  # its connection went back to the first pool at once
        switched.set()
        assert finished.wait(10)
        thread.join()
        assert seen[1] is not None
        assert Project.objects.filter(name="on second").count() == 1
        assert first.ping()  # the user's client is not closed: repocket did not build it
    finally:
        configure.reset()
        first.close()
        second.close()
