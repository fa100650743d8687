"""A tiny run of the benchmark suite, so that it cannot rot (peers are not needed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from benchmarks.systems import label

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ["raw-evalsha", "raw-pipeline", "repocket-envelope", "repocket-compact"]
OPS = ["save", "get", "filter", "range", "append", "get_many", "delete", "bulk_create",
       "get_or_create", "update_f"]
# What a system cannot run, and the reason the table gives.
EXPECTED_NA = {("raw-pipeline", "get_or_create"): "no atomic get_or_create"}


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks", "--n", "20", "--repeat", "1", "--no-progress",
               "--systems", ",".join(SYSTEMS), "--json", str(out),
               "--markdown", str(tmp_path / "bench.md"), "--chart", str(tmp_path / "bench.png"),
               *args]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return proc, out


def test_short_run_on_a_throwaway_server(tmp_path: Path) -> None:
    proc, out = run_bench(tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # it says first which server it started (product, version, port, binary) and for how long
    assert re.search(r"started a throwaway (Redis|Valkey) [\d.]+ on 127\.0\.0\.1:\d+ \(/\S+\)",
                     proc.stderr)
    assert re.search(r"running 4 systems x 10 operations, n=20 records, a warm-up and 1 timed "
                     r"repeats \+ the concurrency section \+ the contention section \(8 writer "
                     r"processes\): about \d+ (s|min)", proc.stderr)
    assert "the warm-up pass took" in proc.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["ops"] == OPS
    assert result["meta"]["target"] == "throwaway redis-server"
    assert result["meta"]["leftover_keys"] == 0
    assert "x baseline" in (tmp_path / "bench.md").read_text()
    for name in SYSTEMS:
        system = result["systems"][name]
        assert system["status"] == "ok", system
        assert system["bytes_per_record"] > 0
        for op in OPS:
            cell = system["cells"][op]
            assert cell["error"] is None, (name, op, cell["error"])
            assert cell["na"] == EXPECTED_NA.get((name, op)), (name, op, cell["na"])
            if cell["na"] is not None:
                assert cell["ops_per_s"] is None and cell["ratio"] is None
                continue
            assert cell["check"] is None, (name, op, cell["check"])
            assert cell["ops_per_s"]["median"] > 0
            assert cell["round_trips_per_op"] > 0
            assert cell["server_usec_per_op"] >= 0
            assert cell["ratio"] > 0
    for op in ("save", "get", "delete", "append", "get_or_create", "update_f"):
        assert result["systems"]["raw-evalsha"]["cells"][op]["round_trips_per_op"] == 1
    for name in ("repocket-envelope", "repocket-compact"):  # one script each, as the issue says
        assert result["systems"][name]["cells"]["get_or_create"]["round_trips_per_op"] == 1
        assert result["systems"][name]["cells"]["update_f"]["round_trips_per_op"] == 1
    for name in ("raw-evalsha", "repocket-envelope", "repocket-compact"):
        # server time is metered whoever packs the commands (repocket's lean path: hiredis)
        assert result["systems"][name]["cells"]["save"]["server_usec_per_op"] > 0, name
    assert {t["op"] for t in result["targets"]} >= {"save", "get", "delete", "filter"}
    for target in result["targets"]:  # goals met or not, measured unless no peer ran
        assert target["status"] in {"met", "below target"} or (
            target["status"] == "n/a" and target["against"] == "fastest peer (no peer ran)")
        assert target["not_run"] is None
    assert_ends_with_the_summary(proc.stdout, result)
    rows = {(r["system"], r["mode"]): r for r in result["concurrency"]["rows"]}
    assert set(rows) == {(s, m) for s in ("raw-evalsha", "repocket")
                         for m in ("asyncio", "threads")}
    for row in rows.values():  # one script call per operation, async as sync
        for op in ("create", "get", "filter", "delete"):
            assert row[f"{op}_scripts_per_op"] == 1, (row, op)
            assert row[f"{op}_ops_per_s"] > 0
    assert_no_lost_update_and_one_creation(result["contention"], proc.stdout)


def assert_no_lost_update_and_one_creation(section: dict[str, Any], stdout: str) -> None:
    """8 writer processes on the same 4 counters and the same 20 unique values: the atomic
    contenders lose no update and create each value once; every contender ran."""
    assert (section["writers"], section["counters"], section["k"], section["values"]) == (
        8, 4, 20, 20)
    assert section["cores"] == os.cpu_count()
    rows = {row["name"]: row for row in section["rows"]}
    assert list(rows) == ["repocket F increment", "raw-evalsha increment",
                          "WATCH/MULTI retry loop", "naive read-modify-write",
                          "repocket get_or_create", "check-then-create"]
    for name, row in rows.items():
        assert row["ops_per_s"] > 0, row
        if row["kind"] == "increment":
            assert row["lost_updates"] == max(row["lost_per_repeat"])
            assert row["index_mismatches"] == 0, row  # HSET and ZADD always go together
            if row["atomic"]:
                assert row["lost_per_repeat"] == [0], row
            if name != "WATCH/MULTI retry loop":
                assert row["retries"] == 0, row  # only the WATCH loop has anything to retry
    creations = rows["repocket get_or_create"]
    assert (creations["creations_min"], creations["creations_max"]) == (1, 1), creations
    assert creations["stored_max"] == 20 and creations["disagreements"] == 0, creations
    racy = rows["check-then-create"]  # may create more than once: never less
    assert racy["creations_min"] >= 1 and racy["stored_max"] >= 20, racy
    summary = stdout[stdout.index("Summary: where repocket stands"):]
    verdict = next(line for line in summary.splitlines() if line.startswith("Contention ("))
    assert "; repocket get_or_create 1 creations per value;" in verdict
    assert "repocket F increment 0 lost; raw-evalsha increment 0 lost;" in verdict
    text = stdout[stdout.index("Contention: 8 writer processes"):]
    assert f"on this machine's {os.cpu_count()} cores" in text.splitlines()[0]
    for name in rows:
        assert f"  {name} " in text


def assert_ends_with_the_summary(stdout: str, result: dict[str, Any]) -> None:
    """The last words: per operation repocket's rate and ratios, then the targets, each below
    one with its reason; nothing that reads like a crash."""
    assert "FAIL" not in stdout and "Traceback" not in stdout
    summary = stdout[stdout.index("Summary: where repocket stands"):]
    lines = summary.splitlines()
    for op in OPS:
        row = next(line for line in lines if line.startswith(f"{label(op)} "))
        ratio = result["systems"]["repocket-compact"]["cells"][op]["ratio"]
        baseline = result["baseline_for"][op]
        assert f"{ratio:.2f}x {baseline}" in row, row
        assert "no peer ran" in row  # the smoke run has no peers
    targets = [line.strip() for line in lines if line.startswith("  ")]
    assert len(targets) == len(result["targets"])
    for line, target in zip(targets, result["targets"], strict=True):
        assert line.startswith(target["status"]) and label(target["op"]) in line
        assert (target["why"] in line) == (target["status"] == "below target")
    assert re.fullmatch(r"finished in \d+ (s|min( \d+ s)?) \(estimated at the start: .+\)",
                        lines[-1])


def test_user_server_is_refused_when_not_empty_and_left_as_found(
        tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.set("someone:else", b"precious")
    try:
        proc, out = run_bench(tmp_path, "--url", redis_url, "--ops", "save,get")
        assert proc.returncode == 2
        assert "refusing" in proc.stderr
        assert not out.exists()

        proc, out = run_bench(tmp_path, "--url", redis_url, "--ops", "save,get", "--force")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        info = client.info("server")
        version = info.get("valkey_version") or info["redis_version"]
        assert re.search(rf"using (Redis|Valkey) {re.escape(version)} at \S+ \(--url\)",
                         proc.stderr)
        assert json.loads(out.read_text())["meta"]["leftover_keys"] == 0
        assert client.keys("*") == [b"someone:else"]
        assert client.get("someone:else") == b"precious"
    finally:
        client.delete("someone:else")
        client.close()


def test_saturation_section_counts_every_clients_operations(redis_url: str) -> None:
    """benchmarks.saturation: each phase's rate covers every client's operations and the
    server time of the EVALSHAs they sent; the section removes only its own keys."""
    from benchmarks import saturation

    client = redis.Redis.from_url(redis_url)
    client.set("not-the-benchmarks", b"kept")
    phases = saturation.run_system(redis_url, "repocket-compact", processes=2, n=10)
    assert set(phases) == {"save", "get"}
    for phase in phases.values():
        assert len(phase.rates) == 1 and phase.rates[0] > 0
        assert len(phase.server_usec) == 1 and phase.server_usec[0] > 0
    assert client.keys("repocket:bench_compact:*") == []
    assert client.get("not-the-benchmarks") == b"kept"
    client.delete("not-the-benchmarks")


def test_the_cluster_section_runs_from_the_main_command(tmp_path: Path) -> None:
    """``python -m benchmarks --cluster`` (the issue's command): the cluster section runs on a
    throwaway local cluster of its own, its tables are printed and kept in the JSON and the
    Markdown, with round trips counted (one per record operation, one per primary per query);
    --cluster-writers 0 skips its writer processes."""
    proc, out = run_bench(tmp_path, "--ops", "save", "--concurrency", "0", "--writers", "0",
                          "--cluster", "--cluster-writers", "0")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert re.search(r"n=20 records, a warm-up and 1 timed repeats \+ the cluster section: "
                     r"about \d+ (s|min)", proc.stderr)
    section = json.loads(out.read_text())["cluster"]
    for name in ("create", "get", "save", "delete"):  # [ops/s, round trips per op]
        assert section["operations"]["standalone"][name][1] == 1.0
        assert section["operations"]["cluster"][name][1] == 1.0
    assert section["operations"]["cluster"]["count"][1] == 3  # one call per primary
    assert set(section["shards"]) == {"1", "4", "16", "64"}
    assert "writers" not in section
    heading = "## Redis Cluster: one server against a 3-primary cluster (16 shards), n=20"
    assert heading in proc.stdout and "writer processes" not in proc.stdout
    assert heading in (tmp_path / "bench.md").read_text()
