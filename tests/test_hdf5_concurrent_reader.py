"""A second process reads the sink file (SWMR) while this one writes it.

The reader must only ever see a consistent prefix: ``trades.ts`` is exactly 0..n-1, ``marks``
agrees with it (one mark per ten trades), the stored position equals n, n never goes backwards,
and eventually it sees every row. It also has to see intermediate states, or the test would not
prove concurrency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sinks.hdf5 import Hdf5Sink

REPO = Path(__file__).resolve().parents[1]
TRADE = np.dtype([("ts", "i8"), ("symbol", "S12"), ("price", "f8")])
MARK = np.dtype([("offset", "i8")])

READER = r"""
import json, sys, time
import numpy as np
import pytest
from sinks.hdf5_reader import open_snapshot
path, expected, deadline_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + deadline_s
seen, reads, last = set(), 0, -1
with open_snapshot(path) as snap:
    while time.monotonic() < deadline:
        snap.refresh()
        trades, marks = snap.read("trades"), snap.read("marks")
        n = len(trades)
        reads += 1
        if not np.array_equal(trades["ts"], np.arange(n)):
            sys.exit(f"inconsistent trades at n={n}")
        if not np.array_equal(marks["offset"], np.arange(0, n, 10)):
            sys.exit(f"marks disagree with trades at n={n}: {len(marks)} marks")
        if snap.positions.get(("trades", 0), 0) != n:
            sys.exit(f"position {snap.positions} != rows {n}")
        if n < last:
            sys.exit(f"went backwards: {last} -> {n}")
        last = n
        seen.add(n)
        if n == expected:
            break
print(json.dumps({"reads": reads, "distinct": len(seen), "last": last}))
"""


@pytest.mark.slow
def test_reader_process_sees_consistent_prefixes_while_writer_appends(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    flushes, batch = 150, 1_000
    total = flushes * batch
    sink = Hdf5Sink(path, {"trades": TRADE, "marks": MARK}, {}, require_positions=True)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(total), "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    try:
        time.sleep(0.3)  # let the reader start reading an almost empty file
        offset = 0
        for _ in range(flushes):
            rows = np.zeros(batch, TRADE)
            rows["ts"] = np.arange(offset, offset + batch)
            rows["symbol"] = b"ETHUSDT"
            sink.append("trades", rows)
            sink.append("marks", [(o,) for o in range(offset, offset + batch, 10)])
            offset += batch
            sink.flush(positions={("trades", 0): offset})
            time.sleep(0.005)
        out, err = reader.communicate(timeout=150)
    finally:
        sink.close()
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    result = json.loads(out)
    assert result["last"] == total, result
    assert result["distinct"] >= 3, f"reader never saw the file grow: {result}"
