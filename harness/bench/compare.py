"""``harness bench compare A B``: the same trials of two runs side by side, as B/A ratios.

Rows are matched by (scenario, transport, target rate); a trial present in only one run is
listed with "-" so nothing silently disappears from a comparison.
"""

from __future__ import annotations

import math
from typing import Any

from harness.bench.report import TableData, fmt_int, fmt_ms
from harness.bench.results import RunData
from harness.bench.verdict import compare_verdict

METRICS = (("consumed msg/s", "cons_rate", fmt_int), ("p50 ms", "e2e_p50", fmt_ms),
           ("p99 ms", "e2e_p99", fmt_ms), ("p99.9 ms", "e2e_p99_9", fmt_ms),
           ("max ms", "e2e_max", fmt_ms), ("lost", "lost", fmt_int))


def ratio(a: Any, b: Any) -> str:
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return "-"
    if math.isnan(fa) or math.isnan(fb):
        return "-"
    if fa == 0:
        return "=" if fb == 0 else "new"
    return f"{fb / fa:.2f}x"


def compare_runs(a: RunData, b: RunData) -> list[TableData]:
    tables = []
    ms_a = {(m["scenario"], m["transport"]): m for m in a.max_sustainable}
    ms_b = {(m["scenario"], m["transport"]): m for m in b.max_sustainable}
    if ms_a or ms_b:
        rows = []
        for key in dict.fromkeys([*ms_a, *ms_b]):
            va = ms_a.get(key, {}).get("max_rate")
            vb = ms_b.get(key, {}).get("max_rate")
            rows.append([key[0], key[1], fmt_int(va), fmt_int(vb), ratio(va, vb)])
        tables.append(TableData("Max sustainable throughput (msg/s)",
                                ["scenario", "transport", "A", "B", "B/A"], rows))
    rows_a = {_key(r): r for r in a.summary if r.get("phase") != "sweep"}
    rows_b = {_key(r): r for r in b.summary if r.get("phase") != "sweep"}
    # One row per (trial, metric): A, B and B/A stay side by side within 100 columns.
    rows = []
    for key in dict.fromkeys([*rows_a, *rows_b]):
        ra, rb = rows_a.get(key, {}), rows_b.get(key, {})
        rate = fmt_int(key[2]) if key[2] else "max"
        for n, (label, column, fmt) in enumerate(METRICS):
            rows.append([key[0] if n == 0 else "", key[1] if n == 0 else "",
                         rate if n == 0 else "", label, fmt(ra.get(column)),
                         fmt(rb.get(column)), ratio(ra.get(column), rb.get(column))])
    if rows:
        tables.append(TableData("Fixed-rate scenarios",
                                ["scenario", "transport", "rate", "metric", "A", "B", "B/A"],
                                rows, f"A = {a.path.parent.name}, B = {b.path.parent.name}"))
    return tables


def compare_sentences(a: RunData, b: RunData) -> list[str]:
    return compare_verdict(a.summary, b.summary, a.max_sustainable, b.max_sustainable,
                           a.trials, b.trials)


def _key(row: dict[str, Any]) -> tuple[str, str, float]:
    return str(row["scenario"]), str(row["transport"]), float(row.get("target_rate", 0.0))
