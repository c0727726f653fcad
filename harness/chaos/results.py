"""Chaos results in the benchmark results format: one HDF5 file plus a Markdown report.

``chaos.h5`` has the layout of ``harness bench`` files (root ``metadata`` JSON attribute with git
revision, host, versions, settings; tables written by the same writer) with one ``/chaos`` table:
a row per scenario x transport. It is named ``chaos.h5`` rather than ``results.h5`` so the
benchmark notebook's "newest results.h5" lookup keeps finding benchmark runs; read it with
``read_chaos``, ``pd.read_hdf(p, "chaos")`` or PyTables.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import h5py

from harness.bench.results import (
    create_results_file,
    host_metadata,
    read_table,
    write_root_attributes,
    write_table,
)
from harness.chaos.scenarios import ScenarioResult

COLUMNS = ("delivered", "lost", "duplicated", "reordered", "reported_lost", "reported_net",
           "recovery_s")


def chaos_metadata(settings: dict[str, Any]) -> dict[str, Any]:
    return {"workload": "chaos", **host_metadata(settings)}


def write_chaos(path: Path, results: list[ScenarioResult], metadata: dict[str, Any],
                partial: bool) -> None:
    tmp = path.with_suffix(".h5.tmp")
    with create_results_file(tmp) as f:
        write_root_attributes(f, {**metadata, "partial": partial})
        write_table(f, "chaos", [r.row() for r in results])
    os.replace(tmp, path)


def read_chaos(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    file = path / "chaos.h5" if path.is_dir() else path
    with h5py.File(file, "r") as f:
        return json.loads(f.attrs["metadata"]), read_table(f, "chaos")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def markdown(results: list[ScenarioResult], metadata: dict[str, Any]) -> str:
    head = ["scenario", "transport", "sent", *COLUMNS, "passed", "expectation"]
    lines = [
        "# harness chaos",
        "",
        f"git {metadata.get('git_revision')} on {metadata.get('host')}, "
        f"{metadata.get('started')}; settings: `{json.dumps(metadata.get('settings', {}))}`",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in results:
        cells = [r.scenario, r.transport, r.sent, *(getattr(r, c) for c in COLUMNS),
                 "yes" if r.passed else ("ERROR" if r.status != "ok" else "NO"), r.expectation]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    brokers = {r.transport: r.broker for r in results if r.broker}
    if brokers:
        lines += ["", "## Brokers", ""]
        lines += [f"- **{t}**: {b}" for t, b in sorted(brokers.items())]
    failovers = [r for r in results if r.scenario == "failover" and r.status == "ok"]
    if failovers:
        lines += ["", "## Failover (kill -9 mid-stream)", "",
                  "| transport | what was killed | failover s | latency p50 / p99 before ms | "
                  "worst latency around it ms | lost | duplicated |",
                  "|---|---|---|---|---|---|---|"]
        for r in failovers:
            x = r.extra
            killed = (f"partition leader (node {x.get('killed_node')})" if "killed_node" in x
                      else "the processor (PULL peer), restarted")
            lines.append(f"| {r.transport} | {killed} | {_fmt(x.get('failover_s', math.nan))} | "
                         f"{_fmt(x.get('baseline_p50_ms', math.nan))} / "
                         f"{_fmt(x.get('baseline_p99_ms', math.nan))} | "
                         f"{_fmt(x.get('spike_max_ms', math.nan))} | {r.lost} | {r.duplicated} |")
    lines += ["", "## Notes", ""]
    lines += [f"- **{r.scenario} / {r.transport}**: {r.note.strip()}" for r in results
              if r.note.strip()]
    lines += ["", "lost = sent - distinct (producer, seq) in the HDF5 trades table (the truth); "
              "reported_lost = what the processor wrote to its gaps table; "
              "reported_net = those gaps minus sequence numbers the file holds after all "
              "(a restarted ZeroMQ processor does not know what its predecessor received); "
              "recovery_s = worst "
              "time from the end of a fault until the file held more trades than before it."]
    return "\n".join(lines) + "\n"


def print_table(results: list[ScenarioResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="harness chaos: scenario x transport")
    for col in ("scenario", "transport", "sent", *COLUMNS, "passed"):
        table.add_column(col, justify="left" if col in ("scenario", "transport") else "right")
    for r in results:
        failed = "[red]ERROR[/]" if r.status != "ok" else "[red]NO[/]"
        ok = "[green]yes[/]" if r.passed else failed
        table.add_row(r.scenario, r.transport, _fmt(r.sent),
                      *(_fmt(getattr(r, c)) for c in COLUMNS), ok)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file or pipe: keep the column names whole
    console.print(table)
    for transport, broker in sorted({r.transport: r.broker for r in results if r.broker}.items()):
        console.print(f"{transport}: {broker}")
