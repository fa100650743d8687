"""The benchmark report without a server: the closing summary, targets as goals with their
reasons, the n/a gaps of the chart, and the run-time estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.estimate import Estimate, duration
from benchmarks.harness import Cell, SystemRun
from benchmarks.systems import OPS, System, label

RATES = {  # ops/s per system: one timed repeat of 100 operations (filter, range: 100 rows)
    "raw-evalsha": 1000.0, "raw-pipeline": 2000.0, "repocket-envelope": 500.0,
    "repocket-compact": 800.0, "redis-om": 400.0, "walrus": 100.0,
}


def make_system(name: str, kind: str) -> System:
    system = System()
    system.name = name  # type: ignore[misc]  # an instance stands for the registered class
    system.kind = kind  # type: ignore[misc]
    return system


def run_of(name: str, kind: str, cannot: tuple[str, ...] = (),
           why: str = "needs the RediSearch module") -> SystemRun:
    run = SystemRun(make_system(name, kind))
    for op in OPS:
        if op in cannot:
            run.cells[op] = Cell(na=why)
        else:
            run.cells[op] = Cell(ops=100, rows=100, seconds=[100 / RATES[name]])
    return run


def result_of() -> dict[str, Any]:
    runs = [run_of("raw-evalsha", "baseline"), run_of("raw-pipeline", "baseline"),
            run_of("repocket-envelope", "repocket"), run_of("repocket-compact", "repocket"),
            run_of("redis-om", "peer", cannot=("filter", "range")), run_of("walrus", "peer")]
    meta = {"n": 100, "repeat": 1, "machine": "a test"}
    return report.build(runs, meta, list(OPS), {"limpyd": "not installed"})


def test_targets_are_goals_met_or_below_with_the_reason() -> None:
    result = result_of()
    by_goal = {(t["op"], t["against"]): t for t in result["targets"]}
    save = by_goal[("save", "baseline (raw-evalsha)")]
    assert save["status"] == "below target" and save["ratio"] == pytest.approx(0.8)
    assert by_goal[("save", "fastest peer (redis-om)")]["status"] == "met"  # 2.0x
    filter_peer = report._best_peer(result, "filter")
    assert filter_peer == "walrus"  # redis-om could not run it: the best of those that ran
    text = "\n".join(report._targets_lines(result))
    assert "FAIL" not in text and "PASS" not in text
    for line in report._targets_lines(result):
        assert (save["why"] in line) == line.startswith("below target  save ")


def test_the_summary_gives_each_operation_its_rate_and_ratios() -> None:
    summary = report.summary(result_of())
    labels = {label(op): op for op in OPS}
    rows = {labels[name]: line for line in summary.splitlines()
            if (name := next((n for n in labels if line.startswith(n + " ")), None))}
    assert list(rows) == list(OPS)
    assert rows["update_f"].startswith("update (F increment) ")
    assert "800" in rows["save"] and "0.80x raw-evalsha" in rows["save"]
    assert "2.00x redis-om" in rows["save"]
    assert "800 rows/s" in rows["filter"] and "8.00x walrus" in rows["filter"]
    assert "0.40x raw-pipeline" in rows["bulk_create"]
    assert rows["get"].rstrip().endswith("0.50x")  # the other codec against the baseline
    assert "(peers not run: rom, limpyd; see above)" in summary


def test_the_chart_labels_what_a_peer_cannot_run(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    labels: list[tuple[float, str]] = []
    real_text = matplotlib.axes.Axes.text

    def text(self: Any, x: float, y: float, s: str, *args: Any, **kwargs: Any) -> Any:
        labels.append((x, s.strip()))
        return real_text(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "text", text)
    assert report.chart(result_of(), tmp_path / "chart.png") is None
    assert (tmp_path / "chart.png").stat().st_size > 0
    width = 0.8 / 6  # six systems ran; redis-om is the fifth bar of each group
    offset = (4 - 2.5) * width
    assert [(round(x, 6), s) for x, s in labels] == [
        (round(OPS.index(op) + offset, 6), "n/a") for op in ("filter", "range")]


def test_the_estimate_scales_with_the_work_and_adapts_to_the_pace() -> None:
    systems, ops = ["raw-evalsha", "repocket-compact"], list(OPS)
    short = Estimate.of(systems, ops, 100, 3, concurrency=False)
    long = Estimate.of(systems, ops, 1000, 5, concurrency=True)
    assert long.total > 5 * short.total
    assert short.remaining_after_warmup(2 * short.one_pass) == pytest.approx(
        2 * short.remaining_after_warmup(short.one_pass))
    assert [duration(s) for s in (3, 44, 130, 125, 900)] == [
        "5 s", "45 s", "2 min 10 s", "2 min", "15 min"]


def test_an_operation_repocket_cannot_run_yet_is_said_with_its_reason_never_a_number() -> None:
    missing = "QuerySet.update() and F are not in this repocket yet"
    runs = [run_of("raw-evalsha", "baseline"),
            run_of("repocket-compact", "repocket", cannot=("update_f",), why=missing)]
    result = report.build(runs, {"n": 100, "repeat": 1, "machine": "a test"},
                          ["get_or_create", "update_f"], {})
    cell = result["systems"]["repocket-compact"]["cells"]["update_f"]
    assert cell["ratio"] is None and cell["ops_per_s"] is None
    target = next(t for t in result["targets"] if t["op"] == "update_f")
    assert (target["status"], target["not_run"]) == ("n/a", missing)
    goc = next(t for t in result["targets"] if t["op"] == "get_or_create")
    assert goc["status"] == "below target" and goc["ratio"] == pytest.approx(0.8)
    assert goc["not_run"] is None and goc["minimum"] == 0.95
    summary = report.summary(result)
    row = next(line for line in summary.splitlines() if line.startswith("update (F increment)"))
    assert row.split()[3:6] == ["n/a", "n/a", "raw-evalsha"]
    assert f"(update (F increment): repocket-compact did not run it: {missing})" in summary
    assert f"target 0.95x: not run ({missing})" in summary
    table = report.text(result)
    assert "update (F increment) (vs raw-evalsha)" in table
    assert f"repocket-compact update_f: {missing}" in table
