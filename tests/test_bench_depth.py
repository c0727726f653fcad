"""The depth workload: real-sized depth diff frames in per-tick bursts, on both transports."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench.payloads import make_payloads
from harness.bench.results import read_results
from harness.bench.workload import load_workload

TINY = """
name: tiny-depth
transports: [zmq-pushpull, kafka-python]
payload: depth
schedule: bursts
warmup_s: 1
duration_s: 2
drain_timeout_s: 3
scenarios:
  - {name: depth-20-symbols, rate: 200, burst_size: 20}
"""


def test_depth_payloads_are_exchange_shaped_diffs_with_a_heavy_tail() -> None:
    frames = make_payloads("depth", 0, seed=0)
    sizes = sorted(len(f) for f in frames)
    assert all(f.startswith(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"')
               for f in frames)
    assert 500 < statistics.median(sizes) < 1500 and sizes[-1] > 10 * statistics.median(sizes)
    assert load_workload("depth").scenarios[0].payload == "depth"


@pytest.mark.slow
@pytest.mark.kafka
def test_bench_depth_workload_runs_on_both_transports(tmp_path: Path) -> None:
    workload = tmp_path / "tiny-depth.yaml"
    workload.write_text(TINY)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", str(workload), "--results-dir",
         str(tmp_path / "results")],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    run = read_results(run_dir / "results.h5")
    assert {r["transport"] for r in run.summary} == {"zmq-pushpull", "kafka-python"}
    for row in run.summary:
        assert row["status"] == "ok", row["error"]
        assert row["lost"] == 0 and row["e2e_count"] > 0
        assert row["pub_mb_s"] > 0.1  # ~200 frames/s of ~1 KB (mean above the median)
