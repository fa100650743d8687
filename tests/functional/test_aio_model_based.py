"""The model-based test (test_model_based.py) driving the asyncio API: the same rules, the
same in-memory model, every repocket call awaited (``asave``, ``aget``, ``alist``...) on
an event loop of the machine's own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from hypothesis.stateful import run_state_machine_as_test

from repocket import configure

from . import test_model_based as reference
from .test_model_based import PROFILE, CompactItemMachine, ItemMachine, LockedItemMachine


class AsyncAPI:
    """What the machine's ``io`` becomes: ``target.a<method>(...)``, awaited."""

    loop: asyncio.AbstractEventLoop

    def io(self, target: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        name = "alist" if method == "list" else f"a{method}"
        return self.loop.run_until_complete(getattr(target, name)(*args, **kwargs))

    def close_loop(self) -> None:
        self.loop.run_until_complete(configure.aclose())
        self.loop.close()


class AsyncItemMachine(AsyncAPI, ItemMachine):
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        super().__init__()

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.close_loop()


class AsyncCompactItemMachine(AsyncAPI, CompactItemMachine):
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        super().__init__()

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.close_loop()


class AsyncLockedItemMachine(AsyncAPI, LockedItemMachine):
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        super().__init__()

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.close_loop()


@pytest.mark.parametrize("machine", [AsyncItemMachine, AsyncCompactItemMachine,
                                     AsyncLockedItemMachine],
                         ids=["envelope", "compact", "locked"])
def test_async_model_based(client: redis.Redis, machine: type[ItemMachine]) -> None:
    reference.CLIENT = client
    before = reference.EXAMPLES.get(machine.model.__name__, 0)
    run_state_machine_as_test(machine, settings=PROFILE)
    assert reference.EXAMPLES.get(machine.model.__name__, 0) > before
