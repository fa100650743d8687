"""Lua-level tests of the script library (repocket/lua/lib/*.lua), run on the real test
server through EVAL of a small harness that includes the libraries: the same Lua 5.1
(with cjson and cmsgpack) that runs repocket's scripts."""

from __future__ import annotations

import decimal
import math
import random
import re
from importlib import resources
from typing import Any

import pytest
import redis

from repocket.core.lua import expand
from repocket.core.luagen import LIBRARIES

HARNESS = "\n".join(f"-- @include {name}" for name in LIBRARIES) + "\n"


def lua(client: redis.Redis, body: str, keys: tuple[str, ...] = (), *args: Any) -> Any:
    """Runs ``body`` after the libraries; its return value comes back as Redis replies do."""
    return client.eval(expand(HARNESS + body), len(keys), *keys, *args)


def library_sources() -> dict[str, str]:
    folder = resources.files("repocket") / "lua" / "lib"
    return {path.name: path.read_text("utf-8") for path in folder.iterdir()
            if path.name.endswith(".lua")}


def test_every_library_is_pure_definitions() -> None:
    """No code runs at include time and nothing reads ARGV or KEYS: top-level lines only
    define local functions and constants."""
    sources = library_sources()
    assert {f"{name}.lua" for name in (lib.split("/")[1] for lib in LIBRARIES)} <= set(sources)
    for name, text in sources.items():
        code = "\n".join(line.split("--")[0] for line in text.splitlines())
        assert "ARGV" not in code and "KEYS" not in code, name
        for line in text.splitlines():
            if line and not line.startswith((" ", "--", "end", "}")):
                assert re.match(r"local (function \w+\(|[A-Z0-9_]+ = )", line), (name, line)


def test_including_the_libraries_runs_no_command(client: redis.Redis) -> None:
    before = client.info("stats")["total_commands_processed"]
    assert lua(client, "return 'ok'") == b"ok"
    assert client.info("stats")["total_commands_processed"] == before + 2  # INFO + EVAL


@pytest.mark.parametrize("raw, is_envelope, expected", [
    ('{"type": "Unicode", "value": "abc", "module": "m"}', True, b"abc"),
    ('{"value": "/w==", "encoding": "base64"}', True, b"\xff"),
    ("not json", True, False),
    ('{"value": 5}', True, False),
    ("as it is", False, b"as it is"),
])
def test_canonical(client: redis.Redis, raw: str, is_envelope: bool, expected: Any) -> None:
    result = lua(client, "return {canonical(ARGV[1], ARGV[2] == '1')}", (), raw,
                 "1" if is_envelope else "0")
    assert result == ([expected] if expected is not False else [None])


@pytest.mark.parametrize("family, value, expected", [
    ("exact", "1.50", b"1.5"), ("exact", "-0.000", b"0"), ("exact", "1E+3", b"1000"),
    ("float", "-0.0", b"0"), ("float", "1.5", b"1.5"),
    ("datetime", "1970-01-01T01:00:00+01:00", b"0.000000"),
    ("datetime", "2020-01-01T00:00:00.5", b"1577836800.500000"),
    ("text", "a\0b", b"a\0b"),
])
def test_normal_form(client: redis.Redis, family: str, value: str, expected: bytes) -> None:
    assert lua(client, "return normal_form(ARGV[1], ARGV[2])", (), family, value) == expected


@pytest.mark.parametrize("family, a, b, expected", [
    ("exact", "10", "9", 1), ("exact", "-1.5", "-1.50", 0), ("exact", "0.1", "0.10001", -1),
    ("exact", "123456789012345678901234567890", "123456789012345678901234567891", -1),
    ("float", "1e300", "-1e300", 1),
    ("datetime", "2020-01-01T00:00:00+01:00", "2019-12-31T23:00:00", 0),
    ("text", "a", "ab", -1), ("text", "\xff", "a", 1),
    ("json", '{"a": [1, 2]}', '{"a":[1,2]}', 0), ("json", "[]", "{}", 1),
])
def test_compare(client: redis.Redis, family: str, a: str, b: str, expected: int) -> None:
    assert lua(client, "return compare(ARGV[1], ARGV[2], ARGV[3])", (), family, a, b) == expected


def test_scores_and_lex_members(client: redis.Redis) -> None:
    body = """return {format_score(score_of('exact', '-2.5')),
                      format_score(score_of('datetime', '1970-01-01T00:00:01.000002')),
                      lex_member('a\\0b', 'ID'), lex_member_value(ARGV[1]),
                      lex_member_id(ARGV[1])}"""
    member = b"x\0\1y\0\0" + b"0" * 36
    assert lua(client, body, (), member) == [b"-2.5", b"1000002", b"a\0\1b\0\0ID", b"x\0y",
                                             b"0" * 36]


def test_unique_field(client: redis.Redis) -> None:
    body = """return {unique_field({'exact'}, {'1.50'}),
                      unique_field({'text', 'exact'}, {'a'}) or false,
                      cmsgpack.unpack(unique_field({'text', 'float'}, {'a', '-0.0'}))}"""
    assert lua(client, body) == [b"1.5", None, [b"a", b"0"]]


def test_pointer_id(client: redis.Redis) -> None:
    uid = "970773fa-4de1-11e5-86f4-6c4008a70392"
    body = """return {pointer_id(ARGV[1], false), pointer_id(ARGV[2], true),
                      pointer_id('repocket:*', false) or false,
                      pointer_id('{"value": 3}', true) or false}"""
    envelope = f'{{"type": "Pointer", "value": "{uid}", "module": "m"}}'
    assert lua(client, body, (), uid, envelope) == [uid.encode(), uid.encode(), None, None]


def _envelope_samples() -> list[bytes]:
    """Envelopes of the exact written shape around awkward bytes (quotes, backslashes,
    escapes, control characters, NUL, bytes that are not UTF-8, a UUID), and near misses
    (an extra key, other spacing, a trailing byte, base64): a fast path may only take
    what it reads exactly as cjson.decode does."""
    rng = random.Random(8)
    alphabet = [b'"', b"\\", b"\\u0041", b"\\n", b"\0", b"\x01", b"\x7f", b"\xff", b"a",
                b"-", b"}", b"{", b" ", b"\xc3\xa9", b"970773fa-4de1-11e5-86f4-6c4008a70392"]
    middles = [b"", b"plain", b"970773fa-4de1-11e5-86f4-6c4008a70392",
               *(b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
                 for _ in range(300))]
    shapes = [b'{"type": "Unicode", "value": "%s", "module": "repocket.attributes"}',
              b'{"type": "Po\\"inter", "value": "%s", "module": "m"}',
              b'{"type": "T", "value": "%s", "module": "m", "encoding": "base64"}',
              b'{"type":"T", "value": "%s", "module": "m"}',
              b'{"type": "T", "value": "%s", "module": "m"} ']
    return [shape.replace(b"%s", middle) for shape in shapes for middle in middles]


def test_envelope_fast_paths_read_as_cjson_does(client: redis.Redis) -> None:
    """canonical() and pointer_id() take the exact envelope repocket writes without a
    JSON decode; on any input they answer what the decode alone answers."""
    body = """
    local function by_decode(raw)
      local ok, envelope = pcall(cjson.decode, raw)
      if not ok or type(envelope) ~= 'table' or type(envelope.value) ~= 'string' then
        return false
      end
      if envelope.encoding == 'base64' then return base64_decode(envelope.value) end
      return envelope.value
    end
    local function id_by_decode(raw)  -- a Pointer's value is taken as stored (no base64)
      local ok, envelope = pcall(cjson.decode, raw)
      if not ok or type(envelope) ~= 'table' or type(envelope.value) ~= 'string' then
        return nil
      end
      return string.match(envelope.value, UUID_PATTERN) and envelope.value or nil
    end
    local wrong = {}
    for i, raw in ipairs(ARGV) do
      if canonical(raw, true) ~= by_decode(raw) then wrong[#wrong + 1] = 'canonical ' .. i end
      if pointer_id(raw, true) ~= id_by_decode(raw) then wrong[#wrong + 1] = 'pointer_id ' .. i end
    end
    return wrong"""
    samples = _envelope_samples()
    assert lua(client, body, (), *samples) == []


def test_move_index_entry(client: redis.Redis) -> None:
    keys = ("t:score", "t:null", "t:lex")
    lua(client, """move_index_entry('score', 'exact', KEYS[1], KEYS[2], 'id1', nil, '5', false)
                   move_index_entry('lex', 'text', KEYS[3], nil, 'id1', nil, 'a', false)
                   return 1""", keys)
    assert client.zrange("t:score", 0, -1, withscores=True) == [(b"id1", 5.0)]
    assert client.zrange("t:lex", 0, -1) == [b"a\0\0id1"]
    lua(client, """move_index_entry('score', 'exact', KEYS[1], KEYS[2], 'id1', '5', nil, false)
                   move_index_entry('lex', 'text', KEYS[3], nil, 'id1', 'a', 'b', false)
                   return 1""", keys)
    assert client.zcard("t:score") == 0 and client.smembers("t:null") == {b"id1"}
    assert client.zrange("t:lex", 0, -1) == [b"b\0\0id1"]
    lua(client, """move_index_entry('score', 'exact', KEYS[1], KEYS[2], 'id1', nil, nil, true)
                   move_index_entry('lex', 'text', KEYS[3], nil, 'id1', 'b', nil, true)
                   return 1""", keys)
    assert client.exists(*keys) == 0


def test_unique_owner_and_move_claim(client: redis.Redis) -> None:
    client.hset("t:uniq", "v", "other")
    body = """local claimed = {}
              local a = unique_owner(KEYS[1], 'v', 'me', claimed)
              local b = unique_owner(KEYS[1], 'w', 'me', claimed)
              local c = unique_owner(KEYS[1], 'w', 'you', claimed)
              move_claim(KEYS[1], 'me', 'x', 'w', false)
              return {a, b or false, c}"""
    assert lua(client, body, ("t:uniq",)) == [b"other", None, b"me"]
    assert client.hgetall("t:uniq") == {b"v": b"other", b"w": b"me"}
    lua(client, "move_claim(KEYS[1], 'me', 'v', nil, false) return 1", ("t:uniq",))
    assert client.hget("t:uniq", "v") == b"other"  # another record's claim is not released
    client.delete("t:uniq")
    client.rpush("t:uniq", "x")
    with pytest.raises(redis.ResponseError, match='"code":"wrongtype"'):
        lua(client, "local _, err = unique_owner(KEYS[1], 'v', 'me', {}) return err",
            ("t:uniq",))


def test_type_checks(client: redis.Redis) -> None:
    client.set("t:string", "x")
    assert lua(client, "return check_type(KEYS[1], 'string') or 'fine'", ("t:string",)) == b"fine"
    with pytest.raises(redis.ResponseError, match='"expected":"hash"'):
        lua(client, "return check_type(KEYS[1], 'hash')", ("t:string",))
    with pytest.raises(redis.ResponseError, match='"actual":"string"'):
        lua(client, """local reply = redis.pcall('HGET', KEYS[1], 'f')
                       return pcall_failure(KEYS[1], 'hash', reply)""", ("t:string",))


# -- lib/arith: exact arithmetic for update() and F ------------------------------------------
ARITH_BATCH = """
local results = {}
for i = 1, #ARGV, 4 do
  local value, why = evaluate(ARGV[i], {ARGV[i + 1], {'n', ARGV[i + 2]}, {'n', ARGV[i + 3]}},
                              {}, 0)
  results[#results + 1] = value or ('error: ' .. tostring(why))
end
return results
"""


def arith(client: redis.Redis, cases: list[tuple[str, str, str, str]]) -> list[str]:
    args = [part for case in cases for part in case]
    return [reply.decode() for reply in lua(client, ARITH_BATCH, (), *args)]


def _random_int(rng: random.Random) -> int:
    digits = rng.choice([1, 2, 3, 7, 8, 14, 15, 16, 17, 30, 60, 200])
    value = rng.randrange(10 ** digits)
    return -value if rng.random() < 0.5 else value


def test_integer_arithmetic_is_exact(client: redis.Redis) -> None:
    """Random integers of 1 to 200 digits (limb edges included) against Python."""
    rng = random.Random(12)
    cases, expected = [], []
    operations = {"+": lambda a, b: a + b, "-": lambda a, b: a - b,
                  "*": lambda a, b: a * b, "/": lambda a, b: a // b}
    for _ in range(400):
        a, b = _random_int(rng), _random_int(rng)
        op = rng.choice(list(operations))
        if op == "/" and b == 0:
            b = 7
        cases.append(("int", op, str(a), str(b)))
        expected.append(str(operations[op](a, b)))
    # limb edges, the edge of the double fast path (15 digits), floor division signs
    for a, b in [(9999999, 1), (10**14 - 1, 10**14 - 1), (-(10**7), 10**7), (0, -5),
                 (-7, 2), (7, -2), (-6, 3), (-7, -2), (10**21, 10**7), (10**15 - 1, 1),
                 (-(10**15 - 1), -(10**15 - 1)), (999999999999999, 999999999999998),
                 (31622776, 31622777), (10**15, 3), (2**53 - 1, 2), (-(2**52), 3)]:
        for op, fn in operations.items():
            cases.append(("int", op, str(a), str(b)))
            expected.append(str(fn(a, b)))
    assert arith(client, cases) == expected


def test_integer_errors(client: redis.Redis) -> None:
    assert arith(client, [("int", "/", "5", "0"), ("int", "+", "1.5", "1"),
                          ("int", "+", "", "1")]) == [
        "error: division by zero", "error: not an integer", "error: not an integer"]
    limited = lua(client, "local v, why = int_arith('*', '99999', '99999', 8) return why")
    assert limited == b"too many digits"
    long_division = "local v, why = int_arith('/', ARGV[1], ARGV[2], 0) return v or why"
    assert lua(client, long_division, (), "7" * 201, "12345678") == (
        b"too many digits for an exact division")
    assert lua(client, long_division, (), "7" * 200, "12345678") == str(
        int("7" * 200) // 12345678).encode()
    assert lua(client, long_division, (), "7" * 4300, "-1234567") == str(
        int("7" * 4300) // -1234567).encode()


def _random_decimal(rng: random.Random) -> decimal.Decimal:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([1, 3, 9, 20, 40])))
    exponent = rng.choice([-30, -8, -6, -5, -2, -1, 0, 0, 1, 3, 8])
    sign = rng.choice([0, 1])
    return decimal.Decimal((sign, tuple(int(d) for d in digits), exponent))


def test_decimal_arithmetic_is_exact_and_formatted_as_python(client: redis.Redis) -> None:
    """Random Decimals (trailing zeros, negative zero, exponents) against Python's exact
    result, written as str(Decimal) writes it."""
    rng = random.Random(34)
    cases, expected = [], []
    operations = {"+": lambda a, b: a + b, "-": lambda a, b: a - b,
                  "*": lambda a, b: a * b}
    with decimal.localcontext(decimal.Context(prec=1000)):
        for _ in range(400):
            a, b = _random_decimal(rng), _random_decimal(rng)
            op = rng.choice(list(operations))
            cases.append(("dec", op, str(a), str(b)))
            expected.append(str(operations[op](a, b)))
        for a, b in [("-0", "0"), ("-0", "-0"), ("0.00", "-0.0"), ("-1", "1"), ("1E+3", "1"),
                     ("1.10", "2.205"), ("1E-7", "1"), ("0.000001", "0"), ("5", "-0.0")]:
            for op, fn in operations.items():
                cases.append(("dec", op, a, b))
                expected.append(str(fn(decimal.Decimal(a), decimal.Decimal(b))))
    assert arith(client, cases) == expected
    assert arith(client, [("dec", "/", "1", "3"), ("dec", "+", "abc", "1")]) == [
        "error: Decimal division is not exact", "error: not a decimal"]


def test_float_results_are_pythons_repr(client: redis.Redis) -> None:
    rng = random.Random(56)
    values = [0.1, 0.2, 1e16, 1e15, 1e-4, 1e-5, 5e-324, 1.7976931348623157e308, 2.0**53,
              123456.789, -0.0, 0.0, 1 / 3, float("inf"), 2.0**-1074 * 3]
    values += [rng.uniform(-1e6, 1e6) for _ in range(100)]
    values += [math.ldexp(rng.random(), rng.randrange(-1070, 1020)) for _ in range(200)]
    cases, expected = [], []
    operations = {"+": lambda a, b: a + b, "-": lambda a, b: a - b,
                  "*": lambda a, b: a * b, "/": lambda a, b: a / b}
    for i in range(300):
        a, b = rng.choice(values), rng.choice(values)
        op = list(operations)[i % 4]
        if op == "/" and b == 0:
            continue
        cases.append(("float", op, repr(a), repr(b)))
        expected.append(repr(operations[op](a, b)))
    assert arith(client, cases) == expected
    assert arith(client, [("float", "/", "1.0", "0.0"), ("float", "+", "inf", "-inf"),
                          ("float", "+", "1" + "0" * 400, "1.0")]) == [
        "error: division by zero", "nan", "error: not a float"]


def test_evaluate_reads_fields_and_propagates_none(client: redis.Redis) -> None:
    body = """
    local values = {a = '7', b = '-2', gone = false}
    local tree = {'*', {'+', {'f', 'a'}, {'n', '1'}}, {'f', 'b'}}
    local r1 = evaluate('int', tree, values, 0)
    local r2, why2 = evaluate('int', {'+', {'f', 'none'}, {'n', '1'}}, values, 0)
    local r3, why3 = evaluate('int', {'+', {'f', 'gone'}, {'n', '1'}}, values, 0)
    return {r1, tostring(r2), tostring(why2), tostring(r3), why3}
    """
    assert lua(client, body) == [b"-16", b"nil", b"nil", b"nil",
                                 b"the stored value of gone is unreadable"]


def test_expression_value_writes_a_lone_operand_as_the_field_does(client: redis.Redis) -> None:
    body = """
    local values = {n = '5', foreign = '007', d = '-0', bad = 'x'}
    local out = {}
    for _, case in ipairs({{'float', {'f', 'n'}}, {'int', {'f', 'foreign'}},
                           {'dec', {'f', 'd'}}, {'dec', {'f', 'foreign'}},
                           {'float', {'n', '2.50'}}, {'int', {'f', 'bad'}}}) do
      local value, why = expression_value(case[1], case[2], values, 0)
      out[#out + 1] = value or why
    end
    return out
    """
    assert lua(client, body) == [b"5.0", b"7", b"-0", b"7", b"2.5", b"not an integer"]


def test_arithmetic_counts_its_work(client: redis.Redis) -> None:
    """ARITH_WORK grows with the digits worked (the update script bounds a call by it)."""
    body = """
    local before = ARITH_WORK.steps
    int_arith('+', '1', '2', 0)
    local small = ARITH_WORK.steps - before
    int_arith('*', ARGV[1], ARGV[1], 0)
    local big = ARITH_WORK.steps - before - small
    return {small, big}
    """
    small, big = lua(client, body, (), "9" * 700)
    assert small == 1 and big >= 100 * 100


def test_expiry_state_and_deadlines(client: redis.Redis) -> None:
    key = "repocket:lib:Expiry:ttl"
    # no deadline and none set: nil, after one ZRANGE (no clock read)
    client.config_resetstat()
    assert lua(client, "return {expiry_state(KEYS[1], false) == nil}", (key,)) == [1]
    assert "cmdstat_time" not in client.info("commandstats")
    now = int(lua(client, "return clock_ms()"))
    server = client.time()
    assert abs(now - (server[0] * 1000 + server[1] // 1000)) < 60_000  # the server's clock, ms
    client.zadd(key, {"past-a": now - 10, "past-b": now - 5, "future": now + 600_000})
    reply = lua(client, """local state = expiry_state(KEYS[1], false)
return {state.any and 1 or 0, state.due and 1 or 0, due_ids(state, 1), due_ids(state, 10),
        is_expired(state, 'past-b') and 1 or 0, is_expired(state, 'future') and 1 or 0,
        is_expired(state, 'unknown') and 1 or 0, deadline_text(deadline_of(state, 'future')),
        deadline_of(state, 'unknown') == nil and 1 or 0}""", (key,))
    assert reply == [1, 1, [b"past-a"], [b"past-a", b"past-b"], 1, 0, 0,
                     str(now + 600_000).encode(), 1]
    client.zrem(key, "past-a", "past-b")
    assert lua(client, """local state = expiry_state(KEYS[1], false)
return {state.any and 1 or 0, state.due and 1 or 0, #due_ids(state, 10)}""", (key,)) == [1, 0, 0]
    client.delete(key)
    client.rpush(key, "x")
    with pytest.raises(redis.ResponseError, match="wrongtype"):
        lua(client, "local state, err = expiry_state(KEYS[1], true)\nreturn err", (key,))
