"""Plans: what an operation asks of Redis, as data. No I/O here.

A :class:`Call` names a script, its KEYS and ARGV, and a ``decode`` for the
reply; ``decode`` returns the operation's result, or the next :class:`Call` to
run (the next page of a scan, the next batch, a follow-up read). Executors in
``repocket.exec`` run calls; every operation is written once, as calls.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from .lua import Script


@dataclass(slots=True)
class Call:
    """One script call. Treated as immutable (``dataclasses.replace`` makes a changed copy)
    but not frozen: a frozen dataclass sets each field through ``object.__setattr__``,
    several µs on every operation's path."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    decode: Callable[[Any], Any]
    model: str = ""
    key_fields: dict[str, str] = field(default_factory=dict)  # key -> field, for error messages
    # Given the server's longest accepted string (proto-max-bulk-len), the ARGV to send:
    # it raises a typed error for a value over it and passes it to the script. None:
    # nothing depends on it. ``args`` as they are assume DEFAULT_MAX_BYTES (Redis' default).
    args_for_limit: Callable[[int], tuple[Any, ...]] | None = None


DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # Redis' default proto-max-bulk-len


def pack(value: Any) -> bytes:
    # Redis' embedded cmsgpack predates msgpack's bin type: send bytes as raw strings.
    return msgpack.packb(value, use_bin_type=False)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Command:
    """A plain Redis command a plan needs besides its scripts (the checker's SCAN, TYPE...)."""

    args: tuple[Any, ...]
    model: str = ""


@dataclass(frozen=True)
class Emit:
    """Results a streaming plan hands to its caller now (one chunk of an iterator)."""

    items: list[Any]


@dataclass(frozen=True)
class Gather:
    """Calls independent of each other (one per shard on a cluster), each with its own
    follow-ups, whose results ``combine`` turns into the result (or the next step). An
    executor may send them together: the cluster one sends each node's calls in one
    pipeline, the nodes in parallel; the others run them one after the other."""

    calls: tuple[Call, ...]
    combine: Callable[[list[Any]], Any]
    model: str = ""

    @property
    def name(self) -> str:
        return self.calls[0].script.name


def gather(calls: Sequence[Call], combine: Callable[[list[Any]], Any]) -> Any:
    """``combine`` of the results of ``calls``: a Gather of them (no Gather for fewer than
    two calls: the call itself, or ``combine([])`` at once)."""
    if not calls:
        return combine([])
    if len(calls) == 1:
        return then(calls[0], lambda result: combine([result]))
    return Gather(tuple(calls), combine, calls[0].model)


Step = Call | Command | Emit | Gather
# An operation of several calls, written once for every executor: a generator that yields
# steps and is sent each Call's (or Command's) result; its return value is the operation's.
# Executors: repocket.exec.plans (sync) and repocket.exec.aio (asyncio).
Plan = Generator[Step, Any, Any]


def then(call: Call | Any, step: Callable[[Any], Any]) -> Any:
    """``call``, whose final result (after any follow-up calls) goes through ``step``,
    which returns the result or the next Call. ``call`` may be a result already (a cached
    one): then it is ``step(call)``."""
    if isinstance(call, Gather):
        combine = call.combine
        return replace(call, combine=lambda results: then(combine(results), step))
    if not isinstance(call, Call):
        return step(call)

    def decode(reply: Any) -> Any:
        return then(call.decode(reply), step)

    return replace(call, decode=decode)

