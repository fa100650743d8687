"""The ``repocket`` logger and the instrumentation hook: what an application sees of each
script call (operation, model, round trips, duration, error), sync and async."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from repocket import ActiveRecord, CallReport, attributes, configure, errors
from tests.conftest import RoundTrips


class Gauge(ActiveRecord):
    class Meta:
        namespace = "observe"

    name = attributes.Unicode(unique=True)
    level = attributes.Integer(index=True)


@pytest.fixture
def reports(client: redis.Redis) -> list[CallReport]:
    seen: list[CallReport] = []
    configure.instrument(seen.append)
    return seen


def test_the_hook_hears_save_get_and_filter_with_their_round_trips(
        reports: list[CallReport], roundtrips: RoundTrips) -> None:
    Gauge.objects.get(id=Gauge.create(name="warm", level=0).id)  # scripts cached, limit read
    list(Gauge.objects.filter(level=0))
    reports.clear()
    roundtrips.reset()
    gauge = Gauge.create(name="a", level=1)
    Gauge.objects.get(id=gauge.id)
    list(Gauge.objects.filter(level=1))
    assert [(r.operation, r.model, r.round_trips, r.error) for r in reports] == [
        ("save", "Gauge", 1, None), ("get", "Gauge", 1, None), ("query", "Gauge", 1, None)]
    assert sum(r.round_trips for r in reports) == roundtrips.count
    assert all(r.duration >= 0 for r in reports)


def test_the_hook_hears_a_failed_call_with_its_error(reports: list[CallReport]) -> None:
    Gauge.create(name="a", level=1)
    with pytest.raises(errors.UniqueViolation) as raised:
        Gauge.create(name="a", level=2)
    assert (reports[-1].operation, reports[-1].model) == ("save", "Gauge")
    assert reports[-1].error is raised.value


def test_a_broken_hook_is_logged_and_the_call_still_returns(
        client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    def broken(report: CallReport) -> None:
        raise RuntimeError("metrics backend down")

    configure.instrument(broken)
    with caplog.at_level(logging.ERROR, logger="repocket"):
        gauge = Gauge.create(name="a", level=1)
    assert Gauge.objects.get(id=gauge.id) is not None
    assert "instrumentation hook" in caplog.text


def test_async_calls_report_through_the_same_hook(reports: list[CallReport]) -> None:
    async def work() -> None:
        gauge = await Gauge.acreate(name="a", level=1)
        await Gauge.objects.aget(id=gauge.id)
        await configure.aclose()

    asyncio.run(work())
    assert [(r.operation, r.round_trips) for r in reports] == [("save", 1), ("get", 1)]


def test_debug_log_names_operation_model_and_duration(
        client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="repocket"):
        Gauge.create(name="a", level=1)
    [record] = [r for r in caplog.records if r.name == "repocket"]
    assert record.levelno == logging.DEBUG
    message = record.getMessage()
    assert message.startswith("Gauge save: ") and " ms, 1 round trips" in message


def test_slow_calls_log_a_warning_over_the_threshold(
        client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    configure.slow_call_threshold(0)  # every call is over 0 seconds
    with caplog.at_level(logging.WARNING, logger="repocket"):
        Gauge.create(name="a", level=1)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "slow call: Gauge save" in caplog.text
    configure.slow_call_threshold(None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="repocket"):
        Gauge.create(name="b", level=1)
    assert caplog.records == []


def test_nothing_is_timed_when_nobody_observes(client: redis.Redis) -> None:
    from repocket.exec import observe

    assert not logging.getLogger("repocket").isEnabledFor(logging.DEBUG)
    assert observe.start("save", "Gauge") is None


@pytest.mark.parametrize("bad", [-1, "1", True])
def test_a_bad_threshold_is_refused(client: redis.Redis, bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        configure.slow_call_threshold(bad)  # type: ignore[arg-type]
