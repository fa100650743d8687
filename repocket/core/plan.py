"""Plans: what an operation asks of Redis, as data. No I/O here.

A :class:`Call` names a script, its KEYS and ARGV, and a ``decode`` for the
reply; ``decode`` returns the operation's result, or the next :class:`Call` to
run (the next page of a scan, the next batch, a follow-up read). Executors in
``repocket.exec`` run calls; every operation is written once, as calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .lua import Script


@dataclass(frozen=True)
class Call:
    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    decode: Callable[[Any], Any]
    model: str = ""
    key_fields: dict[str, str] = field(default_factory=dict)  # key -> field, for error messages


def pack(value: Any) -> bytes:
    # Redis' embedded cmsgpack predates msgpack's bin type: send bytes as raw strings.
    return msgpack.packb(value, use_bin_type=False)  # type: ignore[no-any-return]
