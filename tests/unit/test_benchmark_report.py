"""The benchmark report without a server: the closing summary, targets as goals with their
reasons, the n/a gaps of the chart, and the run-time estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import contention, report
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
    by_goal = {(t["op"], t["system"], t["against"]): t for t in result["targets"]}
    save = by_goal[("save", "repocket-compact", "baseline (raw-evalsha)")]
    assert save["status"] == "below target" and save["ratio"] == pytest.approx(0.8)
    assert by_goal[("save", "repocket-compact", "fastest peer (redis-om)")]["status"] == "met"
    filter_peer = report._best_peer(result, "filter")
    assert filter_peer == "walrus"  # redis-om could not run it: the best of those that ran
    text = "\n".join(report._targets_lines(result))
    assert "FAIL" not in text and "PASS" not in text
    for line in report._targets_lines(result):
        assert (save["why"] in line) == (line.startswith("below target  save ")
                                          and " baseline " in line)


def test_issue_8_targets_for_both_codecs_and_envelope_against_compact() -> None:
    """save/get/delete/append 0.95x, filter/range 0.9x, bulk_create/get_many 1.0x of the
    hand-written baselines for both codecs; envelope within 0.85x of compact everywhere."""
    result = result_of()
    by_goal = {(t["op"], t["system"], t["against"]): t for t in result["targets"]}
    wanted = {"save": 0.95, "get": 0.95, "delete": 0.95, "append": 0.95, "filter": 0.9,
              "range": 0.9, "bulk_create": 1.0, "get_many": 1.0}
    for op, minimum in wanted.items():
        pipelined = op in ("bulk_create", "get_many")
        base = f"baseline ({'raw-pipeline' if pipelined else 'raw-evalsha'})"
        for system in ("repocket-compact", "repocket-envelope"):
            assert by_goal[(op, system, base)]["minimum"] == minimum
        codecs = by_goal[(op, "repocket-envelope", "repocket-compact")]
        assert codecs["minimum"] == 0.85
        assert codecs["ratio"] == pytest.approx(500 / 800)  # the test rates: below 0.85
        assert codecs["status"] == "below target"
    met = by_goal[("bulk_create", "repocket-compact", "baseline (raw-pipeline)")]
    assert met["ratio"] == pytest.approx(0.4) and met["status"] == "below target"
    lines = report._targets_lines(result)
    assert any(line.startswith("below target  get ") and " envelope " in line
               and "repocket-compact" in line for line in lines)


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
    contended = Estimate.of(systems, ops, 100, 3, concurrency=False, writers=8)
    assert short.contention == 0 and contended.total > short.total  # the writer processes
    assert contended.remaining_after_warmup(short.one_pass) > short.remaining_after_warmup(
        short.one_pass)
    assert [duration(s) for s in (3, 44, 130, 125, 900)] == [
        "5 s", "45 s", "2 min 10 s", "2 min", "15 min"]


def test_an_operation_repocket_could_not_run_is_said_with_its_reason_never_a_number() -> None:
    missing = "the server has no such command"
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


def contention_result() -> dict[str, Any]:
    """A contention section as contention.run returns it (two repeats)."""
    def increment(name: str, atomic: bool, lost: list[int], retries: float = 0) -> dict[str, Any]:
        return {"name": name, "kind": "increment", "atomic": atomic,
                "ops_per_s": 5000.0, "min": 4000.0, "max": 6000.0, "retries": retries,
                "lost_updates": max(lost), "lost_per_repeat": lost, "index_mismatches": 0}

    def create(name: str, atomic: bool, low: int, high: int, stored: int,
               disagree: int) -> dict[str, Any]:
        return {"name": name, "kind": "create", "atomic": atomic,
                "ops_per_s": 7000.0, "min": 6500.0, "max": 7500.0, "creations_min": low,
                "creations_max": high, "stored_max": stored, "disagreements": disagree}

    return {"writers": 8, "counters": 4, "k": 150, "values": 150, "repeat": 2, "cores": 2,
            "usable": 2, "load": [0.4, 3.2], "rows": [
                increment("repocket F increment", True, [0, 0]),
                increment("raw-evalsha increment", True, [0, 0]),
                increment("WATCH/MULTI retry loop", True, [0, 0], retries=812),
                increment("naive read-modify-write", False, [397, 512]),
                create("repocket get_or_create", True, 1, 1, 150, 0),
                create("check-then-create", False, 1, 6, 421, 97)]}


def test_the_contention_section_gives_cores_lost_updates_and_creations() -> None:
    text = contention.text(contention_result())
    lines = text.splitlines()
    assert lines[0] == ("Contention: 8 writer processes on this machine's 2 cores; load "
                        "average 0.4 at the start, 3.2 at the end; median of 2 repeats (ops/s "
                        "of all writers together)")
    assert "8 writers x 150 on the same 4 counters (expected total 1,200 per repeat)" in text
    row = {line.split("  ")[1].strip(): line for line in lines if line.startswith("  ")
           and not line.startswith("  contender")}
    assert row["repocket F increment"].split()[3:] == ["5,000", "(4,000-6,000)", "0", "0", "0"]
    assert row["WATCH/MULTI retry loop"].split()[3:] == ["5,000", "(4,000-6,000)", "812", "0",
                                                          "0"]
    assert row["naive read-modify-write"].split()[-2:] == ["512", "0"]  # the worst repeat
    assert row["repocket get_or_create"].split()[2:] == ["7,000", "(6,500-7,500)", "1", "150",
                                                         "0"]
    assert row["check-then-create"].split()[1:] == ["7,000", "(6,500-7,500)", "1-6", "421", "97"]
    verdict = contention.verdict(contention_result())
    assert verdict == (
        "Contention (8 writer processes, 2 cores; updates lost, worst repeat): repocket F "
        "increment 0 lost; raw-evalsha increment 0 lost; WATCH/MULTI retry loop 0 lost, 812 "
        "retries; naive read-modify-write 512 lost; repocket get_or_create 1 creations per "
        "value; check-then-create 1-6 creations per value")
