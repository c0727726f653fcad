"""``harness run`` with depth streams: the candle processor also keeps the order books."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sinks.hdf5_reader import open_snapshot

pytestmark = pytest.mark.slow


def test_harness_run_with_depth_writes_depth_rows(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--transport", "zmq", "--duration", "4",
         "--no-twitter", "--streams", "trade,depth@100ms,depth5", "--trade-rate", "500",
         "--output-dir", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "depth_1s rows" in done.stdout
    with open_snapshot(out / "latest" / "zmq" / "market.h5") as snap:
        depth = snap.read("depth_1s")
        assert snap.rows["trades"] > 0 and snap.rows["depth_partial_1s"] > 0
    assert len(depth) >= 4 and depth["synced"].all() and (depth["gaps"] == 0).all()
    assert (depth["bid_px"][:, 0] < depth["ask_px"][:, 0]).all()
