"""Turn a run into JSON, a text/Markdown table and a PNG chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .harness import ROW_OPS, SystemRun
from .systems import BASELINE_FOR, OPS, PEERS, label

# Issue 8's targets, for both codecs: the ratio to the hand-written baseline (filter and
# range on rows/s; bulk_create and get_many against the pipelined one), and the envelope
# codec (the default) within 0.85x of compact on every operation.
ISSUE_8 = {"save": 0.95, "get": 0.95, "delete": 0.95, "append": 0.95, "filter": 0.9,
           "range": 0.9, "bulk_create": 1.0, "get_many": 1.0}
WHY_BELOW = {
    "save": "its script also checks key types, the Pointer target and the unique claim, and "
            "maintains the index a unique field implies, before and besides the write; Python "
            "validates and encodes each typed field",
    "get": "reads guard key types and check stored Pointer ids before following them; Python "
           "builds typed instances where the baseline returns raw dicts",
    "delete": "its script reads the record to drop its index entries and unique claims, "
              "checking key types first",
    "append": "its script checks the record exists and the string limit before the APPEND",
    "filter": "the query plan is interpreted per call and each row becomes a typed instance "
              "with its Pointer and streams",
    "range": "the query plan is interpreted per call (sources sized, the index walked, ids "
             "checked) and each row becomes a typed instance",
    "bulk_create": "each record is validated and encoded in Python; a batch's unique values "
                   "are checked before its first write",
    "get_many": "each record becomes a typed instance with its Pointer and streams",
}
ENVELOPE_WHY = ("the envelope codec frames each value in JSON: more bytes to send and store, "
                "and values the scripts read (indexes, Pointers) unwrapped on the server")
TARGETS = (  # (op, system, minimum ratio, against, why repocket may stay below it)
    *((op, system, minimum, "baseline", WHY_BELOW[op])
      for system in ("repocket-compact", "repocket-envelope")
      for op, minimum in ISSUE_8.items()),
    *((op, "repocket-envelope", 0.85, "repocket-compact", ENVELOPE_WHY) for op in ISSUE_8),
    ("get_or_create", "repocket-compact", 0.95, "baseline",
     "creating runs save's fast path: 13 commands against the baseline's 8 (a TYPE check "
     "per index and of the Pointer target, one EXISTS of the record's keys and the deadline "
     "set, the index a unique field implies); a found record (5 commands against 4: the "
     "EXISTS) becomes a typed instance with its streams"),
    ("update_f", "repocket-compact", 0.95, "baseline",
     "a filter by id runs the update-by-id script's fast path: 5 commands against 3 (an "
     "EXISTS of the deadline set, the record's old values, the touched index's TYPE check), "
     "and its Lua (the assignments read from msgpack, claims) costs more than HINCRBY; "
     "Python builds a queryset"),
    ("save", "repocket-compact", 2.0, "fastest peer",
     "the peers' saves do less (no unique check, index or streams; redis-om's is a bare HSET)"),
    ("get", "repocket-compact", 2.0, "fastest peer",
     "one round trip, as the fastest peer: what remains is repocket's Python cost per call"),
)
MET, BELOW, NOT_MEASURED = "met", "below target", "n/a"


def build(runs: list[SystemRun], meta: dict[str, Any], ops: list[str],
          skipped: dict[str, str]) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for run in runs:
        s = run.system
        cells: dict[str, Any] = {}
        for op in ops:
            cell = run.cells.get(op)
            if cell is None:
                continue
            cells[op] = {
                "ops_per_s": cell.summary(), "rows_per_s": cell.summary(per_row=True)
                if op in ROW_OPS else None,
                "ops": cell.ops, "rows": cell.rows, "seconds": cell.seconds,
                "round_trips_per_op": cell.round_trips, "server_usec_per_op": cell.server_usec,
                "na": cell.na, "error": cell.error, "check": cell.check,
                "note": s.notes.get(op),
            }
        systems[s.name] = {"kind": s.kind, "status": "failed" if run.failed else "ok",
                           "reason": run.failed, "bytes_per_record": run.bytes_per_record,
                           "cells": cells}
    for name, reason in skipped.items():
        systems[name] = {"kind": "peer", "status": "skipped", "reason": reason, "cells": {}}
    result = {"meta": meta, "ops": ops, "baseline_for": {op: BASELINE_FOR[op] for op in ops},
              "systems": systems}
    _ratios(result)
    result["targets"] = _targets(result)
    return result


def _not_run(result: dict[str, Any], system: str, op: str) -> str | None:
    """Why ``system`` could not run ``op`` (n/a or an error), or None."""
    cell = result["systems"].get(system, {}).get("cells", {}).get(op) or {}
    return cell.get("na") or (f"error: {cell['error']}" if cell.get("error") else None)


def _rate(result: dict[str, Any], system: str, op: str) -> float | None:
    cell = result["systems"].get(system, {}).get("cells", {}).get(op)
    if not cell or cell["error"] or cell["na"]:
        return None
    summary = cell["rows_per_s"] if op in ROW_OPS else cell["ops_per_s"]
    return summary["median"] if summary else None


def _paired(result: dict[str, Any], system: str, base: str, op: str) -> float | None:
    """Median over repeats of the ratio within each repeat (the two ran seconds apart)."""
    cells = [result["systems"].get(n, {}).get("cells", {}).get(op) for n in (system, base)]
    if not all(c and c["seconds"] and not c["error"] and not c["na"] for c in cells):
        return None
    mine, ref = cells
    if len(mine["seconds"]) != len(ref["seconds"]):
        return None
    count = "rows" if op in ROW_OPS else "ops"
    ratios = [(mine[count] / a) / (ref[count] / b) if ref[count] else 0.0
              for a, b in zip(mine["seconds"], ref["seconds"], strict=True)]
    return statistics.median(ratios) if all(ratios) else None


def _ratio(result: dict[str, Any], system: str, base: str, op: str) -> float | None:
    paired = _paired(result, system, base, op)
    if paired is not None:
        return paired
    mine, ref = _rate(result, system, op), _rate(result, base, op)
    return mine / ref if mine and ref else None


def _ratios(result: dict[str, Any]) -> None:
    for name, sysres in result["systems"].items():
        for op, cell in sysres["cells"].items():
            cell["ratio"] = _ratio(result, name, result["baseline_for"][op], op)


def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for op, system, minimum, against, why in TARGETS:
        if op not in result["ops"]:
            continue
        if against == "baseline":
            ref_name = result["baseline_for"][op]
        elif against.startswith("repocket-"):
            ref_name = against  # another system of the same run (the other codec)
        else:
            peers = [(r, p) for p in PEERS if (r := _rate(result, p, op))]
            ref_name = max(peers)[1] if peers else "no peer ran"
        ratio = _ratio(result, system, ref_name, op)
        na = _not_run(result, system, op)
        shown = against if against == ref_name else f"{against} ({ref_name})"
        out.append({"op": op, "system": system, "against": shown,
                    "minimum": minimum, "ratio": ratio, "why": why, "not_run": na,
                    "status": NOT_MEASURED if ratio is None else
                    (MET if ratio >= minimum else BELOW)})
    return out


# -- rendering -------------------------------------------------------------
def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _rows(result: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    footnotes: list[str] = []

    def mark(text: str) -> str:
        if text not in footnotes:
            footnotes.append(text)
        return f"[{footnotes.index(text) + 1}]"

    rows = []
    for op in result["ops"]:
        for name, sysres in result["systems"].items():
            if sysres["status"] == "skipped":
                continue
            cell = sysres["cells"].get(op)
            if cell is None:
                continue
            marks = ""
            if cell["note"]:
                marks += mark(f"{name} {op}: {cell['note']}")
            if cell["check"]:
                marks += mark(f"{name} {op}: CHECK {cell['check']}")
            if cell["na"] or cell["error"]:
                why = cell["na"] or f"error: {cell['error']}"
                rows.append([label(op), name, "n/a " + mark(f"{name} {op}: {why}"),
                             "", "", "", "", ""])
                continue
            per_row = op in ROW_OPS
            s = cell["rows_per_s"] if per_row else cell["ops_per_s"]
            rate = (f"{_fmt(s['median'])} ({_fmt(s['min'])}-{_fmt(s['max'])})"
                    + (" rows/s" if per_row else "")) if s else "-"
            ratio = f"{cell['ratio']:.2f}x" if cell["ratio"] else "-"
            bpr = _fmt(sysres["bytes_per_record"]) if op == "save" else ""
            rows.append([label(op),
                         name + (" (baseline)" if result["baseline_for"][op] == name else ""),
                         rate, ratio, _fmt(cell["round_trips_per_op"], 2),
                         _fmt(cell["server_usec_per_op"], 1), bpr, marks])
    return rows, footnotes


HEADER = ["op", "system", "ops/s median (min-max)", "x baseline", "round trips/op",
          "server µs/op", "bytes/record", "notes"]


def _ratio_matrix(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = [n for n, s in result["systems"].items() if s["status"] != "skipped"]
    rows = []
    for op in result["ops"]:
        row = [f"{label(op)} (vs {result['baseline_for'][op]})"]
        for n in names:
            cell = result["systems"][n]["cells"].get(op)
            row.append(f"{cell['ratio']:.2f}" if cell and cell.get("ratio") else "n/a")
        rows.append(row)
    return ["op", *names], rows


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _skipped(result: dict[str, Any]) -> list[str]:
    return [f"{n}: {s['status']} ({s['reason']})" for n, s in result["systems"].items()
            if s["status"] != "ok"]


def _targets_lines(result: dict[str, Any]) -> list[str]:
    """One line per target; one below it says why (targets are goals, not tests)."""
    lines = []
    for t in result["targets"]:
        codec = t["system"].removeprefix("repocket-")
        line = (f"{t['status']:<12}  {label(t['op']):<20} {codec:<8} {_x(t['ratio']):>6} "
                f"{t['against']:<27} target {t['minimum']}x")
        if t["status"] == BELOW:
            line += f": {t['why']}"
        elif t.get("not_run"):
            line += f": not run ({t['not_run']})"
        lines.append(line)
    return lines


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def text(result: dict[str, Any]) -> str:
    rows, notes = _rows(result)
    header, matrix = _ratio_matrix(result)
    parts = ["Ratio to the hand-written baseline (median of per-repeat ratios; filter/range on "
             "rows/s):",
             _text_table(header, matrix), "", _text_table(HEADER, rows), ""]
    parts += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    parts += ["", *_skipped(result)]
    return "\n".join(parts)


HEADLINE = ("repocket-compact", "repocket-envelope")  # the summary's system, and the other codec


def _best_peer(result: dict[str, Any], op: str) -> str | None:
    rates = [(rate, peer) for peer in PEERS if (rate := _rate(result, peer, op))]
    return max(rates)[1] if rates else None


def _summary_row(result: dict[str, Any], system: str, other: str | None, op: str) -> list[str]:
    rate = _rate(result, system, op)
    base = result["baseline_for"][op]
    peer = _best_peer(result, op)
    row = [label(op),
           "n/a" if rate is None else f"{rate:,.0f}" + (" rows/s" if op in ROW_OPS else ""),
           f"{_x(_ratio(result, system, base, op))} {base}",
           f"{_x(_ratio(result, system, peer, op))} {peer}" if peer else "no peer ran"]
    if other is not None:
        row.append(_x(_ratio(result, other, base, op)))
    return row


def summary(result: dict[str, Any]) -> str:
    """Where repocket stands, per operation, and the targets: the run's last words."""
    ran = [n for n in HEADLINE if result["systems"].get(n, {}).get("status") == "ok"]
    if not ran:
        return "Summary: repocket did not run (see above)."
    system, other = ran[0], (ran[1] if len(ran) > 1 else None)
    header = ["op", f"{system} ops/s", "x hand-written baseline", "x fastest peer"]
    if other is not None:
        header.append(f"{other} x baseline")
    rows = [_summary_row(result, system, other, op) for op in result["ops"]]
    meta = result["meta"]
    parts = [f"Summary: where repocket stands (n={meta['n']}, timed repeats: {meta['repeat']}; "
             "x = ratio of ops/s, filter and range on rows/s, between runs seconds apart):",
             _text_table(header, rows)]
    parts += [f"({label(op)}: {system} did not run it: {why})" for op in result["ops"]
              if (why := _not_run(result, system, op))]
    missing = [n for n in PEERS if result["systems"].get(n, {}).get("status") != "ok"]
    if missing:
        parts.append(f"(peers not run: {', '.join(missing)}; see above)")
    if result["targets"]:
        parts += ["", "Targets, per repocket codec (goals, not pass/fail tests):",
                  *[f"  {line}" for line in _targets_lines(result)]]
    return "\n".join(parts)


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    rows, notes = _rows(result)
    header, matrix = _ratio_matrix(result)
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    parts = [
        "## Benchmarks", "",
        f"`{meta['command']}` on {meta['machine']} ({meta['started']}); {versions}. "
        f"n={meta['n']} records, {meta['repeat']} timed repeats, batches of {meta['batch']}. "
        "Absolute numbers drift on shared machines: compare ratios from the same run.", "",
        "Ratio to the hand-written redis-py baseline (median of the per-repeat ratios, each "
        "between runs seconds apart; filter and range on rows/s):", "",
        _md_table(header, matrix), "", _md_table(HEADER, rows), "",
    ]
    parts += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    skipped = _skipped(result)
    if skipped:
        parts += ["", "Not run: " + "; ".join(skipped)]
    parts += ["", "Targets (goals for repocket, not pass/fail tests):", "",
              *[f"- {line}" for line in _targets_lines(result)], ""]
    return "\n".join(parts)


def profile_table(summary: dict[str, dict[str, float]]) -> str:
    cols = ["socket wait", "repocket", "redis-py", "other"]
    rows = [[op, *(f"{split[c]:.1f}" for c in cols), f"{sum(split.values()):.1f}"]
            for op, split in summary.items()]
    return _text_table(["op", *cols, "total"], rows)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def chart(result: dict[str, Any], path: Path) -> str | None:
    """Write a PNG bar chart; return why not if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart"
    names = [n for n, s in result["systems"].items() if s["status"] == "ok"]
    ops = result["ops"]
    concurrency = result.get("concurrency")
    if concurrency:
        fig, (ax, cax) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(ops)) + 6, 5),
                                      gridspec_kw={"width_ratios": [max(1, len(ops)), 4]})
        _concurrency_bars(cax, concurrency)
    else:
        fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(ops)), 5))
    width = 0.8 / max(1, len(names))
    gaps: list[tuple[float, Any]] = []  # (x, colour) of each bar a system could not run
    for i, name in enumerate(names):
        med, lo, hi = [], [], []
        for op in ops:
            cell = result["systems"][name]["cells"].get(op) or {}
            s = cell.get("rows_per_s" if op in ROW_OPS else "ops_per_s")
            m = s["median"] if s and not cell.get("error") and not cell.get("na") else 0.0
            med.append(m)
            lo.append(m - s["min"] if s and m else 0.0)
            hi.append(s["max"] - m if s and m else 0.0)
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(ops))]
        bars = ax.bar(xs, med, width, yerr=[lo, hi], label=name, capsize=2)
        gaps += [(x, bar.get_facecolor()) for x, m, bar in zip(xs, med, bars, strict=True)
                 if not m]
    ax.set_xticks(range(len(ops)))
    ax.set_xticklabels([label(op) + (" (rows/s)" if op in ROW_OPS else "") for op in ops],
                       rotation=20 if len(ops) > 8 else 0)
    ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for x, colour in gaps:  # a labelled gap, not a bar that is silently missing
        ax.text(x, bottom, " n/a", rotation=90, ha="center", va="bottom", fontsize=8, weight="bold",
                color=colour)
    ax.set_ylabel("ops/s (median, min-max), log scale")
    ax.set_title(f"repocket benchmarks, n={result['meta']['n']} ({result['meta']['machine']})")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _concurrency_bars(ax: Any, concurrency: dict[str, Any]) -> None:
    """The concurrency section: asyncio tasks and threads, repocket and the baseline."""
    columns = [("create", "create_ops_per_s"), ("get", "get_ops_per_s"),
               ("filter (rows/s)", "filter_rows_per_s"), ("delete", "delete_ops_per_s")]
    rows = concurrency["rows"]
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(columns))]
        ax.bar(xs, [row[key] for _, key in columns], width, label=f"{row['system']} {row['mode']}")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([name for name, _ in columns])
    ax.set_yscale("log")
    ax.set_title(f"{concurrency['workers']} concurrent workers (median)")
    ax.legend(fontsize=8)


__all__ = ["OPS", "build", "chart", "markdown", "summary", "text", "write_json"]
