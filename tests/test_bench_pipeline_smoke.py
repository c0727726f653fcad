"""Smoke run of the pipeline benchmark command: every row of its table, in one short run.

The figures of so few trades mean nothing (start-up dominates); what is checked is that the
command runs end to end, prints the raw loops beside the pipeline rows with their ratios and
names the Kafka broker, and that every pipeline row stored every trade (the benchmark asserts it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pipeline_benchmark_prints_raw_loops_pipelines_and_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/test_bench_pipeline.py", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("  ")[0].strip(): line for line in done.stdout.splitlines()[2:]}
    names = " | ".join(rows)
    for expected in ("raw zmq", "pipeline zmq (default", "pipeline zmq batch=1 ",
                     "pipeline zmq batch_linger_ms=1", "raw kafka-python",
                     "pipeline kafka-python", "processor alone", "producer alone"):  # fmt: skip
        assert any(name.startswith(expected) for name in rows), f"{expected!r} not in {names}"
    assert sum("x raw" in line for line in rows.values()) == 4
    kafka_rows = [line for name, line in rows.items() if "kafka" in name]
    assert all("Kafka" in line or "Tansu" in line for line in kafka_rows), kafka_rows
    assert all(len(line) <= 100 for line in done.stdout.splitlines())
