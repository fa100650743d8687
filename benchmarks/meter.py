"""What is measured besides time: round trips, server time, memory, and key hygiene.

Round trips are counted on the client: every ``send_packed_command`` of any
redis-py connection is one (a pipeline sends all its commands in one call).
Server time comes from ``INFO commandstats`` deltas read on a separate
connection. Commands a Lua script or a MULTI/EXEC runs are counted by Redis both
on their own and inside EVALSHA/EXEC, so only the commands the client itself
sent are summed, and EXEC's time (already in the queued commands) is left out.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis import connection as _conn

_MULTIWORD = {"script", "client", "config", "memory", "object", "function", "command",
              "xinfo", "acl", "cluster"}


class Counter:
    def __init__(self) -> None:
        self.sends = 0
        self.commands: collections.Counter[str] = collections.Counter()


def _name(args: tuple[Any, ...]) -> str:
    words: list[str] = []
    for a in args[:2]:
        s = a.decode() if isinstance(a, bytes | bytearray) else str(a)
        words += s.lower().split()
    if not words:
        return ""
    if words[0] in _MULTIWORD and len(words) > 1:
        return f"{words[0]}|{words[1]}"
    return words[0]


def sent_names(packed: Any) -> list[str]:
    """The command names in a packed write (RESP arrays of bulk strings), whoever packed it:
    redis-py's packers and hiredis' ``pack_command`` alike (repocket's lean path uses the
    latter, so patching redis-py's packers would miss its commands)."""
    if isinstance(packed, list | tuple):
        data = b"".join(bytes(chunk) for chunk in packed)
    else:
        data = bytes(packed)
    names: list[str] = []
    position = 0
    while position < len(data):
        end = data.index(b"\r\n", position)
        count = int(data[position + 1:end])  # "*<count>"
        position = end + 2
        words: list[bytes] = []
        for index in range(count):
            end = data.index(b"\r\n", position)
            length = int(data[position + 1:end])  # "$<length>"
            position = end + 2
            if index < 2:
                words.append(data[position:position + length])
            position += length + 2
        names.append(_name(tuple(words)))
    return names


@contextmanager
def counting() -> Iterator[Counter]:
    """Count round trips and the command names sent by every redis-py connection (one
    ``send_packed_command`` is one round trip; a pipeline sends all its commands in one)."""
    counter = Counter()
    send = _conn.AbstractConnection.__dict__["send_packed_command"]

    def counted_send(self: Any, command: Any, check_health: bool = True) -> Any:
        counter.sends += 1
        counter.commands.update(sent_names(command))
        return send(self, command, check_health)

    _conn.AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        _conn.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """{command: (calls, usec)} from INFO commandstats."""
    out: dict[str, tuple[int, int]] = {}
    for key, value in client.info("commandstats").items():
        if key.startswith("cmdstat_"):
            out[key[len("cmdstat_"):]] = (int(value["calls"]), int(value["usec"]))
    return out


def server_usec(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                sent: collections.Counter[str]) -> float:
    """Server time of the commands the client sent, from two commandstats snapshots."""
    total = 0.0
    for name, (calls, usec) in after.items():
        if name == "exec" or name not in sent:
            continue
        c0, u0 = before.get(name, (0, 0))
        d_calls, d_usec = calls - c0, usec - u0
        if d_calls > 0:
            total += d_usec * min(1.0, sent[name] / d_calls)
    return total


def scan_keys(client: redis.Redis, patterns: Iterable[str]) -> list[bytes]:
    keys: set[bytes] = set()
    for pattern in patterns:
        keys.update(client.scan_iter(match=pattern, count=1000))
    return sorted(keys)


def memory_usage(client: redis.Redis, patterns: Iterable[str]) -> int:
    """Exact bytes (SAMPLES 0) of every key matching the patterns."""
    keys = scan_keys(client, patterns)
    total = 0
    for start in range(0, len(keys), 500):
        with client.pipeline(transaction=False) as pipe:
            for key in keys[start:start + 500]:
                pipe.execute_command("MEMORY USAGE", key, "SAMPLES", 0)
            total += sum(int(v or 0) for v in pipe.execute())
    return total


def delete_keys(client: redis.Redis, patterns: Iterable[str]) -> int:
    """Delete only the keys matching our own patterns (never FLUSHDB)."""
    keys = scan_keys(client, patterns)
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
    return len(keys)
