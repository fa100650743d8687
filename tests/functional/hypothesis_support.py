"""Shared by the hypothesis tests: their CI and soak profiles, and the count of examples
run, reported in the terminal summary and in ``.hypothesis/repocket-examples.txt``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

_COMMON: dict[str, Any] = {"deadline": None, "suppress_health_check": list(HealthCheck),
                           "print_blob": True}
# CI: no shrinking (a failure is reported as found, within the time budget); soak shrinks.
_CI_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)


def profile(name: str, ci: dict[str, Any], soak: dict[str, Any]) -> settings:
    """The profile ``$REPOCKET_HYPOTHESIS_PROFILE`` names (``ci`` by default, or ``soak``)."""
    settings.register_profile(f"{name}-ci", phases=_CI_PHASES, **ci, **_COMMON)
    settings.register_profile(f"{name}-soak", **soak, **_COMMON)
    return settings.get_profile(f"{name}-{os.environ.get('REPOCKET_HYPOTHESIS_PROFILE', 'ci')}")


def example_reporter(examples: dict[str, int]) -> Callable[..., Iterator[None]]:
    """A module-scoped autouse fixture reporting ``examples`` once the module has run."""

    @pytest.fixture(scope="module", autouse=True)
    def report_examples(request: pytest.FixtureRequest) -> Iterator[None]:
        yield
        lines = [f"[hypothesis] {request.module.__name__}::{name}: {n} examples"
                 for name, n in examples.items()]
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        for line in lines:
            if reporter is not None:
                reporter.write_line(line)
        Path(".hypothesis").mkdir(exist_ok=True)
        with open(".hypothesis/repocket-examples.txt", "a", encoding="utf-8") as out:
            out.write("".join(f"{line}\n" for line in lines))

    return report_examples
