"""A recording gives the same HDF5 output replayed by the producer or served by the emulator.

The recording is made the way a user makes one: the live producer against the exchange (here
the emulator) with ``--record``, trades and depth diffs plus the REST snapshots it fetched.
Path A replays it (``--source replay``); path B has the emulator replay it "as it happened"
(timestamps rebased to now by whole seconds) to the live producer, which fetches its own REST
snapshots. Both feed ``harness process candles --with-depth`` over ZeroMQ. Trades and 1 s
candles must be equal (times shifted back by the emulator's rebase offset); the order books
must be equal from the first second both are in sync on: when path B synchronises depends on
when its REST answer arrives, which no replay can reproduce.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.recording import read_recording
from emulators.binance import emulator_thread
from sinks.hdf5_reader import open_snapshot
from transports.brokers import free_tcp_port

pytestmark = pytest.mark.slow

HARNESS = [sys.executable, "-m", "harness.cli"]
STREAMS = "trade,depth@100ms"


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    try:
        assert proc.wait(timeout) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def processor(url: str, output: Path, log: Path) -> subprocess.Popen[bytes]:
    return start([*HARNESS, "process", "candles", "--with-depth", "--windows", "1s",
                  "--transport", url, "--output", str(output), "--idle-exit", "2",
                  "--flush-interval", "0.2", "--quiet"], log)  # fmt: skip


def live_producer(endpoint: str, url: str, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return start([*HARNESS, "produce", "binance", "--source", "live", "--endpoint", endpoint,
                  "--transport", url, "--symbols", "btcusdt", "--streams", STREAMS,
                  "--output-dir", str(out), *extra], out / "producer.log")  # fmt: skip


def tables(path: Path) -> dict[str, np.ndarray]:
    with open_snapshot(path) as snap:
        return {name: snap.read(name) for name in ("trades", "candles_1s", "depth_1s",
                                                    "dead_letters")}


def shifted(rows: np.ndarray, offset_ms: int, *fields: str) -> np.ndarray:
    out = rows.copy()
    for name in fields:
        out[name] -= offset_ms
    return out


def test_replay_and_emulator_replay_give_the_same_output(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl.gz"
    record_dir = tmp_path / "record"
    record_dir.mkdir()
    with emulator_thread(rate=60, symbols=("btcusdt",)) as emu:
        pubsub = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pubsub"  # nobody listens
        recorder = live_producer(emu.url, pubsub, record_dir, "--record", str(rec),
                                 "--duration", "6", "--depth-snapshot-every", "2")
        finish(recorder, record_dir / "producer.log")
    lines = [f.raw for f in read_recording(rec)]
    assert sum('@depthSnapshot"' in raw[:40] for raw in lines) >= 3  # REST answers recorded
    assert sum('@depth@100ms"' in raw[:40] for raw in lines) >= 40

    # A: the producer replays the recording
    url_a = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pushpull"
    out_a = tmp_path / "a"
    out_a.mkdir()
    stage_a = processor(url_a, out_a / "market.h5", out_a / "stage.log")
    replay = start([*HARNESS, "produce", "binance", "--source", "replay", "--recording", str(rec),
                    "--speed", "0", "--transport", url_a, "--output-dir", str(out_a)],
                   out_a / "producer.log")  # fmt: skip
    finish(replay, out_a / "producer.log")
    finish(stage_a, out_a / "stage.log")

    # B: the emulator replays it to the live producer
    url_b = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pushpull"
    out_b = tmp_path / "b"
    out_b.mkdir()
    stage_b = processor(url_b, out_b / "market.h5", out_b / "stage.log")
    with emulator_thread(recording=rec, speed=3.0, symbols=("btcusdt",)) as emu:
        producer = live_producer(emu.url, url_b, out_b, "--depth-snapshot-every", "0")
        deadline = time.monotonic() + 60
        while not emu.replay_done:
            assert time.monotonic() < deadline and producer.poll() is None
            time.sleep(0.1)
        offset = emu.rebase_offset_ms
        time.sleep(1.0)
        producer.send_signal(signal.SIGINT)
        finish(producer, out_b / "producer.log")
    finish(stage_b, out_b / "stage.log")
    assert offset > 0 and offset % 1000 == 0

    a, b = tables(out_a / "market.h5"), tables(out_b / "market.h5")
    assert len(a["dead_letters"]) == len(b["dead_letters"]) == 0
    cols = ["symbol", "trade_id", "price", "qty", "buyer_is_maker", "time_ms"]
    trades_b = shifted(b["trades"][cols], offset, "time_ms")
    assert len(a["trades"]) > 100
    np.testing.assert_array_equal(np.sort(a["trades"][cols], order="trade_id"),
                                  np.sort(trades_b, order="trade_id"))
    times = ("start_ms", "end_ms", "open_time_ms", "close_time_ms")
    np.testing.assert_array_equal(a["candles_1s"], shifted(b["candles_1s"], offset, *times))

    depth_a = a["depth_1s"]
    depth_b = shifted(b["depth_1s"], offset, "time_ms", "last_event_ms")
    assert depth_a["synced"].all() and depth_b["synced"].all()
    both_from = max(depth_a["time_ms"][0], depth_b["time_ms"][0]) + 1000
    depth_a = depth_a[depth_a["time_ms"] >= both_from]
    depth_b = depth_b[depth_b["time_ms"] >= both_from]
    assert len(depth_a) >= 3
    # the book, its ids and the top levels; ``updates`` counts the diffs applied in the second,
    # which also differs only in the second the book synchronised in
    assert depth_a.tobytes() == depth_b.tobytes()
