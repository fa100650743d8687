"""Faults on servers the tests start and own: SCRIPT FLUSH under load, a restart and a
``kill -9`` mid-load, ``maxmemory``, a client timeout against a busy server, and a
connection dropped mid-reply. Calls fail with typed errors or succeed; nothing is torn."""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import threading
import time
from typing import Any

import pytest
import redis

from repocket import configure, errors
from repocket.core import keys as keyspace
from repocket.exec import kept_connection
from tests.conftest import snapshot
from tests.support.servers import StartServer

from .test_concurrency import Account, Ticket, assert_consistent

TRANSIENT = (errors.RepocketConnectionError, errors.RepocketTimeoutError)


def _stream(admin: redis.Redis, record: Any) -> bytes:
    return admin.get(keyspace.stream_key(record._key(), "log")) or b""


# -- SCRIPT FLUSH in a loop -----------------------------------------------------------------
@pytest.mark.slow  # a fixed 2 s load loop against SCRIPT FLUSH
def test_script_flush_in_a_loop_never_reaches_the_caller(start_server: StartServer) -> None:
    owned_server = start_server()
    configure.connection_pool(url=owned_server.url)
    stable = [Account.create(name=f"s{i}", score=i, email=None) for i in range(4)]
    stop = threading.Event()
    flushes = 0

    def flusher() -> None:
        nonlocal flushes
        admin = owned_server.client()
        while not stop.is_set():
            admin.script_flush()
            flushes += 1

    failures: collections.Counter[str] = collections.Counter()
    done = collections.Counter[str]()
    appended: dict[int, list[bytes]] = collections.defaultdict(list)
    lock = threading.Lock()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + 2.0
        n = 0
        while time.monotonic() < deadline:
            n += 1
            kind = rng.choice(["create", "append", "get", "filter", "bulk", "delete", "claim"])
            try:
                if kind == "create":
                    Account.create(name="v", score=rng.randrange(100), email=None)
                elif kind == "append":
                    index = rng.randrange(len(stable))
                    chunk = f"<{seed}:{n}>".encode()
                    stable[index].append_log(chunk)
                    with lock:
                        appended[index].append(chunk)
                elif kind == "get":
                    assert Account.objects.get(id=stable[0].pk) is not None
                elif kind == "filter":
                    Account.objects.filter(name="v", score__lt=50)[:5].count()
                elif kind == "bulk":
                    Account.objects.bulk_create(
                        [Account(name="v", score=i, email=None) for i in range(3)])
                elif kind == "delete":
                    found = Account.objects.filter(name="v")[:1]
                    if found:
                        found[0].delete()
                else:
                    Ticket.create(code=f"{seed}-{n}", owner=str(seed))
            except Exception as exc:
                with lock:
                    failures[f"{kind}: {type(exc).__name__}: {str(exc)[:100]}"] += 1
            else:
                with lock:
                    done[kind] += 1

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    flushing = threading.Thread(target=flusher)
    flushing.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    flushing.join()
    print(f"\n[script flush] {flushes} flushes, calls done {dict(done)}, failed {dict(failures)}")
    assert flushes > 100
    assert sum(done.values()) > 100
    assert dict(failures) == {}
    admin = owned_server.client()
    for index, record in enumerate(stable):
        assert sorted(_stream(admin, record).replace(b">", b">\n").split()) == sorted(
            appended[index])
    assert_consistent(admin, Account, Ticket)


# -- a restart mid-load -----------------------------------------------------------------
class _Load:
    """Writer threads running a mix of operations until stopped, recording every outcome."""

    def __init__(self, stable: list[Any], threads: int = 3):
        self.stable = stable
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done: collections.Counter[str] = collections.Counter()
        self.transient: list[BaseException] = []
        self.unexpected: collections.Counter[str] = collections.Counter()
        self.acked: dict[int, list[bytes]] = collections.defaultdict(list)
        self.unsure: dict[int, list[bytes]] = collections.defaultdict(list)
        self.phase = "before"
        self.threads = [threading.Thread(target=self._run, args=(seed,))
                        for seed in range(threads)]

    def __enter__(self) -> _Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        while not self.stop.is_set():
            n += 1
            kind = rng.choice(["append", "create", "update", "bulk", "get"])
            index = rng.randrange(len(self.stable))
            chunk = f"<{seed}:{n}>".encode()
            try:
                if kind == "append":
                    self.stable[index].append_log(chunk)
                    with self.lock:
                        self.acked[index].append(chunk)
                elif kind == "create":
                    Account.create(name="v", score=n % 100, email=f"{seed}-{n}@x")
                elif kind == "update":
                    record = Account.objects.get(id=self.stable[index].pk)
                    record.score = n % 100
                    record.email = f"{seed}-{n}@stable"
                    record.save()
                elif kind == "bulk":
                    Account.objects.bulk_create(
                        [Account(name="b", score=i, email=f"{seed}-{n}-{i}@x", log=b"l" * i)
                         for i in range(5)])
                else:
                    assert Account.objects.get(id=self.stable[index].pk) is not None
            except TRANSIENT as exc:
                with self.lock:
                    self.transient.append(exc)
                    if kind == "append":
                        self.unsure[index].append(chunk)
                time.sleep(0.01)
            except Exception as exc:
                with self.lock:
                    self.unexpected[f"{kind}: {type(exc).__name__}: {str(exc)[:100]}"] += 1
            else:
                with self.lock:
                    self.done[f"{kind} {self.phase}"] += 1

    def check_streams(self, admin: redis.Redis) -> None:
        """Every acknowledged chunk is stored once; a chunk whose call failed, at most once."""
        for index, record in enumerate(self.stable):
            stored = collections.Counter(_stream(admin, record).replace(b">", b">\n").split())
            acked, unsure = set(self.acked[index]), set(self.unsure[index])
            assert {chunk for chunk, count in stored.items() if count > 1} == set()
            assert acked <= set(stored), "an acknowledged append was lost"
            assert set(stored) <= acked | unsure


def test_restart_mid_load_fails_calls_with_typed_errors_and_tears_nothing(
        start_server: StartServer) -> None:
    server = start_server("--appendonly", "yes", "--appendfsync", "always")
    configure.connection_pool(url=server.url, socket_timeout=2, socket_connect_timeout=0.5)
    stable = [Account.create(name=f"s{i}", score=i, email=None) for i in range(4)]
    with _Load(stable) as load:
        time.sleep(0.6)
        server.stop()
        time.sleep(0.3)
        server.start()
        load.phase = "after"
        time.sleep(0.8)
    print(f"\n[restart] done {dict(load.done)}; transient errors "
          f"{collections.Counter(type(e).__name__ for e in load.transient)}; "
          f"unexpected {dict(load.unexpected)}")
    assert dict(load.unexpected) == {}
    assert load.transient, "the restart happened while no call was in flight"
    for exc in load.transient:  # retriable, and still redis-py's own errors
        assert isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
    assert sum(n for kind, n in load.done.items() if kind.endswith("before")) > 20
    assert sum(n for kind, n in load.done.items() if kind.endswith("after")) > 20
    admin = server.client()
    load.check_streams(admin)
    assert_consistent(admin, Account, Ticket)


# -- kill -9 during bulk_create ------------------------------------------------------------
@pytest.mark.slow  # three kill -9 rounds under load (the longest test)
def test_kill_9_during_bulk_create_leaves_each_batch_whole_or_absent(
        start_server: StartServer) -> None:
    server = start_server("--appendonly", "yes", "--appendfsync", "always")
    configure.connection_pool(url=server.url, socket_timeout=2, socket_connect_timeout=0.5)
    rng = random.Random(9)
    attempted: list[list[Any]] = []
    acknowledged: set[int] = set()
    interrupted = 0
    for round_number in range(3):
        stop = threading.Event()
        outcome: list[BaseException] = []

        def writer(round_number: int = round_number, stop: threading.Event = stop,
                   outcome: list[BaseException] = outcome) -> None:
            batch_number = 0
            while not stop.is_set():
                batch_number += 1
                batch = [Account(name=f"r{round_number}b{batch_number}", score=i,
                                 email=f"{round_number}-{batch_number}-{i}@x",
                                 log=b"x" * (i * 10)) for i in range(40)]
                attempted.append(batch)
                try:
                    Account.objects.bulk_create(batch, batch_size=40)
                except Exception as exc:
                    outcome.append(exc)
                    return
                acknowledged.add(len(attempted) - 1)

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(rng.uniform(0.2, 0.5))
        server.kill()
        thread.join(timeout=10)
        stop.set()
        assert not thread.is_alive(), "the writer hung after kill -9"
        assert len(outcome) == 1, (outcome, round_number)
        assert isinstance(outcome[0], errors.RepocketConnectionError), repr(outcome[0])
        interrupted += 1
        server.start()
        configure.get_connection().connection_pool.reset()  # drop the dead connections

    admin = server.client()
    ids = {member.decode() for member in admin.smembers(Account._meta.ids_key)}
    whole = absent = 0
    for number, batch in enumerate(attempted):
        present = [str(record.pk) in ids for record in batch]
        if all(present):
            whole += 1
            for record in batch:  # every field and stream of the batch
                loaded = Account.objects.get(id=record.pk)
                assert (loaded.name, loaded.score, loaded.email, loaded.log) == (
                    record.name, record.score, record.email, record.log)
        else:
            assert not any(present), f"batch {number} is torn: {sum(present)}/{len(batch)}"
            assert number not in acknowledged, "an acknowledged batch was lost"
            absent += 1
    print(f"\n[kill -9] {len(attempted)} batches attempted over {interrupted} kills: "
          f"{whole} whole, {absent} absent")
    assert whole >= 3
    assert_consistent(admin, Account, Ticket)


# -- maxmemory, noeviction -----------------------------------------------------------------
def test_over_maxmemory_every_write_is_refused_whole(start_server: StartServer) -> None:
    server = start_server("--maxmemory-policy", "noeviction")
    configure.connection_pool(url=server.url)
    admin = server.client()
    stable = [Account.create(name=f"s{i}", score=i, email=f"s{i}@x", log=b"s")
              for i in range(4)]
    Ticket.create(code="first", owner="x")
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 400_000)
    rng = random.Random(5)

    def write(kind: str, n: int) -> None:
        if kind == "create":
            Account.create(name="v", score=n, email=f"{n}@x", log=b"c" * 3000)
        elif kind == "bulk_create":
            Account.objects.bulk_create([Account(name="b", score=i, email=f"{n}-{i}@x",
                                                 log=b"b" * 3000) for i in range(5)])
        elif kind == "append":
            rng.choice(stable).append_log(b"a" * 5000)
        elif kind == "save":
            record = Account.objects.get(id=rng.choice(stable).pk)
            record.score = n
            record.email = f"moved-{n}@x"
            record.log = record.log + b"z" * 2000
            record.save()
        else:
            Ticket.create(code=f"code-{n}", owner="x" * 2000)

    kinds = ["create", "bulk_create", "append", "save", "ticket"]
    refused: collections.Counter[str] = collections.Counter()
    written: collections.Counter[str] = collections.Counter()
    for n in range(3000):
        kind = kinds[n % len(kinds)]
        before = snapshot(admin)
        try:
            write(kind, n)
        except errors.OutOfMemory as exc:
            assert isinstance(exc, redis.exceptions.OutOfMemoryError)
            assert snapshot(admin) == before, f"a refused {kind} wrote something"
            refused[kind] += 1
            if set(refused) == set(kinds) and min(refused.values()) >= 2:
                break
        else:
            written[kind] += 1
    print(f"\n[maxmemory] written {dict(written)}, refused {dict(refused)}")
    assert set(refused) == set(kinds), refused
    assert sum(written.values()) > 10  # the limit was reached by writing, not from the start
    # reads still answer
    assert Account.objects.get(id=stable[0].pk) is not None
    assert Account.objects.filter(name="v").count() == written["create"]
    admin.config_set("maxmemory", 0)
    assert_consistent(admin, Account, Ticket)
    write("bulk_create", 10_000)
    assert_consistent(admin, Account, Ticket)


def test_over_maxmemory_reads_work_even_before_their_script_is_cached(
        start_server: StartServer) -> None:
    """README: read scripts are ``flags=no-writes``, so reads work over maxmemory. That
    must hold after a restart or SCRIPT FLUSH too, when the script is not cached yet."""
    server = start_server("--maxmemory-policy", "noeviction")
    configure.connection_pool(url=server.url)
    admin = server.client()
    record = Account.create(name="kept", score=1, email=None, log=b"log")
    admin.script_flush()  # as after a restart or a failover
    admin.config_set("maxmemory", 1)
    try:
        loaded = Account.objects.get(id=record.pk)
        assert loaded is not None and loaded.log == b"log"
        assert Account.objects.filter(name="kept").count() == 1
    finally:
        admin.config_set("maxmemory", 0)


def test_over_maxmemory_delete_still_frees_memory(start_server: StartServer) -> None:
    """Redis lets DEL run over maxmemory (noeviction) precisely so that clients can free
    memory; a repocket delete only removes keys and entries, so it should too."""
    server = start_server("--maxmemory-policy", "noeviction")
    configure.connection_pool(url=server.url)
    admin = server.client()
    records = [Account.create(name="v", score=i, email=f"{i}@x", log=b"d" * 10_000)
               for i in range(20)]
    admin.config_set("maxmemory", 1)
    try:
        with pytest.raises(errors.OutOfMemory):
            Account.create(name="v", score=0, email=None)
        assert records[0].delete() == 2
        assert Account.objects.filter(name="v", score__lt=5).delete() == 4
    finally:
        admin.config_set("maxmemory", 0)
    assert Account.objects.count() == 15
    assert_consistent(admin, Account, Ticket)


# -- a client timeout while the server is busy ----------------------------------------------
def _configure(style: str, port: int, **options: Any) -> None:
    """repocket's two ways to name a server: a URL, or 0.1's hostname and port."""
    if style == "url":
        configure.connection_pool(url=f"redis://127.0.0.1:{port}/0", **options)
    else:
        configure.connection_pool(hostname="127.0.0.1", port=port, **options)


def _write_ops(stable: Account, n: int) -> dict[str, Any]:
    """One call of each write, and how to tell afterwards whether it ran (never half)."""
    chunk = f"<chunk {n}>".encode()
    batch = [Account(name=f"batch{n}", score=i, email=f"{n}-{i}@x") for i in range(3)]
    code = f"code-{n}"

    record = Account.objects.get(id=stable.pk)

    def update() -> None:
        record.score = n
        record.email = f"stable-{n}@x"
        record.save()

    return {
        "append": (lambda: stable.append_log(chunk), lambda admin: (
            _stream(admin, stable).count(chunk))),
        "bulk_create": (lambda: Account.objects.bulk_create(batch), lambda admin: (
            Account.objects.filter(name=f"batch{n}").count() / len(batch))),
        "claim": (lambda: Ticket.create(code=code, owner="x"), lambda admin: (
            Ticket.objects.filter(code=code).count())),
        "update": (update, lambda admin: int(Account.objects.get(id=stable.pk).score == n)),
    }


@pytest.mark.parametrize("style", ["url", "hostname"])
def test_client_timeout_while_the_server_is_busy_is_typed_and_runs_a_write_at_most_once(
        start_server: StartServer, style: str) -> None:
    server = start_server("--enable-debug-command", "local")
    _configure(style, server.port, socket_timeout=0.25)
    admin = server.client()
    stable = Account.create(name="stable", score=0, email=None, log=b"")
    for kind, (run, _ran) in _write_ops(stable, 0).items():  # every script cached
        run()
        assert kind
    Account.objects.get(id=stable.pk)
    Account.objects.filter(name="x").count()
    outcomes: dict[str, str] = {}
    for n, (kind, (run, ran)) in enumerate(_write_ops(stable, 1).items(), start=1):
        Account.objects.get(id=stable.pk)  # connected again, before the server sleeps
        sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "0.6"))
        sleeper.start()
        time.sleep(0.1)  # the server is asleep: this call waits past socket_timeout
        try:
            run()
            outcome = "returned"
        except errors.RepocketTimeoutError as exc:
            assert isinstance(exc, redis.exceptions.TimeoutError)
            outcome = "timed out"
        sleeper.join()
        time.sleep(0.05)
        times_run = ran(admin)
        outcomes[kind] = f"{outcome}, ran {times_run}x"
        if outcome == "returned":
            assert times_run == 1, (kind, outcomes)
        else:
            assert times_run in (0, 1), (kind, outcomes)
        assert n
    print(f"\n[timeout, {style}] {outcomes}")
    if style == "url":  # no retry configured: the caller sees the timeout
        assert all(text.startswith("timed out") for text in outcomes.values()), outcomes
    # reads time out with the typed error too
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "0.6"))
    sleeper.start()
    time.sleep(0.1)
    with contextlib.suppress(errors.RepocketTimeoutError):
        Account.objects.get(id=stable.pk)
    sleeper.join()
    assert Account.objects.get(id=stable.pk) is not None  # the pool recovers
    assert_consistent(admin, Account, Ticket)


# -- a connection dropped mid-reply ---------------------------------------------------------
class CuttingProxy:
    """A TCP proxy to a server that, once armed, forwards only the first ``n`` bytes of the
    next reply and then closes both sides of that connection (the server ran the call)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_after: int | None = None
        self.stall_after: int | None = None
        self.released = threading.Event()
        self.cuts = 0
        self.accepted = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, n: int) -> None:
        with self.lock:
            self.cut_after = n

    def stall(self, n: int) -> None:
        """Forward the first ``n`` bytes of the next reply, and the rest only on release()."""
        self.released.clear()
        with self.lock:
            self.stall_after = n

    def release(self) -> None:
        self.released.set()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, is_reply: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if is_reply:
                    with self.lock:
                        cut, self.cut_after = self.cut_after, None
                        stall, self.stall_after = self.stall_after, None
                    if cut is not None:
                        sink.sendall(data[:cut])
                        self.cuts += 1
                        break
                    if stall is not None:
                        sink.sendall(data[:stall])
                        self.released.wait(30)
                        data = data[stall:]  # late: the client gave up on this socket
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.mark.parametrize("style", ["url", "hostname"])
def test_connection_dropped_mid_reply_is_typed_and_runs_a_write_at_most_once(
        start_server: StartServer, style: str) -> None:
    server = start_server()
    proxy = CuttingProxy(server.port)
    admin = server.client()
    try:
        _configure(style, proxy.port, socket_timeout=5)
        stable = Account.create(name="stable", score=0, email=None, log=b"x" * 5000)
        for run, _ran in _write_ops(stable, 0).values():  # every script cached
            run()
        outcomes: dict[str, str] = {}
        for kind, (run, ran) in _write_ops(stable, 1).items():
            Account.objects.get(id=stable.pk)  # connected again: the cut hits the call
            proxy.arm(2)  # '+sa' of '+saved', ':12' of ':1234'...
            try:
                run()
                outcome = "returned"
            except errors.RepocketConnectionError as exc:
                assert isinstance(exc, redis.exceptions.ConnectionError)
                outcome = "dropped"
            times_run = ran(admin)
            outcomes[kind] = f"{outcome}, ran {times_run}x"
            assert times_run == 1, (kind, outcomes)  # the server ran it, once
        print(f"\n[mid-reply, {style}] {outcomes}")
        if style == "url":
            assert all(text.startswith("dropped") for text in outcomes.values()), outcomes
        for cut in (10, 2000):  # a read's reply cut inside the record
            Account.objects.filter(name="stable").count()
            proxy.arm(cut)
            if style == "url":
                with pytest.raises(errors.RepocketConnectionError):
                    Account.objects.get(id=stable.pk)
            else:  # a client that retries may re-send a read: harmless
                with contextlib.suppress(errors.RepocketConnectionError):
                    assert Account.objects.get(id=stable.pk).log == _stream(admin, stable)
        assert Account.objects.get(id=stable.pk).log == _stream(admin, stable)  # recovered
        assert proxy.cuts >= 6
        assert_consistent(admin, Account, Ticket)
    finally:
        proxy.close()


def test_client_killed_while_its_call_waits_is_typed_and_runs_a_write_at_most_once(
        start_server: StartServer) -> None:
    server = start_server("--enable-debug-command", "local")
    configure.connection_pool(url=server.url, socket_timeout=5, client_name="under-test")
    admin = server.client()
    stable = Account.create(name="stable", score=0, email=None, log=b"")
    stable.append_log(b"warm")
    dropped = 0
    for n in range(5):
        stable.append_log(b"")  # connected again
        connection_ids = [c["id"] for c in admin.client_list() if c["name"] == "under-test"]
        assert connection_ids
        chunk = f"<{n}>".encode()

        sleeper, killer = server.client(), server.client()
        sleeper.ping()
        killer.ping()  # both connected before the server sleeps

        def sleep_then_kill(connection_ids: list[str] = connection_ids,
                            sleeper: redis.Redis = sleeper, killer: redis.Redis = killer) -> None:
            thread = threading.Thread(target=sleeper.execute_command,
                                      args=("DEBUG", "SLEEP", "0.4"))
            thread.start()
            time.sleep(0.2)  # the append below is sent by now, and waits
            for connection_id in connection_ids:
                killer.client_kill_filter(_id=connection_id)
            thread.join()

        killing = threading.Thread(target=sleep_then_kill)
        killing.start()
        time.sleep(0.1)
        try:
            stable.append_log(chunk)
            outcome = "returned"
        except errors.RepocketConnectionError as exc:
            assert isinstance(exc, redis.exceptions.ConnectionError)
            outcome = "dropped"
            dropped += 1
        killing.join()
        times_run = _stream(admin, stable).count(chunk)
        assert times_run == 1 if outcome == "returned" else times_run in (0, 1), (n, outcome)
    assert dropped >= 1
    assert stable.append_log(b"after") > 0
    assert_consistent(admin, Account, Ticket)


def test_client_timeout_mid_reply_discards_the_connection_and_the_next_call_works(
        start_server: StartServer) -> None:
    """The lean path keeps a connection per thread: a reply half-read when the timeout hit
    must never be read by the next call (its rest arrives late, on the old socket)."""
    server = start_server()
    proxy = CuttingProxy(server.port)
    admin = server.client()
    try:
        configure.connection_pool(url=f"redis://127.0.0.1:{proxy.port}/0", socket_timeout=0.5)
        stable = Account.create(name="stable", score=0, email=None, log=b"x" * 5000)
        for run, _ran in _write_ops(stable, 0).values():  # every script cached
            run()
        outcomes = {}
        for kind, (run, ran) in _write_ops(stable, 1).items():
            Account.objects.get(id=stable.pk)
            kept = kept_connection(configure.get_connection())
            assert kept is not None
            connections_before = proxy.accepted
            proxy.stall(2)
            with pytest.raises(errors.RepocketTimeoutError):
                run()
            proxy.release()  # the rest of the reply goes to the abandoned socket
            outcomes[kind] = ran(admin)
            assert outcomes[kind] == 1, (kind, outcomes)  # the server ran it, once
            # the next call on this thread: a fresh session, the right reply
            assert Account.objects.get(id=stable.pk).log == _stream(admin, stable)
            assert kept_connection(configure.get_connection()) is kept
            assert proxy.accepted == connections_before + 1
        print(f"\n[timeout mid-reply] ran {outcomes}")
        assert_consistent(admin, Account, Ticket)
    finally:
        proxy.release()
        proxy.close()


def test_a_script_past_lua_time_limit_makes_calls_fail_with_a_retriable_busy_error(
        start_server: StartServer) -> None:
    server = start_server("--lua-time-limit", "10")
    configure.connection_pool(url=server.url, socket_timeout=10)
    admin = server.client()
    stable = Account.create(name="stable", score=0, email=None, log=b"")
    stable.append_log(b"warm")
    kept = kept_connection(configure.get_connection())
    def run_forever() -> None:  # until SCRIPT KILL (it writes nothing, so it may be killed)
        with contextlib.suppress(redis.exceptions.ResponseError):
            server.client().eval("while true do end", 0)

    busy_script = threading.Thread(target=run_forever)
    busy_script.start()
    probe = server.client()
    try:
        for _ in range(500):  # until the server answers BUSY (bounded, not timed)
            try:
                probe.ping()
            except redis.exceptions.ResponseError as exc:
                assert str(exc).startswith("BUSY")
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the server never got busy")
        with pytest.raises(errors.ServerBusy) as raised:
            stable.append_log(b"refused")
        assert isinstance(raised.value, errors.RepocketConnectionError)  # retriable
        assert isinstance(raised.value, redis.exceptions.ConnectionError)
        assert "BUSY" in str(raised.value)
        with pytest.raises(errors.ServerBusy):
            Account.objects.get(id=stable.pk)
    finally:
        probe.script_kill()
        busy_script.join()
    assert stable.append_log(b"!") == len(b"warm!")  # nothing refused ran; retrying works
    assert kept_connection(configure.get_connection()) is kept  # an error reply: kept
    assert_consistent(admin, Account, Ticket)
