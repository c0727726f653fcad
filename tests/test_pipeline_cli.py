"""``harness run`` and ``harness demo`` as a user runs them: real child processes per stage, exit 0,
a summary table, HDF5 files with candles, nothing written outside --output-dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sinks.hdf5_reader import open_snapshot

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(cwd: Path, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def candle_rows(path: Path) -> dict[str, int]:
    snap = open_snapshot(path)
    try:
        return dict(snap.rows)
    finally:
        snap.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["zmq", "kafka"])
def test_harness_run_finishes_with_table_and_candles(tmp_path: Path, transport: str) -> None:
    out = tmp_path / "out"
    done = harness(tmp_path, "run", "--transport", transport, "--duration", "4",
                   "--no-twitter", "--output-dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trades rows" in done.stdout and "candles_1s rows" in done.stdout
    rows = candle_rows(out / transport / "market.h5")
    assert rows["trades"] > 0 and rows["candles_1s"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing beside --output-dir


@pytest.mark.slow
def test_harness_demo_runs_both_transports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = harness(tmp_path, "demo", "--duration", "3", "--output-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HDF5 output:" in done.stdout and "Traceback" not in done.stderr
    for transport in ("zmq", "kafka"):
        rows = candle_rows(out / transport / "market.h5")
        assert rows["trades"] > 0 and rows["candles_1s"] > 0
        assert candle_rows(out / transport / "sentiment.h5")["tweets"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_bad_transport_is_a_one_line_error(tmp_path: Path) -> None:
    done = harness(tmp_path, "run", "--transport", "bogus", "--output-dir", str(tmp_path / "o"),
                   timeout=30)  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "bogus" in last and "kafka" in last and "zmq" in last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()
