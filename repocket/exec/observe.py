"""What the executors report about each script call: the ``repocket`` logger and the
instrumentation hook (``configure.instrument``, ``configure.slow_call_threshold``).

The sync and asyncio executors both time a call through :func:`start` and
:meth:`Watch.finish`, so they log and report alike. When nothing observes (no hook,
no slow-call threshold, the logger not enabled for DEBUG) :func:`start` returns None
after one check and a call costs nothing more: no clock read, no formatting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("repocket")


@dataclass(frozen=True)
class CallReport:
    """One script call as the hook receives it. ``operation`` is the script's name
    (``save``, ``get``, ``query``, ``delete``...), ``model`` the model's name,
    ``round_trips`` the script calls it took (follow-up pages and batches included; the
    EVAL re-sent after a NOSCRIPT reply and the client's one CONFIG GET are not counted),
    ``duration`` seconds, ``error`` the exception it raised or None."""

    operation: str
    model: str
    round_trips: int
    duration: float
    error: BaseException | None


Hook = Callable[[CallReport], object]


class _Settings:
    hook: Hook | None = None
    slow_threshold: float | None = None  # seconds; None: no slow-call warnings


def instrument(callback: Hook | None) -> None:
    """Call ``callback(report)`` after every script call (None removes it)."""
    if callback is not None and not callable(callback):
        raise TypeError(f"instrument() takes a callable or None, not {callback!r}")
    _Settings.hook = callback


def slow_call_threshold(seconds: float | None) -> None:
    """Log a warning on the ``repocket`` logger for every call slower than ``seconds``
    (None: never)."""
    if seconds is not None and (isinstance(seconds, bool) or not seconds >= 0):
        raise ValueError(f"slow_call_threshold takes seconds >= 0 or None, not {seconds!r}")
    _Settings.slow_threshold = None if seconds is None else float(seconds)


class Watch:
    """The timing of one call in progress."""

    __slots__ = ("model", "operation", "round_trips", "started")

    def __init__(self, operation: str, model: str) -> None:
        self.operation, self.model = operation, model
        self.round_trips = 0
        self.started = time.perf_counter()

    def finish(self, error: BaseException | None) -> None:
        duration = time.perf_counter() - self.started
        report = CallReport(self.operation, self.model, self.round_trips, duration, error)
        _log(report)
        hook = _Settings.hook
        if hook is not None:
            try:
                hook(report)
            except Exception:  # the call ran: a broken metrics hook must not hide its result
                logger.exception("repocket instrumentation hook %r raised", hook)


def start(operation: str, model: str) -> Watch | None:
    """A Watch for a call about to run, or None when nothing observes calls."""
    if (_Settings.hook is None and _Settings.slow_threshold is None
            and not logger.isEnabledFor(logging.DEBUG)):
        return None
    return Watch(operation, model)


def _log(report: CallReport) -> None:
    threshold = _Settings.slow_threshold
    failed = "" if report.error is None else f" failed: {type(report.error).__name__}"
    if threshold is not None and report.duration > threshold:
        logger.warning("slow call: %s %s took %.1f ms (%d round trips, threshold %.1f ms)%s",
                       report.model, report.operation, report.duration * 1000,
                       report.round_trips, threshold * 1000, failed)
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s %s: %.3f ms, %d round trips%s", report.model, report.operation,
                     report.duration * 1000, report.round_trips, failed)
