"""``harness bench`` end to end as a user runs it: results.h5, report.md, PNGs, then compare."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import h5py
import pytest
from hdf5_helpers import assert_opens_in_pandas_and_pytables

from harness.bench.metrics import decode
from harness.bench.results import read_results
from transports.brokers import apache_unavailable

TINY = """
name: tiny
transports: [zmq-pushpull, kafka-python]
payload: binance
warmup_s: 1
duration_s: 2
drain_timeout_s: 3
scenarios:
  - {name: fixed-500, rate: 500}
  - name: sweep
    rate_mode: sweep
    rates: [500, 1000]
    transports: [zmq-pushpull]
"""


def harness(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "bench", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
@pytest.mark.kafka
def test_bench_run_writes_results_report_and_plots_then_compares(tmp_path: Path) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(TINY)
    proc = harness(str(workload), "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    assert run_dir.name.endswith("-tiny")
    for name in ("results.h5", "report.md", "latency_over_time.png", "latency_vs_rate.png"):
        assert (run_dir / name).stat().st_size > 0, name

    run = read_results(run_dir / "results.h5")
    assert run.metadata["cpu_count"] >= 1 and run.metadata["git_revision"]
    assert "kafka-python" in run.metadata["versions"]
    rows = {(r["scenario"], r["transport"], r["target_rate"]): r for r in run.summary}
    assert set(rows) == {("fixed-500", "zmq-pushpull", 500.0), ("fixed-500", "kafka-python", 500.0),
                         ("sweep", "zmq-pushpull", 500.0), ("sweep", "zmq-pushpull", 1000.0)}
    for row in rows.values():
        assert row["status"] == "ok", row["error"]
        assert row["lost"] == 0 and row["unconsumed"] == 0 and row["duplicates"] == 0
        assert row["e2e_count"] > 0 and row["e2e_p50"] <= row["e2e_p99"] <= row["e2e_max"]
    kafka = rows[("fixed-500", "kafka-python", 500.0)]
    engine = "Apache Kafka 4." if apache_unavailable() is None else "tansu "
    assert f"kafka-python {version('kafka-python')}" in kafka["identity"]
    assert f" @ {engine}" in kafka["identity"] and "embedded" in kafka["identity"]
    assert run.max_sustainable[0]["transport"] == "zmq-pushpull"
    trial = run.trials[0]
    assert decode(trial["e2e_histogram"]).get_total_count() == rows[
        (trial["scenario"], trial["transport"], trial["target_rate"])]["e2e_count"]
    assert any(r["warmup"] for r in trial["intervals"])
    with h5py.File(run_dir / "results.h5") as f:  # plain HDF5, readable without our code
        assert f["summary/table"].shape == (4,)
    assert_opens_in_pandas_and_pytables(run_dir / "results.h5", ["summary", "max_sustainable"])

    report = (run_dir / "report.md").read_text()
    assert "Scenario fixed-500" in report and "![" in report and "| zmq-pushpull |" in report
    assert "fixed-500" in proc.stdout  # the side-by-side table is printed

    compared = harness("compare", str(run_dir), str(run_dir / "results.h5"), timeout=60)
    assert compared.returncode == 0, compared.stderr
    assert "1.00x" in compared.stdout and "B/A" in compared.stdout

    missing = harness("compare", str(run_dir), str(tmp_path / "nope"), timeout=60)
    assert missing.returncode == 2 and "no results file" in missing.stderr
