"""How much work each script call did, measured by the server, never by a clock.

A script blocks Redis for as long as it runs, so "no single call runs long" is a bound on
the work one call may do. ``MONITOR`` shows every command a script runs (as client ``lua``),
in order, between the commands of real clients: each uninterrupted run of ``lua`` commands
is one script call, whichever side of it the server logs the EVALSHA itself. A call's work
is the number of elements its commands read or write: a range or scan counts what it can
return (``SSCAN ... COUNT 1000`` counts 1,000, ``ZRANGEBYLEX`` over 20,000 members counts
20,000, ``... LIMIT offset n`` at most ``n``), every other command counts one. The members
a ``LIMIT offset`` steps over (one pointer each in the skiplist, far cheaper than a read)
are counted apart, as ``skipped``. The data must not change while the calls run (read-only queries),
since unbounded ranges are sized afterwards.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

END_MARK = "repocket-tests:end-of-work"
_ARGUMENT = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b'"': b'"',
            b"\\": b"\\"}


def _unescape(quoted: bytes) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        escape = match.group(1)
        if escape.startswith(b"x"):
            return bytes([int(escape[1:], 16)])
        return _ESCAPES.get(escape, escape)

    return re.sub(rb"\\(x[0-9a-fA-F]{2}|.)", one, quoted)


def parse_monitor_line(line: bytes) -> tuple[str, list[bytes]]:
    """(client, arguments) of one MONITOR line: ``<time> [<db> <client>] "CMD" "arg" ...``."""
    client = line.split(b"]", 1)[0].split()[-1].decode()
    quoted = _ARGUMENT.findall(line.split(b"]", 1)[1])
    return client, [_unescape(arg) if b"\\" in arg else arg for arg in quoted]


@dataclass
class ScriptCall:
    """The commands one script call ran, and the elements they read or wrote."""

    commands: list[list[bytes]] = field(default_factory=list)
    work: int = 0
    skipped: int = 0  # members LIMIT offsets stepped over


def _limit(args: list[bytes]) -> tuple[int, int] | None:
    upper = [arg.upper() for arg in args]
    if b"LIMIT" in upper:
        at = upper.index(b"LIMIT")
        return int(args[at + 1]), int(args[at + 2])
    return None


Size = Callable[[tuple[bytes, ...]], int]  # the answer to a size query, e.g. (ZCARD, key)


def _range_size(size: Size, name: str, args: list[bytes]) -> int:
    """How many members a ZRANGEBYSCORE/ZRANGEBYLEX (or REV) range holds."""
    key, low, high = args[1], args[2], args[3]
    if "REV" in name:
        low, high = high, low
    return size((b"ZLEXCOUNT" if "LEX" in name else b"ZCOUNT", key, low, high))


def _index_range_size(length: int, start: int, stop: int) -> int:
    start, stop = (start + length if start < 0 else start), (stop + length if stop < 0 else stop)
    return max(0, min(stop, length - 1) - max(start, 0) + 1)


def skipped(size: Size, args: list[bytes]) -> int:
    """The members a range's ``LIMIT offset`` steps over."""
    name = _command_name(args)
    limit = _limit(args) if "RANGEBY" in name else None
    return 0 if limit is None else min(limit[0], _range_size(size, name, args))


def _command_name(args: list[bytes]) -> str:
    """The command's name, with ``ZRANGE ... BYSCORE|BYLEX [REV]`` named as the older
    ``Z[REV]RANGEBYSCORE|LEX`` it equals (the range bounds then stay in order)."""
    name = args[0].decode().upper()
    options = {arg.upper() for arg in args[4:]}
    if name == "ZRANGE" and options & {b"BYSCORE", b"BYLEX"}:
        kind = "LEX" if b"BYLEX" in options else "SCORE"
        return f"Z{'REV' if b'REV' in options else ''}RANGEBY{kind}"
    return name


def elements(size: Size, args: list[bytes]) -> int:
    """The elements one command can read: what its range holds, its COUNT, or one."""
    name = _command_name(args)
    if name in ("SSCAN", "HSCAN", "ZSCAN"):
        upper = [arg.upper() for arg in args]
        return int(args[upper.index(b"COUNT") + 1]) if b"COUNT" in upper else 10
    if name in ("ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX"):
        in_range, limit = _range_size(size, name, args), _limit(args)
        if limit is None:
            return in_range
        offset, count = limit
        after_offset = max(in_range - offset, 0)
        return after_offset if count < 0 else min(after_offset, count)
    if name in ("ZRANGE", "ZREVRANGE", "LRANGE"):
        length = size((b"LLEN" if name == "LRANGE" else b"ZCARD", args[1]))
        return _index_range_size(length, int(args[2]), int(args[3]))
    if name in ("SMEMBERS", "SINTER", "SUNION", "SDIFF"):
        return sum(size((b"SCARD", key)) for key in args[1:])
    if name in ("HGETALL", "HKEYS", "HVALS"):
        return size((b"HLEN", args[1]))
    return 1


def _sizes(admin: redis.Redis, commands: list[list[bytes]]) -> dict[tuple[bytes, ...], int]:
    """Every size query the commands' work needs, answered in one pipeline."""
    queries: dict[tuple[bytes, ...], int] = {}

    def record(query: tuple[bytes, ...]) -> int:
        queries[query] = 0
        return 0

    for args in commands:
        elements(record, args)
        skipped(record, args)
    pipe = admin.pipeline(transaction=False)
    for query in queries:
        pipe.execute_command(*query)
    return dict(zip(queries, (int(answer) for answer in pipe.execute())))


def script_calls(admin: redis.Redis, run: Callable[[], Any]) -> tuple[Any, list[ScriptCall]]:
    """``run()``'s result and, for each script call it made, the commands the script ran and
    their work. ``admin`` is a client with MONITOR rights on the server ``run`` uses."""
    lines: list[bytes] = []
    monitor = admin.monitor()
    monitor.__enter__()  # sends MONITOR and waits for its OK: from here every command shows
    reader = threading.Thread(target=_read_until_end, args=(monitor, lines))
    reader.start()
    try:
        result = run()
    finally:
        admin.echo(END_MARK)
        reader.join(timeout=120)
        monitor.__exit__(None, None, None)
    calls: list[ScriptCall] = []
    previous = ""
    for line in lines:
        client, args = parse_monitor_line(line)
        if client == "lua":
            if previous != "lua":
                calls.append(ScriptCall())
            calls[-1].commands.append(args)
        previous = client
    sizes = _sizes(admin, [args for call in calls for args in call.commands]).__getitem__
    for call in calls:
        call.work = sum(elements(sizes, args) for args in call.commands)
        call.skipped = sum(skipped(sizes, args) for args in call.commands)
    return result, calls


def _read_until_end(monitor: Any, lines: list[bytes]) -> None:
    while True:
        line = monitor.connection.read_response()
        if END_MARK.encode() in line:
            return
        lines.append(line)
