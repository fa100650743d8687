"""Lua-level tests of query.lua's pure parts (lua/query/_conditions.lua, _ordering.lua),
run by the server's own Lua: membership keys agree with ``compare``, runs of one score
sort by value."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from repocket.core.lua import expand

LIBRARIES = ("_values", "query/_conditions", "query/_ordering")


def lua(client: redis.Redis, body: str, *args: Any) -> Any:
    source = expand("".join(f"-- @include {name}\n" for name in LIBRARIES)) + "\n" + body
    return client.eval(source, 0, *args)


EQUAL = [  # (family, a, b): equal values, spelled differently
    ("exact", "1.50", "1.5"), ("exact", "-0", "0"), ("exact", "0E-10", "0"),
    ("exact", "100", "1E+2"), ("exact", "-7", "-7.000"),
    ("exact", "1" + "0" * 40, "1E+40"),
    ("float", "-0.0", "0"), ("float", "1e3", "1000.0"),
    ("datetime", "2020-01-01T10:00:00+02:00", "2020-01-01T08:00:00.000000"),
    ("json", '{"a": 1, "b": [1, 2]}', '{"b":[1,2.0],"a":1}'),
    ("text", "x", "x"),
]
UNEQUAL = [
    ("exact", "1.5", "1.50000000000000000001"), ("exact", "-1", "1"), ("float", "1", "1.5"),
    ("json", "[]", "{}"), ("json", '["1"]', "[1]"), ("json", '{"1": 2}', "[2]"),
    ("text", "x", "x\x00"), ("datetime", "2020-01-01T00:00:00", "2020-01-01T00:00:00.000001"),
]


@pytest.mark.parametrize(("family", "a", "b"), EQUAL + UNEQUAL)
def test_membership_keys_agree_with_compare(client: redis.Redis, family: str, a: str,
                                            b: str) -> None:
    same_key, compared = lua(client, """
        local family, a, b = ARGV[1], ARGV[2], ARGV[3]
        return {match_key(family, a) == match_key(family, b) and 1 or 0, compare(family, a, b)}
    """, family, a, b)
    assert same_key == (1 if (family, a, b) in EQUAL else 0)
    assert (compared == 0) == bool(same_key)


def test_in_tests_membership_and_nan_matches_nothing(client: redis.Redis) -> None:
    found = lua(client, """
        local set = membership_set('float', {'1', 'nan', '-0'})
        local out = {}
        for _, v in ipairs({'1.0', '0', 'nan', '2'}) do
          out[#out + 1] = satisfies(v, 'float', 'in', {}, set) and 1 or 0
        end
        return out
    """)
    assert found == [1, 1, 0, 0]


def test_runs_of_one_score_sort_by_value_then_id(client: redis.Redis) -> None:
    ids = lua(client, """
        local rows = {
          {'b', false, 'null'}, {'a', false, 'null'},
          {'d', '0.0', '-0'}, {'c', '-0', '0'}, {'e', '1E-400', '0'},
          {'f', '5', '5'},
          {'h', false, false}, {'g', false, false},
        }
        sort_runs(rows, row_less_for({{'n', 'exact', false}}))
        local out = {}
        for i, row in ipairs(rows) do out[i] = row[1] end
        return out
    """)
    assert ids == [b"a", b"b", b"c", b"d", b"e", b"f", b"h", b"g"]  # lex rows keep their order
