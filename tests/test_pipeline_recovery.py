"""Issue 4 acceptance: a processor killed with SIGKILL mid-run loses and doubles nothing on Kafka,
and on ZeroMQ the file says exactly how many trades are missing.

Everything is real: an Apache Kafka broker (Tansu where Java is missing), the ``harness produce`` /
``harness process``
commands as separate processes, SIGKILL (no chance to flush or clean up) and the HDF5 file read
back with the SWMR snapshot reader. The Kafka test uses a private broker because the pipeline's
topic names are fixed (``binance.trade``): trades another test publishes on the shared session
broker would otherwise enter this test's stream and break the comparison with the clean run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from processors.candles import CANDLE_DTYPE
from sinks.hdf5_reader import open_snapshot
from transports.brokers import free_tcp_port, make_broker

pytestmark = pytest.mark.slow

HARNESS = [sys.executable, "-m", "harness.cli"]
START_MS = 1_700_000_000_000
SEED = 42
WINDOWS = "1s,1m,1h"
#: (checkpoints to see, extra delay) before each SIGKILL: right after a flush, mid-interval, later
KILL_PLAN = ((2, 0.0), (3, 0.07), (4, 0.13))
FLUSH_INTERVAL = "0.1"


@pytest.fixture
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of its own per test: the pipeline's topic names are fixed."""
    folder = tmp_path_factory.mktemp("broker")
    with make_broker(log_path=folder / "broker.log", folder=folder) as broker:
        yield broker.bootstrap


def produce(url: str, count: int, out: Path, rate: float = 0.0) -> subprocess.Popen[bytes]:
    """The Binance synthetic producer: a fixed trade stream (same seed and start -> same trades)."""
    argv = [*HARNESS, "produce", "binance", "--transport", url, "--source", "synthetic",
            "--streams", "trade", "--symbols", "btcusdt,ethusdt", "--seed", str(SEED),
            "--start-ms", str(START_MS), "--rate", str(rate), "--max-messages", str(count),
            "--output-dir", str(out), "--summary-json", str(out / "producer.json"),
            "--producer-id", "recovery-test"]
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "producer.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def process_argv(url: str, output: Path, summary: Path, idle_exit: float) -> list[str]:
    return [*HARNESS, "process", "candles", "--transport", url, "--output", str(output),
            "--windows", WINDOWS, "--flush-interval", FLUSH_INTERVAL,
            "--idle-exit", str(idle_exit), "--summary-json", str(summary)]


def start_processor(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def checkpoints_seen(log: Path, since: int) -> int:
    """Progress lines (one per checkpoint interval) written after byte ``since`` of the log."""
    text = log.read_bytes()[since:].decode(errors="replace")
    return sum(1 for line in text.splitlines() if line.startswith("[candles] received="))


def kill_after_checkpoints(
    proc: subprocess.Popen[bytes], log: Path, since: int, checkpoints: int, delay: float
) -> bool:
    """SIGKILL once the run has checkpointed ``checkpoints`` times; False if it ended first."""
    deadline = time.monotonic() + 30
    while checkpoints_seen(log, since) < checkpoints:
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return True


def run_to_end(argv: list[str], log: Path) -> dict[str, object]:
    proc = start_processor(argv, log)
    assert proc.wait(90) == 0, log.read_text(errors="replace")[-3000:]
    summary_path = Path(argv[argv.index("--summary-json") + 1])
    return dict(json.loads(summary_path.read_text()))


def read_tables(path: Path, *names: str) -> dict[str, np.ndarray]:
    snap = open_snapshot(path)
    try:
        return {name: snap.read(name) for name in names}
    finally:
        snap.close()


def sorted_candles(rows: np.ndarray) -> np.ndarray:
    assert rows.dtype == CANDLE_DTYPE
    return np.sort(rows, order=["window_ms", "symbol", "start_ms"])


def trade_keys(trades: np.ndarray) -> list[tuple[bytes, int]]:
    return list(zip(trades["producer_id"].tolist(), trades["seq"].tolist(), strict=True))


@pytest.mark.parametrize("scheme", ["kafka", "kafka+confluent"])
def test_kafka_kill_nine_three_times_is_exactly_once(
    private_kafka: str, scheme: str, tmp_path: Path
) -> None:
    url = f"{scheme}://{private_kafka}"
    count = 60_000
    producer = produce(url, count, tmp_path / "producer", rate=20_000)
    crashed = tmp_path / "crashed.h5"
    log = tmp_path / "crashed.log"
    argv = process_argv(url, crashed, tmp_path / "crashed.json", idle_exit=2.0)
    kills = 0
    for checkpoints, delay in KILL_PLAN:
        since = log.stat().st_size if log.exists() else 0
        proc = start_processor(argv, log)
        if kill_after_checkpoints(proc, log, since, checkpoints, delay):
            kills += 1
        # each killed run left a readable file holding at most what was published
        assert len(read_tables(crashed, "trades")["trades"]) <= count
    assert producer.wait(60) == 0
    published = json.loads((tmp_path / "producer" / "producer.json").read_text())["published"]
    assert published == count
    assert kills == 3, "the processor finished before it could be killed three times"
    final = run_to_end(argv, log)
    assert final["resumed_from"], "the last run must resume from the file's positions"

    clean = run_to_end(
        process_argv(url, tmp_path / "clean.h5", tmp_path / "clean.json", idle_exit=1.0),
        tmp_path / "clean.log",
    )
    assert clean["received"] == count

    tables = [f"candles_{w}" for w in WINDOWS.split(",")]
    got = read_tables(crashed, "trades", "late_trades", "gaps", *tables)
    want = read_tables(tmp_path / "clean.h5", "trades", "late_trades", *tables)
    keys = trade_keys(got["trades"])
    assert len(keys) == len(set(keys)) == count  # every trade, exactly once
    assert set(keys) == set(trade_keys(want["trades"]))
    assert sorted(got["trades"]["seq"].tolist()) == list(range(count))
    assert len(got["gaps"]) == 0
    for name in tables:
        assert len(want[name]) > 0
        np.testing.assert_array_equal(sorted_candles(got[name]), sorted_candles(want[name]))
    np.testing.assert_array_equal(got["late_trades"], want["late_trades"])


def test_zmq_kill_nine_reports_exact_loss(tmp_path: Path) -> None:
    """ZeroMQ cannot replay: the trades published while the processor was down are gone, and the
    ``gaps`` table plus the summary's ``lost`` count say exactly how many."""
    port = free_tcp_port()
    producer_url = f"zmq+tcp://127.0.0.1:{port}?pattern=pushpull"
    processor_url = producer_url
    count = 40_000
    output = tmp_path / "zmq.h5"
    log = tmp_path / "zmq.log"
    summary = tmp_path / "zmq.json"
    argv = process_argv(processor_url, output, summary, idle_exit=2.0)
    # the processor connects and the producer binds, so either may start first
    proc = start_processor(argv, log)
    producer = produce(producer_url, count, tmp_path / "producer", rate=10_000)
    kills = 0
    for checkpoints, delay in KILL_PLAN:
        since = log.stat().st_size if log.exists() else 0
        if kills:
            proc = start_processor(argv, log)
        if kill_after_checkpoints(proc, log, since, checkpoints, delay):
            kills += 1
            time.sleep(0.3)  # the producer keeps publishing into the void meanwhile
    proc = start_processor(argv, log)
    assert producer.wait(60) == 0
    assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
    assert kills == 3
    published = json.loads((tmp_path / "producer" / "producer.json").read_text())["published"]
    assert published == count

    got = read_tables(output, "trades", "gaps")
    seqs = got["trades"]["seq"]
    unique = np.unique(seqs)
    truly_missing = published - len(unique)
    assert truly_missing > 0, "the kills should have lost trades on ZeroMQ"
    gaps = got["gaps"]
    recorded = int(gaps["count"].sum())
    missing_set = set(range(published)) - set(unique.tolist())
    recorded_set = {
        s for g in gaps for s in range(int(g["first_missing_seq"]), int(g["last_missing_seq"]) + 1)
    }
    assert recorded == truly_missing, (recorded, truly_missing, published)
    assert recorded_set == missing_set
    final = json.loads(summary.read_text())
    assert final["lost"] == truly_missing
