"""Record ids: version-1 UUIDs made without a system call per id.

``uuid.uuid1()`` asks the OS (or libuuid) for the node each time, and a random node
per id costs an ``os.urandom`` call. Here the node (random, multicast bit set as RFC
4122 asks of a node that is not a MAC address) and the clock sequence are drawn once
per process, again in a forked child, and the 60-bit timestamp (100 ns ticks since
1582-10-15) comes from ``time.time_ns()``, moved one tick on whenever it would not
advance, so one process never makes the same id twice, and two processes differ
by their random nodes.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid

_GREGORIAN_OFFSET = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 to 1970-01-01
_VARIANT_AND_VERSION = (0x8000 << 48) | (1 << 76)  # RFC 4122 variant, version 1


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        node = secrets.randbits(48) | (1 << 40)
        clock_seq = secrets.randbits(14)
        self.low_bits = _VARIANT_AND_VERSION | (clock_seq << 48) | node
        self.last = 0


_state = _State()
os.register_at_fork(after_in_child=_state.reset)


def new_id() -> uuid.UUID:
    """A new, unique version-1 UUID."""
    ticks = time.time_ns() // 100 + _GREGORIAN_OFFSET
    with _state.lock:
        if ticks <= _state.last:
            ticks = _state.last + 1
        _state.last = ticks
    time_low = ticks & 0xFFFFFFFF
    time_mid = (ticks >> 32) & 0xFFFF
    time_hi = (ticks >> 48) & 0x0FFF
    return uuid.UUID(int=(time_low << 96) | (time_mid << 80) | (time_hi << 64) | _state.low_bits)
