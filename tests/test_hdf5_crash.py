"""kill -9 of a writer process mid-write: the file stays readable, holds every row up to the last
completed flush, and resume continues it so that the final file has every row exactly once.

The child plays a processor reading a replayable source: offset i produces row ``ts=i`` in
``trades`` and, every tenth offset, a row in ``marks``; each flush stores the next offset. On
start it resumes from the file's positions, so a killed run is replayed from the checkpoint.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_reader import open_snapshot

REPO = Path(__file__).resolve().parents[1]
TOPIC = "trades"

CHILD = r"""
import sys, numpy as np
from sinks.hdf5 import Hdf5Sink
path, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
TRADE = np.dtype([("ts", "i8"), ("symbol", "S12"), ("price", "f8"), ("qty", "f8")])
MARK = np.dtype([("offset", "i8")])
sink = Hdf5Sink.open_for_resume(path, {"trades": TRADE, "marks": MARK}, {"role": "crash-child"},
                                require_positions=True, chunk_rows=4096)
offset = sink.resume_positions().get(("trades", 0), 0)
state = int(sink.resume_state() or b"0")
assert state == offset, (state, offset)
print("resumed", offset, flush=True)
while offset < total:
    end = min(total, offset + batch)
    rows = np.zeros(end - offset, TRADE)
    rows["ts"] = np.arange(offset, end)
    rows["symbol"] = b"BTCUSDT"
    rows["price"] = rows["ts"] * 0.5
    sink.append("trades", rows)
    marks = [(o,) for o in range(offset, end) if o % 10 == 0]
    sink.append("marks", marks)
    sink.flush(positions={("trades", 0): end}, state=str(end).encode())
    offset = end
    print("flushed", offset, flush=True)
sink.close()
print("done", offset, flush=True)
"""


def _start_child(path: Path, total: int, batch: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(total), str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _assert_exact_prefix(path: Path, at_least: int) -> int:
    """The file holds offsets 0..n-1 exactly once in both tables, positions == n, n >= at_least."""
    with open_snapshot(path) as snap:
        trades = snap.read("trades")
        marks = snap.read("marks")
        positions = snap.positions
        state = snap.checkpoint.state if snap.checkpoint else b""
    n = len(trades)
    assert n >= at_least, f"file lost flushed rows: {n} < {at_least}"
    np.testing.assert_array_equal(trades["ts"], np.arange(n))
    np.testing.assert_array_equal(trades["price"], np.arange(n) * 0.5)
    assert (trades["symbol"] == b"BTCUSDT").all()
    np.testing.assert_array_equal(marks["offset"], np.arange(0, n, 10))
    assert positions.get((TOPIC, 0), 0) == n
    assert int(state or b"0") == n
    return n


@pytest.mark.slow
def test_kill_9_mid_write_keeps_every_flushed_row_and_resume_is_exactly_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261122)
    path = tmp_path / "crash.h5"
    endless, batch = 10**12, 1_000
    last_reported = 0
    for _ in range(5):
        child = _start_child(path, endless, batch)
        assert child.stdout is not None
        first = child.stdout.readline().split()
        assert first and first[0] == "resumed", child.stderr.read() if child.stderr else ""
        resumed_at = int(first[1])
        assert resumed_at >= last_reported
        time.sleep(rng.uniform(0.02, 0.5))
        child.send_signal(signal.SIGKILL)
        out, _err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        reported = [int(line.split()[1]) for line in out.splitlines() if line.startswith("flushed")]
        last_reported = reported[-1] if reported else resumed_at
        # a flush may complete after its report could be printed: the file may be one ahead
        n = _assert_exact_prefix(path, at_least=last_reported)
        assert n <= last_reported + batch

    total = last_reported + 5 * batch + 7

    child = _start_child(path, total, batch)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.splitlines()[-1] == f"done {total}"
    assert _assert_exact_prefix(path, at_least=total) == total

    # a clean close leaves a file that plain (non-SWMR) readers and a new resume accept
    sink = Hdf5Sink.open_for_resume(path, {"trades": _trade_dtype(), "marks": _mark_dtype()})
    assert sink.resume_positions() == {(TOPIC, 0): total}
    assert sink.dropped_on_resume == {}
    sink.close()


def _trade_dtype() -> np.dtype:
    return np.dtype([("ts", "i8"), ("symbol", "S12"), ("price", "f8"), ("qty", "f8")])


def _mark_dtype() -> np.dtype:
    return np.dtype([("offset", "i8")])


def test_killed_writer_file_is_rebuilt_and_unflushed_rows_dropped(tmp_path: Path) -> None:
    """Rows written after the last checkpoint (buffer flushed by HDF5, no commit) are cut."""
    path = tmp_path / "torn.h5"
    child_code = r"""
import os, signal, sys, numpy as np
from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_layout import TableLayout, write_rows
from sinks.hdf5_schema import CHECKPOINTS
T = np.dtype([("ts", "i8"), ("symbol", "S12"), ("price", "f8"), ("qty", "f8")])
M = np.dtype([("offset", "i8")])
sink = Hdf5Sink(sys.argv[1], {"trades": T, "marks": M}, {}, require_positions=True)
rows = np.zeros(100, T); rows["ts"] = np.arange(100)
rows["symbol"] = b"BTCUSDT"; rows["price"] = rows["ts"] * 0.5
sink.append("trades", rows); sink.append("marks", [(o,) for o in range(0, 100, 10)])
sink.flush(positions={("trades", 0): 100}, state=b"100")
# simulate dying between data and commit: rows on disk, a torn (zero) checkpoint record
ds = sink._datasets["trades"]; ds.resize((150,))
write_rows(ds, 100, np.zeros(50, T), TableLayout.of(T))
ck = sink._file[CHECKPOINTS]; ck.resize((ck.shape[0] + 1,))
sink._file.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", child_code, str(path)], env=env, cwd=REPO, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _assert_exact_prefix(path, at_least=100) == 100
    sink = Hdf5Sink.open_for_resume(path, {"trades": _trade_dtype(), "marks": _mark_dtype()})
    try:
        assert sink.resume_positions() == {(TOPIC, 0): 100}
        assert sink.resume_state() == b"100"
        assert sink.dropped_on_resume["trades"] == 50
        assert sink.counts["trades"] == 100
    finally:
        sink.close()
    assert _assert_exact_prefix(path, at_least=100) == 100
