"""Security: stored data never chooses code, a minimal ACL user, TLS, AUTH, bounded server-side
work, and keys confined to the model's prefix. Each test starts the servers it needs (a plain
one with ACL users, a TLS-only one with a CA made here by openssl) or uses the suite's server."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import ssl
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from repocket import ActiveRecord, attributes, configure, errors
from repocket.core.lua import SCRIPTS
from repocket.core.luagen import compile_source
from repocket.core.luagen import sources as luagen_sources
from repocket.exec import kept_connection
from repocket.exec.registry import registry
from repocket.tools.server import RedisServer
from tests.support.servers import server_version, tls_server
from tests.support.work import ScriptCall, script_calls

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-app"
ADMIN_PASSWORD = "s3cret-admin"
# No script call may block Redis for long: a bound on the elements one call reads (a scan
# page examines 1,000 candidates, a few elements each; unpaged, these tests read 20,000+)
WORK_PER_CALL = 5_000


def documented_rules() -> tuple[list[str], list[str]]:
    """The ``ACL SETUSER`` arguments docs/ACL.md gives users (the Redis 7.0 rule, then the
    rule for Redis 7.2+ and Valkey), with a test password."""
    text = (ROOT / "docs" / "ACL.md").read_text("utf-8")
    lines = [line for line in text.splitlines() if line.startswith("ACL SETUSER repocket ")]
    assert len(lines) == 2, "docs/ACL.md must hold two 'ACL SETUSER repocket' lines (7.0, 7.2+)"
    old, new = ([f">{PASSWORD}" if arg == ">CHANGE-ME" else arg for arg in line.split()[3:]]
                for line in lines)
    return old, new


def documented_rule(version: tuple[int, ...] = (7, 0)) -> list[str]:
    """The documented rule for a server compatible with Redis ``version``."""
    old, new = documented_rules()
    return new if version >= (7, 2) else old


def granted_commands(rule: list[str]) -> set[str]:
    """Commands granted whole (``+hget``), not subcommands (``+client|setinfo``)."""
    return {arg[1:].lower() for arg in rule
            if arg.startswith("+") and not arg.startswith("+@") and "|" not in arg}


# -- models ------------------------------------------------------------------------------------
class Forged(ActiveRecord):
    class Meta:
        namespace = "security"

    name = attributes.Unicode()
    count = attributes.Integer()
    data = attributes.JSON(null=True)
    blob = attributes.Bytes()
    at = attributes.DateTime(null=True)
    ref = attributes.UUID(null=True)
    price = attributes.Decimal()
    other = attributes.Pointer("self", null=True)


class CompactForged(ActiveRecord):
    class Meta:
        namespace = "security"
        codec = "compact"

    name = attributes.Unicode()
    count = attributes.Integer()


class Ring(ActiveRecord):
    class Meta:
        namespace = "security"

    label = attributes.Unicode()
    next = attributes.Pointer("self", null=True)


class Player(ActiveRecord):
    """Every kind of key: hash, ids, indexes, null set, unique hash, stream, Pointer."""

    class Meta:
        namespace = "security"

    name = attributes.Unicode(index=True)
    email = attributes.Unicode(unique=True, null=True)
    score = attributes.Integer(index=True)
    joined = attributes.DateTime(index=True, null=True)
    bio = attributes.Unicode()
    log = attributes.ByteStream()
    mentor = attributes.Pointer("self", null=True, index=True)


class Victim(ActiveRecord):
    class Meta:
        namespace = "keys"

    name = attributes.Unicode(index=True)
    tag = attributes.Unicode(unique=True, null=True)
    note = attributes.Unicode()
    log = attributes.ByteStream()
    next = attributes.Pointer("self", null=True)


class Item(ActiveRecord):
    class Meta:
        namespace = "security"

    kind = attributes.Unicode(index=True)
    note = attributes.Unicode()
    n = attributes.Integer(index=True)


# -- servers -------------------------------------------------------------------------------------
class Server:
    def __init__(self, url: str, admin: redis.Redis, **tls: Any):
        self.url = url
        self.admin = admin
        self.tls = tls
        self.rule = documented_rule(server_version(admin))  # the one for this server's version

    def connect(self, url: str | None = None, **options: Any) -> redis.Redis:
        """Configure repocket's global connection to this server."""
        return configure.connection_pool(url=url or self.url, **{**self.tls, **options})

    def add_user(self, name: str, rule: list[str]) -> None:
        self.admin.execute_command("ACL", "SETUSER", name, *rule)

    def acl_denials(self) -> list[dict[str, Any]]:
        return list(self.admin.acl_log())


def _locked_down(url: str, admin_options: dict[str, Any]) -> redis.Redis:
    """Give the default user a password (AUTH required) and add the documented user."""
    admin = redis.Redis.from_url(url, **admin_options)
    admin.execute_command("ACL", "SETUSER", "repocket", *documented_rule(server_version(admin)))
    admin.execute_command("ACL", "SETUSER", "default", "on", f">{ADMIN_PASSWORD}")
    admin.close()
    admin = redis.Redis.from_url(url, password=ADMIN_PASSWORD, **admin_options)
    assert admin.ping()
    return admin


@pytest.fixture(scope="module")
def plain() -> Iterator[Server]:
    with RedisServer() as server:
        admin = _locked_down(server.url, {})
        yield Server(server.url, admin)
        admin.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that speaks TLS only (``--port 0``), with a certificate made here."""
    with tls_server(tmp_path_factory.mktemp("tls")) as server:
        admin = _locked_down(server.url, server.client_options())
        yield Server(server.url, admin, **server.client_options())
        admin.close()


@pytest.fixture
def fresh(plain: Server) -> Iterator[Server]:
    plain.admin.flushall()
    plain.admin.script_flush()
    plain.admin.acl_log_reset()
    yield plain
    configure.reset()


@pytest.fixture
def fresh_tls(tls: Server) -> Iterator[Server]:
    tls.admin.flushall()
    tls.admin.acl_log_reset()
    yield tls
    configure.reset()


def user_url(server: Server, user: str = "repocket", password: str = PASSWORD) -> str:
    scheme, rest = server.url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


# -- 1. stored data never chooses code -----------------------------------------------------------
def envelope(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_forged_envelopes_are_decoded_by_the_declared_field(
        client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a module that would betray its import, importable from sys.path
    marker = tmp_path / "imported"
    planted = "repocket_planted_payload"
    (tmp_path / f"{planted}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Popen:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    honest = Forged.create(name="n", count=1, data={"a": 1}, blob=b"b", price="1.5",
                           at="2020-01-01T00:00:00+00:00", ref=uuid.uuid4())
    target = Forged.create(name="target")
    Forged.objects.get(id=honest.id)  # warm every decode path before counting modules
    list(Forged.objects.filter(count=1))
    key = Forged._meta.record_key(honest.id)
    forged = {
        "name": envelope(type="Popen", module=planted, value="ls -la", args=["rm", "-rf"]),
        "count": envelope(type="Unicode", module=planted, value="12"),
        "data": envelope(type="Pickle", module="pickle", value='{"py/object": "os.Popen"}',
                         encoding="pickle", __reduce__="os.system"),
        "blob": envelope(type="Popen", module="subprocess", value="aGk=", encoding="base64"),
        "price": envelope(type="Float", module="builtins", value="2.25"),
        "at": envelope(type="Popen", module=planted, value="2021-02-03T04:05:06+00:00"),
        "ref": envelope(type="Pointer", module=planted, value=str(target.id)),
        "other": envelope(type="Popen", module=planted, value=str(target.id)),
        "id": envelope(type="UUID", module=planted, value=str(uuid.uuid4())),
        "__class__": b"os.Popen", "_values": b"{}", "__dict__": b"x",
    }
    client.hset(key, mapping=forged)
    before = set(sys.modules)

    loaded = Forged.objects.get(id=honest.id)
    via_query = list(Forged.objects.filter(count=12))
    via_many = Forged.objects.get_many([honest.id])[0]

    assert set(sys.modules) - before == set()
    assert not marker.exists()
    assert len(via_query) == 1
    for record in (loaded, via_many, *via_query):
        assert type(record) is Forged
        assert record.id == honest.id  # the key says which record this is, not the stored id
        assert type(record.name) is str and record.name == "ls -la"
        assert type(record.count) is int and record.count == 12
        assert type(record.data) is dict and record.data == {"py/object": "os.Popen"}
        assert type(record.blob) is bytes and record.blob == b"hi"
        assert str(record.price) == "2.25" and type(record.price).__name__ == "Decimal"
        assert record.at.year == 2021
        assert type(record.ref) is uuid.UUID and record.ref == target.id
        assert type(record.other) is Forged and record.other.name == "target"
        assert record._values.keys() == honest._values.keys()


@pytest.mark.parametrize("field, raw", [
    ("name", b'["os", "Popen"]'),
    ("name", envelope(type="Popen", module="os")),
    ("name", envelope(type="Unicode", value=5)),
    ("name", envelope(type="Unicode", value={"module": "os"})),
    ("name", envelope(type="Unicode", value="!!", encoding="base64")),
    ("name", b"[" * 100_000),
    ("name", b"\xff\xfe"),
    ("count", envelope(type="Integer", value="__import__('os')")),
    ("count", envelope(type="Float", value="1e400")),
    ("data", envelope(type="JSON", value="{not json")),
    ("at", envelope(type="DateTime", value="Popen")),
    ("ref", envelope(type="UUID", value="../../outside")),
    ("other", envelope(type="Pointer", value="repocket:*")),
])
def test_forged_values_the_field_cannot_decode_are_refused(client: redis.Redis, field: str,
                                                           raw: bytes) -> None:
    record = Forged.create(name="x")
    key = Forged._meta.record_key(record.id)
    client.hset(key, field, raw)
    before = set(sys.modules)
    with pytest.raises(errors.StoredDataError) as caught:
        Forged.objects.get(id=record.id)
    assert caught.value.field == field and caught.value.key == key
    with pytest.raises(errors.StoredDataError):
        list(Forged.objects.all())
    assert set(sys.modules) - before == set()


def test_compact_codec_treats_a_forged_envelope_as_plain_data(client: redis.Redis) -> None:
    record = CompactForged.create(name="x", count=2)
    key = CompactForged._meta.record_key(record.id)
    text = envelope(type="Popen", module="os", value="ls")
    client.hset(key, "name", text)
    assert CompactForged.objects.get(id=record.id).name == text.decode()
    client.hset(key, "count", envelope(type="Integer", value="3"))
    with pytest.raises(errors.StoredDataError):
        CompactForged.objects.get(id=record.id)


# -- 2. a minimal ACL user ------------------------------------------------------------------------
CHECKER_SCRIPTS = ("scan",)  # check()'s keyspace pass: SCAN and INFO, the checker's user's
CHECKER_GRANTS = ["+scan", "+info"]


def lua_commands(checker: bool = False) -> set[str]:
    """Every Redis command the scripts call (with ``checker``, the checker's scripts too;
    the per-model scripts generated for this module's models, in both codecs, always) by
    its literal name, through ``redis.call``, ``redis.pcall`` or a counting ``call``
    wrapper (query.lua's)."""
    found: set[str] = set()
    generated = {f"{model.__name__}.{name}.{codecs[0]}": compile_source(name, source)
                 for model in (Player, Forged) for codecs in ((True,) * 8, (False,) * 8)
                 for name, source in luagen_sources(
                     model._meta, codecs[:len(model._meta.reachable_models)])}
    for name, script in {**SCRIPTS, **generated}.items():
        if name in CHECKER_SCRIPTS and not checker:
            continue
        found |= {name.lower() for name in re.findall(
            r"(?:redis\.p?call|\bcall)\(\s*['\"]([A-Za-z]+)['\"]", script.source)}
    return found


def test_documented_rule_grants_exactly_what_the_scripts_call() -> None:
    rule, rule_7_2 = documented_rules()
    assert "~repocket:*" in rule and "-@all" in rule and "reset" in rule
    assert not any(arg.startswith(("+@", "~*", "allkeys", "allcommands", "%")) for arg in rule)
    assert granted_commands(rule) == lua_commands() | {"evalsha", "eval"}
    # 7.2+: redis-py's CLIENT SETINFO on connect, nothing more
    assert rule_7_2 == [*rule, "+client|setinfo"]
    checker = [*rule, *CHECKER_GRANTS]
    assert granted_commands(checker) == lua_commands(checker=True) | {"evalsha", "eval"}
    assert "plus `+scan +info`" in (ROOT / "docs" / "ACL.md").read_text("utf-8")


def test_the_checker_needs_its_own_user(fresh: Server) -> None:
    """The application's user runs reindex() but not check(), whose SCAN would list key
    names beyond its pattern: a typed refusal; the documented checker user runs it."""
    fresh.add_user("repocket-check", [*fresh.rule, *CHECKER_GRANTS])
    fresh.connect(user_url(fresh))
    Player.create(name="ann", email="ann@x")
    assert Player.objects.reindex().ok
    with pytest.raises(errors.PermissionDenied, match="Player"):
        Player.objects.check()
    fresh.connect(user_url(fresh, "repocket-check"))
    checked = Player.objects.check()
    assert checked.ok and checked.records == 1 and checked.eviction_policy == "noeviction"


def exercise_every_operation(server: Server) -> None:
    """save/get/filter/order_by/delete/append/bulk_create/get_many/reindex, unique and
    Pointer checks, QuerySet.delete, and a SCRIPT FLUSH (as admin) halfway."""
    ann = Player.create(name="ann", email="ann@x", score=10, bio="chess", log=b"a")
    bob = Player.create(name="bob", email=None, score=7, mentor=ann, joined="2020-01-01T00:00")
    assert ann.append_log(b"b") == 2
    got = Player.objects.get(id=bob.id, pointer_depth=2)
    assert got.mentor.name == "ann" and got.mentor.log == b"ab"
    assert [p.name for p in Player.objects.filter(score__gte=5).order_by("-score")] == \
        ["ann", "bob"]
    assert [p.name for p in Player.objects.filter(name__startswith="b")] == ["bob"]
    assert [p.name for p in Player.objects.all().order_by("-name")] == ["bob", "ann"]
    assert Player.objects.filter(bio="chess").count() == 1  # no index: a scan
    assert Player.objects.filter(joined__isnull=True).count() == 1
    assert Player.objects.filter(mentor=ann).count() == 1
    assert Player.objects.get(email="ann@x") == ann
    with pytest.raises(errors.UniqueViolation):
        Player.create(name="eve", email="ann@x")

    server.admin.script_flush()  # the limited user must reload the scripts itself

    Player.objects.bulk_create([Player(name=f"p{i}", score=i, email=None) for i in range(30)],
                               batch_size=7)
    assert Player.objects.count() == 32
    many = Player.objects.get_many([ann.id, uuid.uuid4(), bob.id])
    assert [p and p.name for p in many] == ["ann", None, "bob"]
    assert sorted(Player.objects.filter(score__lt=3).values_list("name", flat=True)) == \
        ["p0", "p1", "p2"]
    server.admin.script_flush()
    Player.objects.reindex(batch_size=5)
    assert Player.objects.filter(name__startswith="p").delete() == 30
    assert bob.delete() >= 1
    assert Player.objects.get(id=bob.id) is None
    assert Player.objects.count() == 1


def test_the_documented_acl_user_runs_everything(fresh: Server) -> None:
    fresh.connect(user_url(fresh))
    exercise_every_operation(fresh)
    assert kept_connection(configure.get_connection()) is not None  # the lean path
    users = {client["user"] for client in fresh.admin.client_list()}
    assert "repocket" in users
    assert fresh.acl_denials() == []  # not even a refusal a script swallowed
    assert all(key.startswith(b"repocket:security:Player:") for key in fresh.admin.keys("*"))


def test_the_acl_user_on_asyncio_evals_on_first_use(fresh: Server) -> None:
    """The asyncio loop asks the same registry: a named ACL user's first use of a script is
    one EVAL (no SCRIPT LOAD, no INFO, nothing refused), later uses EVALSHA."""
    fresh.connect(user_url(fresh))
    fresh.admin.config_resetstat()
    registry.clear()  # as in a new process (earlier tests ran scripts on this server)

    async def run() -> list[str]:
        ann = await Player.acreate(name="ann", email="ann@x", score=1)
        await Player.acreate(name="bob", email=None, score=2)
        names = [p.name for p in await Player.objects.aget_many([ann.id]) if p]
        await configure.aclose()
        return names

    assert asyncio.run(run()) == ["ann"]
    stats = fresh.admin.info("commandstats")
    assert stats["cmdstat_eval"]["calls"] == 2  # save and get_many: first use, one EVAL each
    assert stats["cmdstat_evalsha"]["calls"] == 1  # the second save: known, no NOSCRIPT
    assert "cmdstat_script|load" not in stats
    assert "cmdstat_info" not in stats
    assert fresh.acl_denials() == []


def test_the_acl_user_cannot_reach_past_its_pattern(fresh: Server) -> None:
    fresh.admin.set("outside", b"admin data")
    fresh.admin.set("session:1", b"token")
    app = redis.Redis.from_url(user_url(fresh))
    configure.connection_pool(client=app)
    Player.create(name="ann")  # the user works...
    refused: list[Callable[[], Any]] = [
        lambda: app.get("outside"),
        lambda: app.set("outside", b"x"),
        lambda: app.delete("session:1"),
        lambda: app.hgetall("session:1"),
        lambda: app.keys("*"),
        lambda: app.scan(),
        lambda: app.flushall(),
        lambda: app.flushdb(),
        lambda: app.config_get("*"),
        lambda: app.script_flush(),
        lambda: app.client_list(),
        lambda: app.execute_command("MONITOR"),
        lambda: app.execute_command("ACL", "SETUSER", "repocket", "+@all"),
        lambda: app.publish("channel", b"x"),
    ]
    for call in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    # ...and a script it runs itself runs with its permissions, not the server's
    # (Redis 7.0 says "can't access/run", 7.2+ and Valkey "No permissions to access/run")
    refused_by_acl = r"(?i)(can't|no permissions to) "
    with pytest.raises(redis.exceptions.ResponseError, match=refused_by_acl + "access"):
        app.eval("return redis.call('SET', 'outside', 'pwned')", 0)
    with pytest.raises(redis.exceptions.ResponseError, match=refused_by_acl + "run"):
        app.eval("return redis.call('FLUSHALL')", 0)
    assert fresh.admin.get("outside") == b"admin data"
    assert fresh.admin.get("session:1") == b"token"


def test_another_database_needs_select(fresh: Server) -> None:
    """docs/ACL.md: add +select for a database other than 0."""
    fresh.connect(user_url(fresh).replace("/0", "/2"))
    with pytest.raises(errors.RepocketError, match="permissions to run the 'select'") as caught:
        Player.create(name="ann")
    assert isinstance(caught.value.__cause__, redis.exceptions.NoPermissionError)
    fresh.add_user("selecting", [*fresh.rule, "+select"])
    fresh.connect(user_url(fresh, "selecting").replace("/0", "/2"))
    ann = Player.create(name="ann")
    assert Player.objects.get(id=ann.id).name == "ann"
    assert fresh.admin.exists(Player._meta.record_key(ann.id)) == 0  # it is in db 2


def test_eval_is_what_lets_the_user_recover_from_script_flush(fresh: Server) -> None:
    rule = [arg for arg in fresh.rule if arg != "+eval"]
    fresh.add_user("noeval", rule)
    fresh.connect(user_url(fresh, "noeval"))
    with pytest.raises(errors.PermissionDenied) as caught:
        Player.create(name="ann")
    assert "eval" in str(caught.value.__cause__)


def test_a_missing_grant_is_reported_as_a_permission_error(fresh: Server) -> None:
    """A rule without HGETALL: reads fail, and the error must say why (not blame the data).
    Fails today: lua/_hydrate.lua's read_error turns every pcall error into 'wrongtype'."""
    fresh.connect(user_url(fresh))
    ann = Player.create(name="ann")
    fresh.add_user("nohgetall", [arg for arg in fresh.rule if arg != "+hgetall"])
    fresh.connect(user_url(fresh, "nohgetall"))
    with pytest.raises(errors.PermissionDenied) as caught:  # whatever the server's wording
        Player.objects.get(id=ann.id)
    assert "Player" in str(caught.value)


# -- 3. AUTH, over plain TCP and TLS --------------------------------------------------------------
@pytest.mark.parametrize("transport", ["plain", "tls"])
def test_username_and_password(transport: str, request: pytest.FixtureRequest) -> None:
    server: Server = request.getfixturevalue("fresh" if transport == "plain" else "fresh_tls")
    server.connect(username="repocket", password=PASSWORD)
    ann = Player.create(name="ann", score=3)
    assert Player.objects.get(id=ann.id).name == "ann"
    kept = kept_connection(configure.get_connection())  # the lean path: the pool's auth
    assert kept is not None and kept.username == "repocket"
    assert "repocket" in {client["user"] for client in server.admin.client_list()}
    server.connect(user_url(server))  # credentials in the URL
    assert [p.name for p in Player.objects.filter(score=3)] == ["ann"]

    for credentials in ({"username": "repocket", "password": "not-the-password-42"},
                        {"username": "nobody", "password": PASSWORD},
                        {}):  # the default user needs a password too
        server.connect(**credentials)
        with pytest.raises(errors.RepocketConnectionError) as caught:
            Player.objects.get(id=ann.id)
        assert isinstance(caught.value.__cause__, redis.exceptions.AuthenticationError)
        assert PASSWORD not in str(caught.value)
        assert "not-the-password-42" not in str(caught.value)


# -- 4. TLS ---------------------------------------------------------------------------------------
def test_tls_save_get_filter(fresh_tls: Server) -> None:
    assert fresh_tls.url.startswith("rediss://")
    fresh_tls.connect(user_url(fresh_tls))
    ann = Player.create(name="ann", score=3, log=b"over tls")
    assert Player.objects.get(id=ann.id).log == b"over tls"
    assert [p.name for p in Player.objects.filter(score__gte=3, name="ann")] == ["ann"]
    assert configure.get_connection().connection_pool.connection_class is redis.SSLConnection
    kept = kept_connection(configure.get_connection())  # the lean path, over TLS
    assert isinstance(kept, redis.SSLConnection)
    assert isinstance(kept._sock, ssl.SSLSocket)


def test_tls_without_the_ca_or_without_tls_is_refused(fresh_tls: Server) -> None:
    configure.connection_pool(url=user_url(fresh_tls), socket_connect_timeout=5,
                              socket_timeout=5)  # system CAs only: ours is unknown
    with pytest.raises(errors.RepocketConnectionError) as caught:
        Player.objects.get(id=uuid.uuid4())
    assert isinstance(caught.value, redis.exceptions.ConnectionError)
    assert "certificate verify failed" in str(caught.value)

    plain_url = user_url(fresh_tls).replace("rediss://", "redis://")
    configure.connection_pool(url=plain_url, socket_connect_timeout=2, socket_timeout=2)
    with pytest.raises(errors.RepocketConnectionError):
        Player.objects.get(id=uuid.uuid4())


# -- 5. bounded server-side work ------------------------------------------------------------------
def test_pointer_cycle_returns_each_record_once(client: redis.Redis) -> None:
    a = Ring.create(label="a")
    b = Ring.create(label="b", next=a)
    c = Ring.create(label="c", next=b)
    a.next = c
    a.save()

    def reads() -> int:
        stats = client.info("commandstats")
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in
                   ("hgetall", "hmget"))

    before = reads()
    loaded = Ring.objects.get(id=a.id, pointer_depth=16)
    assert reads() - before == 3
    assert [loaded.label, loaded.next.label, loaded.next.next.label] == ["a", "c", "b"]
    assert loaded.next.next.next is loaded


def test_deep_chain_stops_at_pointer_depth(client: redis.Redis) -> None:
    chain = [Ring.create(label="0")]
    for i in range(1, 40):
        chain.append(Ring.create(label=str(i), next=chain[-1]))
    stats = client.info("commandstats")
    before = stats["cmdstat_hgetall"]["calls"]
    head = Ring.objects.get(id=chain[-1].id, pointer_depth=16)
    assert client.info("commandstats")["cmdstat_hgetall"]["calls"] - before == 17
    node = head
    for _ in range(16):
        node = node.next
    assert client.info("commandstats")["cmdstat_hgetall"]["calls"] - before == 17
    assert node.label == "23" and node.next.label == "22"  # loaded lazily, on access


@pytest.mark.parametrize("depth", [17, 100, 10**9, -1, "3", 1.5, True])
def test_pointer_depth_above_16_is_refused(client: redis.Redis, depth: Any) -> None:
    ring = Ring.create(label="x")
    attempts: list[Callable[[], Any]] = [
        lambda: Ring.objects.get(id=ring.id, pointer_depth=depth),
        lambda: list(Ring.objects.filter(label="x", pointer_depth=depth)),
        lambda: list(Ring.objects.all(pointer_depth=depth)),
        lambda: Ring.objects.get_many([ring.id], pointer_depth=depth),
    ]
    for attempt in attempts:
        with pytest.raises(errors.InvalidQuery):
            attempt()


@pytest.fixture(scope="module")
def big() -> Iterator[redis.Redis]:
    """20,000 records on a private server; 20 of them have note='rare'."""
    with RedisServer() as server:
        admin = server.client()
        configure.connection_pool(client=admin)
        Item.objects.bulk_create(
            [Item(kind="k", note="rare" if i % 1000 == 0 else "common", n=i)
             for i in range(20_000)], batch_size=500)
        configure.reset()
        yield admin
        admin.close()


def bounded_calls(admin: redis.Redis, run: Callable[[], Any]) -> tuple[Any, list[ScriptCall]]:
    """``run()`` on the big server, with the work of each script call it made."""
    configure.connection_pool(client=admin)
    try:
        return script_calls(admin, run)
    finally:
        configure.reset()


def assert_each_call_bounded(calls: list[ScriptCall], name: str) -> None:
    busiest = max(calls, key=lambda call: call.work)
    commands = collections.Counter(args[0].decode().upper() for args in busiest.commands)
    assert busiest.work <= WORK_PER_CALL, (
        f"{name}: one script call read {busiest.work} elements: {commands.most_common(5)}")
    # a LIMIT offset walks its skiplist member by member: paging by offset is quadratic
    walked = max(call.skipped for call in calls)
    assert walked <= WORK_PER_CALL, f"{name}: one script call stepped over {walked} members"


@pytest.mark.parametrize("name, run, expected", [
    ("filter", lambda: len(Item.objects.filter(note="rare")), 20),
    ("count", lambda: Item.objects.filter(note="common").count(), 19_980),
    ("exists", lambda: Item.objects.filter(note="none").exists(), False),
    ("ordered slice", lambda: [i.n for i in Item.objects.filter(kind="k").order_by("note", "n")
                               [:3]], [1, 2, 3]),
    ("ids", lambda: len(Item.objects.exclude(note="common").ids()), 20),
])
def test_unindexed_scan_pages_with_bounded_work_per_call(
        big: redis.Redis, name: str, run: Callable[[], Any], expected: Any) -> None:
    result, calls = bounded_calls(big, run)
    assert result == expected
    assert len(calls) > 5, f"{name}: a scan of 20,000 records in {len(calls)} call(s) did not page"
    assert_each_call_bounded(calls, name)


def test_large_result_is_hydrated_in_bounded_calls(big: redis.Redis) -> None:
    """A filter matching 19,980 records: its scan pages, and so must the loading of records."""
    result, calls = bounded_calls(big, lambda: len(Item.objects.filter(note="common")))
    assert result == 19_980
    assert_each_call_bounded(calls, "filter loading 19,980 records")
    loaded = sum(1 for call in calls for args in call.commands
                 if args[0].upper() in (b"HGETALL", b"HMGET") and b":Item:" in args[1])
    assert loaded >= 19_980  # every record was read, in calls that each stayed bounded


# -- 6. keys stay under repocket:<namespace>:<Class>: --------------------------------------------
HOSTILE = ["*", "?", "[a-z]", ":", "::", "{tag}", "}{", "\n", "a\r\nSET outside x\r\n", "\x00",
           "..", "../ids", "ids", "idx:name", "repocket:keys:Other:ids", "repocket:*",
           "970773fa-4de1-11e5-86f4-6c4008a70392:field:log", " " * 3, "é" * 50, "x" * 10_000]


def test_hostile_inputs_never_leave_the_model_prefix(fresh: Server) -> None:
    """Run as a user that may touch only ``repocket:keys:Victim:*``: the server itself refuses
    any other key, so every operation here proves it stayed inside."""
    prefix = Victim._meta.prefix + ":"
    assert prefix == "repocket:keys:Victim:"
    fresh.add_user("victim", [arg.replace("~repocket:*", f"~{prefix}*")
                              for arg in fresh.rule])
    decoys = {"repocket:keys:Victim": b"1", "repocket:keys:VictimX:ids": b"2",
              "repocket:keys:Other:ids": b"3", "outside": b"4", "repocket:keys:Victim*": b"5"}
    fresh.admin.mset(decoys)
    fresh.connect(user_url(fresh, "victim"))

    records = [Victim.create(name=value, tag=value, note=value, log=value.encode())
               for value in HOSTILE]
    first = records[0]
    first.next = records[1]
    first.save()
    for value in HOSTILE:
        assert len(Victim.objects.filter(name=value)) == 1
        assert Victim.objects.filter(note=value).count() == 1  # scan, compares stored values
        assert Victim.objects.get(tag=value).note == value
        assert Victim.objects.filter(name__startswith=value).count() >= 1
        assert Victim.objects.filter(name__in=[value, "zzz"]).exists()
        for call in (lambda v=value: Victim(id=v),
                     lambda v=value: Victim.objects.get(id=v),
                     lambda v=value: Victim.objects.get_many([v]),
                     lambda v=value: Victim.objects.filter(id=v).count(),
                     lambda v=value: Victim.objects.filter(next=v).count()):
            with pytest.raises(errors.ValidationError, match="UUID"):  # InvalidId for ids
                call()
    assert Victim.objects.get(id=first.id, pointer_depth=16).next.name == HOSTILE[1]
    records[2].append_log(b"*:{\n")
    assert Victim.objects.filter(name__startswith="").count() == len(HOSTILE)
    assert [r.name for r in Victim.objects.all().order_by("name")] == sorted(HOSTILE)
    Victim.objects.reindex(batch_size=7)
    for record in records[::2]:
        record.delete()
    assert Victim.objects.filter(note__in=HOSTILE).delete() == len(HOSTILE) // 2

    assert fresh.acl_denials() == []
    assert {k: fresh.admin.get(k) for k in decoys} == decoys
    assert all(key.startswith(prefix.encode()) or key.decode() in decoys
               for key in fresh.admin.keys("*"))


def test_forged_pointers_and_index_entries_never_name_other_keys(fresh: Server) -> None:
    """Stored data an attacker edited (a Pointer holding a key name, index members with
    ids that are not UUIDs) is refused or skipped, never followed outside the prefix."""
    prefix = Victim._meta.prefix + ":"
    fresh.add_user("victim", [arg.replace("~repocket:*", f"~{prefix}*")
                              for arg in fresh.rule])
    fresh.admin.set("outside", b"secret")
    fresh.connect(user_url(fresh, "victim"))
    a = Victim.create(name="a", tag=None)
    b = Victim.create(name="b", tag=None, next=a)
    fresh.admin.hset(Victim._meta.record_key(b.id), "next",
                     envelope(type="Pointer", value="../../outside"))
    fresh.admin.sadd(Victim._meta.ids_key, "../../outside", "*")
    fresh.admin.zadd(f"{prefix}idx:name", {"a\x00\x00../../outside": 0})
    with pytest.raises(errors.StoredDataError):
        Victim.objects.get(id=b.id)
    fresh.admin.hset(Victim._meta.record_key(b.id), "next", envelope(value=str(a.id)))
    # ids that are not UUIDs are skipped: never turned into key names
    assert [record.name for record in Victim.objects.filter(name="a")] == ["a"]
    assert sorted(record.name for record in Victim.objects.filter(note="")) == ["a", "b"]
    assert sorted(record.name for record in Victim.objects.all()) == ["a", "b"]
    assert Victim.objects.get(id=b.id, pointer_depth=16).next.name == "a"
    assert fresh.acl_denials() == []
    assert fresh.admin.get("outside") == b"secret"


@pytest.mark.parametrize("field_name", ["a:null", "x*", "{tag}", "a\nb", "log:field:x"])
def test_field_names_with_key_syntax_are_refused(field_name: str) -> None:
    """Field names become key segments (idx:<name>, uniq:<name>, field:<name>): a name holding
    ':' can collide with another field's keys (``a:null`` is field ``a``'s null set).
    Fails today: model.py _check_definition validates namespace and class, not field names."""
    body = {"Meta": type("Meta", (), {"namespace": "security"}),
            "a": attributes.Unicode(index=True, null=True),
            field_name: attributes.Unicode(index=True)}
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        type("Colliding", (ActiveRecord,), body)
