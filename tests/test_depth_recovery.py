"""The order-book stage killed with SIGKILL on Kafka ends with the rows and the book of a clean run.

As for candles (tests/test_pipeline_recovery.py): a private embedded broker, ``harness produce
binance`` (synthetic depth@100ms diffs and snapshots, exchange-shaped) and ``harness process
depth`` as real processes, SIGKILL three times, the file read back from its last checkpoint.
The book is part of each checkpoint, so a resumed stage continues from exactly the book it had.
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

from sinks.hdf5_reader import open_snapshot
from stages.depth import read_books
from transports.brokers import make_broker

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

HARNESS = [sys.executable, "-m", "harness.cli"]
KILL_PLAN = ((2, 0.0), (3, 0.07), (4, 0.13))  # (checkpoints seen, extra delay) before SIGKILL
COUNT = 6000


@pytest.fixture(scope="module")
def private_kafka_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with make_broker(log_path=log) as broker:
        yield broker.url


def stage_argv(url: str, output: Path, summary: Path, idle_exit: float) -> list[str]:
    return [*HARNESS, "process", "depth", "--transport", url, "--output", str(output),
            "--flush-interval", "0.1", "--idle-exit", str(idle_exit),
            "--summary-json", str(summary)]  # fmt: skip


def checkpoints_seen(log: Path, since: int) -> int:
    text = log.read_bytes()[since:].decode(errors="replace")
    return sum(1 for line in text.splitlines() if line.startswith("[depth] received="))


def produce(url: str, out: Path, symbols: str, count: int) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*HARNESS, "produce", "binance", "--transport", url, "--source", "synthetic",
         "--streams", "depth@100ms", "--symbols", symbols, "--seed", "5",
         "--start-ms", "1700000000000", "--rate", "0", "--max-messages", str(count),
         "--output-dir", str(out), "--summary-json", str(out / "producer.json")],
        stdout=(out / "producer.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def run_to_end(argv: list[str], log: Path) -> dict[str, object]:
    proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        assert proc.wait(120) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return dict(json.loads(Path(argv[argv.index("--summary-json") + 1]).read_text()))


def table(path: Path) -> np.ndarray:
    with open_snapshot(path) as snap:
        rows = snap.read("depth_1s")
    return np.sort(rows, order=["symbol", "time_ms"])


def test_kafka_kill_nine_three_times_gives_the_clean_runs_books(
    private_kafka_url: str, tmp_path: Path
) -> None:
    url = private_kafka_url
    producer = produce(url, tmp_path / "producer", "btcusdt,ethusdt", COUNT)
    crashed, log = tmp_path / "crashed.h5", tmp_path / "crashed.log"
    argv = stage_argv(url, crashed, tmp_path / "crashed.json", idle_exit=3.0)
    kills = 0
    for checkpoints, delay in KILL_PLAN:
        since = log.stat().st_size if log.exists() else 0
        proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while checkpoints_seen(log, since) < checkpoints and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
    assert producer.wait(120) == 0, (tmp_path / "producer" / "producer.log").read_text()[-2000:]
    assert kills == 3, "the stage finished before it could be killed three times"
    # the killed runs may have read everything: more input, so the last run has some to finish
    assert produce(url, tmp_path / "more", "bnbusdt", 300).wait(60) == 0
    final = run_to_end(argv, log)
    assert final["resumed_from"], "the last run must resume from the file's positions"
    clean = run_to_end(stage_argv(url, tmp_path / "clean.h5", tmp_path / "clean.json", 1.5),
                       tmp_path / "clean.log")
    assert clean["received"] == COUNT + 300

    got, want = table(crashed), table(tmp_path / "clean.h5")
    assert len(want) > 100 and want["synced"].all() and (want["gaps"] == 0).all()
    assert got.tobytes() == want.tobytes()  # every row, NaN padding included
    got_books, want_books = read_books(crashed), read_books(tmp_path / "clean.h5")
    assert set(got_books) == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    for symbol, book in want_books.items():
        assert got_books[symbol].export_state() == book.export_state()
