"""Tables over the per-process profile JSON files: one run, or Kafka vs ZeroMQ side by side.

Used by ``harness profile summarize`` and callable from the run summary and the bench report
(``summary_table(dir)``, ``comparison_table(dir_a, dir_b)`` return Markdown-style text).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError

log = logging.getLogger("harness.profiling_report")

REQUIRED_KEYS = ("process", "wall_s", "cpu_s", "share_of_wall", "verdict", "peak_rss_mb")


def load_reports(directory: Path) -> list[dict[str, Any]]:
    """Every profile JSON directly in ``directory``, sorted by process name; others skipped."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no such profile folder")
    reports: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping %s: not a readable profile (%s)", path.name, exc)
            continue
        if isinstance(data, dict) and all(k in data for k in REQUIRED_KEYS):
            reports.append(data)
    return sorted(reports, key=lambda r: (str(r.get("command")), str(r.get("stage")), r["process"]))


def folders_to_compare(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """Two folders as given, or one folder holding subfolders with profiles (kafka/, zmq/)."""
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path}: no such profile folder")
    if len(paths) >= 2:
        return [(p.name or str(p), p) for p in paths]
    (only,) = paths
    subfolders = sorted(p for p in only.iterdir() if p.is_dir() and any(p.glob("*.json")))
    if len(subfolders) >= 2 and not any(only.glob("*.json")):
        return [(p.name, p) for p in subfolders]
    return [(only.name or str(only), only)]


def summary_table(directory: Path) -> str:
    """One row per process: the split of its wall time and the verdict."""
    reports = load_reports(directory)
    if not reports:
        return f"{directory}: no profiles (run with harness --profile {directory} ...)\n"
    header = ("process", "transport", "wall s", "CPU s", "CPU/wall", "main busy %", "recv %",
              "send %", "sink %", "own %", "blocked %", "peak RSS MiB", "verdict")
    rows = [header] + [_row(r) for r in reports]
    return _table(rows) + "\n" + _hot_spots(reports)


def comparison_table(folders: Sequence[tuple[str, Path]]) -> str:
    """Same workload on different transports: per stage, each folder's split side by side."""
    by_folder = {label: load_reports(path) for label, path in folders}
    stages = sorted({_stage_key(r) for reports in by_folder.values() for r in reports})
    header = ["stage", "metric", *by_folder]
    rows: list[Sequence[str]] = [header]
    metrics = (
        ("wall s", lambda r: f"{r['wall_s']:.1f}"),
        ("CPU/wall", lambda r: f"{r['cpu_wall_ratio']:.2f}"),
        ("main busy %", _main_busy),
        ("in transport %", lambda r: _pct(r["share_of_wall"]["transport_receive"]
                                          + r["share_of_wall"]["transport_send"])),
        ("in sink %", lambda r: _pct(r["share_of_wall"]["sink"])),
        ("own code %", lambda r: _pct(r["share_of_wall"]["own"])),
        ("blocked %", lambda r: _pct(r.get("blocked_share", 0.0))),
        ("peak RSS MiB", lambda r: f"{r['peak_rss_mb']:.0f}"),
        ("verdict", lambda r: str(r["verdict"])),
    )
    for stage in stages:
        picked = {label: _merge([r for r in reports if _stage_key(r) == stage])
                  for label, reports in by_folder.items()}
        for name, fmt in metrics:
            rows.append([stage, name, *(fmt(r) if r else "-" for r in picked.values())])
    return _table(rows)


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several processes of one stage (e.g. 2 bench producers): wall-weighted mean of shares."""
    if not reports:
        return None
    if len(reports) == 1:
        return reports[0]
    wall = sum(r["wall_s"] for r in reports) or 1e-9
    shares = {k: sum(r["share_of_wall"][k] * r["wall_s"] for r in reports) / wall
              for k in reports[0]["share_of_wall"]}
    verdicts = sorted({str(r["verdict"]) for r in reports})
    return {
        "blocked_share": sum(r.get("blocked_share", 0.0) * r["wall_s"] for r in reports) / wall,
        "wall_s": max(r["wall_s"] for r in reports),
        "cpu_wall_ratio": sum(r["cpu_s"] for r in reports) / wall,
        "main_busy_share": None if any(r.get("main_thread_cpu_s") is None for r in reports)
        else sum(r["main_thread_cpu_s"] + (r.get("main_thread_runqueue_s") or 0.0)
                 for r in reports) / wall,
        "share_of_wall": shares,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in reports),
        "verdict": " / ".join(verdicts) + f" ({len(reports)} processes)",
    }


def _stage_key(report: dict[str, Any]) -> str:
    return f"{report.get('command')} {report.get('stage')}"


def _row(r: dict[str, Any]) -> list[str]:
    share = r["share_of_wall"]
    return [
        r["process"], str(r.get("transport") or "-"), f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}",
        f"{r['cpu_wall_ratio']:.2f}", _main_busy(r), _pct(share["transport_receive"]),
        _pct(share["transport_send"]), _pct(share["sink"]), _pct(share["own"]),
        _pct(r.get("blocked_share", 0.0)), f"{r['peak_rss_mb']:.0f}", str(r["verdict"]),
    ]


def _hot_spots(reports: list[dict[str, Any]]) -> str:
    lines = ["own (non-waiting) time by package, % of wall (main thread):"]
    for r in reports:
        packages = ", ".join(f"{name} {frac:.0%}" for name, _s, frac in
                             r.get("own_time_by_package", [])[:6])
        lines.append(f"  {r['process']}: {packages or '-'}")
    return "\n".join(lines) + "\n"


def _main_busy(r: dict[str, Any]) -> str:
    """The profiled thread's on-core + runnable share of wall (what "CPU-bound" rests on)."""
    if "main_busy_share" in r:  # several processes merged
        return "-" if r["main_busy_share"] is None else _pct(r["main_busy_share"])
    cpu, runnable = r.get("main_thread_cpu_s"), r.get("main_thread_runqueue_s")
    if cpu is None or not r.get("wall_s"):
        return "-"
    return _pct((cpu + (runnable or 0.0)) / r["wall_s"])


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines) + "\n"
