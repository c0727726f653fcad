"""Turn a run's results file into tables (terminal + Markdown), PNG plots and report.md.

Everything is derived from results.h5, so a report can be rebuilt from the file alone.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import matplotlib

matplotlib.use("Agg")  # no display here; must precede pyplot

import matplotlib.pyplot as plt

from harness.bench.results import RunData
from harness.bench.verdict import bench_verdict
from harness.text_table import TERMINAL_WIDTH, render

PCTS = (("p50", "e2e_p50"), ("p90", "e2e_p90"), ("p99", "e2e_p99"), ("p99.9", "e2e_p99_9"),
        ("p99.99", "e2e_p99_99"), ("max", "e2e_max"))


@dataclass
class TableData:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


def fmt_ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = float(value)
    return f"{v:.3f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def fmt_int(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{round(float(value)):,}"


def _status(row: dict[str, Any]) -> str:
    return "" if row.get("status") == "ok" else f" ({row.get('status')}: {row.get('error')})"


def build_tables(run: RunData) -> list[TableData]:
    tables: list[TableData] = []
    identities = {str(r["transport"]): str(r.get("identity") or "") for r in run.summary}
    if identities:
        tables.append(TableData(
            "Transports under test", ["transport", "identity (client @ broker)"],
            [[name, ident or "-"] for name, ident in identities.items()]))
    if run.max_sustainable:
        rows = []
        for m in run.max_sustainable:
            shown = fmt_int(m["max_rate"]) if m["max_rate"] else "none"
            if m.get("limited_by") in ("budget", "max_rate") and m["max_rate"]:
                shown = f">= {shown} ({m['limited_by']})"  # no failing rate found above it
            rows.append([m["transport"], shown,
                         fmt_ms(m.get("p99_at_max_ms")), fmt_ms(m["latency_bound_ms"]),
                         fmt_int(m["steps"])])
        tables.append(TableData(
            f"Max sustainable throughput ({run.max_sustainable[0]['scenario']})",
            ["transport", "max msg/s", "p99 at max (ms)", "p99 bound (ms)", "steps"],
            rows,
            "Highest rate with p99 end-to-end latency under the bound, nothing lost or left "
            "unconsumed, and producers keeping the intended pace; '>=' means the search hit its "
            "time budget or rate ceiling before a failing rate.",
        ))
    scenarios: dict[str, list[dict[str, Any]]] = {}
    for row in run.summary:
        if row.get("phase") != "sweep":
            scenarios.setdefault(str(row["scenario"]), []).append(row)
    for name, rows_in in scenarios.items():
        headers = ["transport", "target msg/s", "sent msg/s", "consumed msg/s", "MB/s",
                   *[f"{p} ms" for p, _ in PCTS], "lost", "unconsumed", "not sent", "dup",
                   "max backlog",
                   "CPU % prod/cons/broker"]
        rows = []
        for r in rows_in:
            cpu = "/".join(fmt_int(r.get(f"{role}_cpu_mean"))
                           for role in ("producer", "consumer", "broker"))
            target = fmt_int(r["target_rate"]) if r.get("target_rate") else "max"
            rows.append([
                str(r["transport"]) + _status(r), target, fmt_int(r.get("pub_rate")),
                fmt_int(r.get("cons_rate")), f"{float(r.get('cons_mb_s', math.nan)):.2f}",
                *[fmt_ms(r.get(key)) for _, key in PCTS],
                fmt_int(r.get("lost")), fmt_int(r.get("unconsumed")), fmt_int(r.get("not_sent")),
                fmt_int(r.get("duplicates")), fmt_int(r.get("max_backlog")), cpu,
            ])
        tables.append(TableData(
            f"Scenario {name}", headers, rows,
            "End-to-end latency = receive time - intended send time (open loop); warm-up "
            "discarded. lost = sequence gaps (dropped by the transport); unconsumed = the tail "
            "still in flight when consumers stopped (kept by Kafka, discarded by ZeroMQ); "
            "not sent = scheduled messages a blocked producer never got out before the end.",
        ))
    sweep_rows = [r for r in run.summary if r.get("phase") == "sweep"]
    if sweep_rows:
        rows = [[str(r["transport"]) + _status(r), fmt_int(r["target_rate"]),
                 fmt_int(r.get("pub_rate")), fmt_int(r.get("cons_rate")),
                 fmt_ms(r.get("e2e_p50")), fmt_ms(r.get("e2e_p99")), fmt_ms(r.get("e2e_max")),
                 fmt_int(r.get("lost")), fmt_int(r.get("unconsumed")),
                 "yes" if r.get("sustainable") else "no"]
                for r in sweep_rows]
        tables.append(TableData(
            "Sweep steps", ["transport", "target msg/s", "sent msg/s", "consumed msg/s",
                            "p50 ms", "p99 ms", "max ms", "lost", "unconsumed", "sustainable"],
            rows))
    return tables


#: Columns left out of the terminal tables (they stay in report.md), so those fit 100 columns.
TERMINAL_SKIP = frozenset({"consumed msg/s", "MB/s", "p90 ms", "p99.99 ms", "dup"})


def terminal_table(t: TableData) -> TableData:
    keep = [i for i, h in enumerate(t.headers) if h not in TERMINAL_SKIP]
    return TableData(t.title, [t.headers[i] for i in keep],
                     [[row[i] for i in keep] for row in t.rows], t.note)


def print_tables(tables: Sequence[TableData], width: int | None = TERMINAL_WIDTH,
                 file: TextIO | None = None) -> None:
    """Plain-text tables within ``width`` columns (wider ones wrap into blocks of columns)."""
    for t in tables:
        shown = terminal_table(t) if width else t
        keys = 2 if shown.headers[:2] == ["scenario", "transport"] else 1
        print(render(shown.headers, shown.rows, width=width, keys=keys, title=t.title,
                     note=t.note) + "\n", file=file or sys.stdout)


def verdict_lines(run: RunData) -> list[str]:
    return bench_verdict(run.summary, run.max_sustainable, run.trials)


def markdown_table(t: TableData) -> str:
    lines = [f"### {t.title}", ""]
    if t.note:
        lines += [t.note, ""]
    lines.append("| " + " | ".join(t.headers) + " |")
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots


def plot_latency_vs_rate(run: RunData, path: Path) -> bool:
    rows = [r for r in run.summary if r.get("phase") == "sweep" and r.get("e2e_count", 0)]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for transport in dict.fromkeys(r["transport"] for r in rows):
        points = sorted((r["target_rate"], r["e2e_p50"], r["e2e_p99"]) for r in rows
                        if r["transport"] == transport)
        xs = [p[0] for p in points]
        line = ax.plot(xs, [p[2] for p in points], marker="o", label=f"{transport} p99")[0]
        ax.plot(xs, [p[1] for p in points], marker=".", linestyle="--",
                color=line.get_color(), label=f"{transport} p50")
    bound = rows[0].get("latency_bound_ms")
    if bound:
        ax.axhline(float(bound), color="grey", linestyle=":", label=f"bound {bound:g} ms")
    ax.set(xscale="log", yscale="log", xlabel="target rate (msg/s)",
           ylabel="end-to-end latency (ms)", title="Latency percentiles vs rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_throughput(run: RunData, path: Path) -> bool:
    if not run.max_sustainable:
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [m["transport"] for m in run.max_sustainable]
    values = [float(m["max_rate"]) for m in run.max_sustainable]
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    ax.set(ylabel="msg/s", title="Max sustainable throughput per transport")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_over_time(run: RunData, path: Path, column: str, ylabel: str, title: str) -> bool:
    trials = [t for t in run.trials if t.get("phase") != "sweep" and t["intervals"]]
    scenarios = list(dict.fromkeys(t["scenario"] for t in trials))
    if not scenarios:
        return False
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(8, 3 * len(scenarios)), squeeze=False)
    for ax, scenario in zip(axes[:, 0], scenarios, strict=True):
        for t in trials:
            if t["scenario"] != scenario:
                continue
            xs = [r["t_s"] for r in t["intervals"]]
            ys = [r[column] for r in t["intervals"]]
            ax.plot(xs, ys, marker=".", label=t["transport"])
        ax.set(title=f"{title}: {scenario}", xlabel="seconds since start (1 s intervals)",
               ylabel=ylabel)
        if column.startswith("e2e"):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(run: RunData, out_dir: Path, command: str = "harness bench") -> Path:
    """Render PNGs and report.md next to results.h5; returns the report path."""
    tables = build_tables(run)
    images = []
    if plot_latency_vs_rate(run, out_dir / "latency_vs_rate.png"):
        images.append(("Latency percentiles vs rate", "latency_vs_rate.png"))
    if plot_throughput(run, out_dir / "throughput.png"):
        images.append(("Max sustainable throughput", "throughput.png"))
    if plot_over_time(run, out_dir / "latency_over_time.png", "e2e_p99",
                      "p99 latency (ms)", "p99 per interval"):
        images.append(("p99 latency over time", "latency_over_time.png"))
    if plot_over_time(run, out_dir / "backlog_over_time.png", "backlog",
                      "messages", "backlog (published - consumed)"):
        images.append(("Backlog over time", "backlog_over_time.png"))
    meta = run.metadata
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    lines = [
        f"# Benchmark report: {meta.get('workload')}",
        "",
        f"Command: `{command}`  ",
        f"Started {meta.get('started')} on {meta.get('host')} ({meta.get('cpu_count')} CPUs, "
        f"{meta.get('platform')}), git {meta.get('git_revision')}, Python "
        f"{meta.get('python')}.  ",
        f"Kafka broker: {meta.get('broker') or 'not used'}.  ",
        f"Versions: {versions}.",
        "",
    ]
    if meta.get("partial"):
        lines += ["**Partial run: stopped before every trial finished.**", ""]
    lines += [
        "Method: open-loop producers send on a schedule and stamp each message with its "
        "*intended* send time; end-to-end latency is receive time minus intended time, so a "
        "stalled sender or consumer shows up as latency (no coordinated omission). Publish "
        "latency is the time `publish()` returned minus the intended time. Producers and "
        "consumers are separate processes using the same `transports` interface; "
        "HdrHistogram per 1 s interval, warm-up intervals discarded; loss from per-producer "
        "sequence numbers. All processes share one 2-core host, so compare transports as "
        "ratios within one run.",
        "",
    ]
    verdict = verdict_lines(run)
    if verdict:
        lines += ["## Verdict", "", *[_markdown_line(v) for v in verdict], ""]
    lines += [markdown_table(t) for t in tables]
    lines += [f"### {title}\n\n![{title}]({name})\n" for title, name in images]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def _markdown_line(line: str) -> str:
    """Verdict lines as a Markdown list (indented lines nest under the one before)."""
    return ("  - " if line.startswith("  ") else "- ") + line.strip()
