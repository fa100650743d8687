"""tests/support/work.py: MONITOR lines parsed exactly, and the work each command counts."""

from __future__ import annotations

import pytest

from tests.support.work import elements, parse_monitor_line, skipped

SIZES = {(b"ZLEXCOUNT", b"idx", b"[a", b"+"): 20_000, (b"ZCOUNT", b"idx", b"-inf", b"5"): 30,
         (b"ZCARD", b"idx"): 20_000, (b"SCARD", b"ids"): 7, (b"HLEN", b"uniq"): 500}


def test_monitor_lines_keep_argument_boundaries_and_bytes() -> None:
    line = rb'1796192820.992479 [0 lua] "SET" "a b" "x\n\"" "k\x00\xff]" "\\"'
    assert parse_monitor_line(line) == ("lua", [b"SET", b"a b", b'x\n"', b"k\x00\xff]", b"\\"])
    assert parse_monitor_line(b'1.5 [3 127.0.0.1:5555] "PING"') == ("127.0.0.1:5555", [b"PING"])


@pytest.mark.parametrize(("command", "work", "walked"), [
    ([b"HMGET", b"rec", b"a", b"b"], 1, 0),
    ([b"SSCAN", b"ids", b"0", b"COUNT", b"1000"], 1000, 0),
    ([b"SSCAN", b"ids", b"0"], 10, 0),
    ([b"ZRANGEBYLEX", b"idx", b"[a", b"+"], 20_000, 0),
    ([b"ZRANGEBYLEX", b"idx", b"[a", b"+", b"LIMIT", b"19000", b"1000"], 1000, 19_000),
    ([b"ZRANGEBYLEX", b"idx", b"[a", b"+", b"LIMIT", b"19500", b"1000"], 500, 19_500),
    ([b"ZREVRANGEBYSCORE", b"idx", b"5", b"-inf"], 30, 0),
    ([b"ZRANGE", b"idx", b"0", b"-1"], 20_000, 0),
    ([b"ZRANGE", b"idx", b"10", b"19"], 10, 0),
    ([b"ZRANGE", b"idx", b"[a", b"+", b"BYLEX", b"LIMIT", b"19000", b"1000"], 1000, 19_000),
    ([b"ZRANGE", b"idx", b"5", b"-inf", b"BYSCORE", b"REV"], 30, 0),
    ([b"SMEMBERS", b"ids"], 7, 0),
    ([b"HGETALL", b"uniq"], 500, 0),
])
def test_work_counts_what_a_command_can_read(command: list[bytes], work: int,
                                             walked: int) -> None:
    assert elements(SIZES.__getitem__, command) == work
    assert skipped(SIZES.__getitem__, command) == walked
