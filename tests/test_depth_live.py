"""The live producer keeps order books in sync with the emulated exchange through gaps and
reconnects: the order-book stage at the end of the pipeline holds the emulator's own book.

Real parts: the Binance emulator (websocket streams and ``/api/v3/depth`` on one port, its own
book code), ``harness produce binance --source live`` and ``harness process depth`` as separate
processes over ZeroMQ, the HDF5 file read back from its last checkpoint.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from emulators.binance import emulator_thread
from sinks.hdf5_reader import open_snapshot
from stages.depth import read_books
from transports.brokers import free_tcp_port

pytestmark = pytest.mark.slow

HARNESS = [sys.executable, "-m", "harness.cli"]
SYMBOLS = ("btcusdt", "ethusdt")


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_rest_depth_snapshot_speaks_binance() -> None:
    with emulator_thread(rate=10) as emu:
        base = emu.url.replace("ws://", "http://")
        with urllib.request.urlopen(f"{base}/api/v3/depth?symbol=BTCUSDT&limit=5") as r:
            body = json.loads(r.read())
        assert set(body) == {"lastUpdateId", "bids", "asks"} and len(body["bids"]) == 5
        prices = [float(p) for p, _ in body["bids"]]
        assert prices == sorted(prices, reverse=True) and float(body["asks"][0][0]) > prices[0]
        for query, code in (("", -1102), ("?symbol=NOPE", -1121), ("?symbol=BTCUSDT&limit=x",
                                                                     -1100)):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"{base}/api/v3/depth{query}")
            assert info.value.code == 400 and json.loads(info.value.read())["code"] == code


def test_live_producer_book_equals_the_emulators_through_gaps_and_reconnects(
    tmp_path: Path,
) -> None:
    url = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pushpull"
    output = tmp_path / "depth.h5"
    with emulator_thread(rate=20, symbols=SYMBOLS) as emu:
        stage = subprocess.Popen(
            [*HARNESS, "process", "depth", "--transport", url, "--output", str(output),
             "--flush-interval", "0.2", "--idle-exit", "3", "--quiet",
             "--summary-json", str(tmp_path / "stage.json")],
            stdout=(tmp_path / "stage.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        producer = subprocess.Popen(
            [*HARNESS, "produce", "binance", "--source", "live", "--endpoint", emu.url,
             "--transport", url, "--symbols", ",".join(SYMBOLS),
             "--streams", "depth@100ms,depth5", "--depth-snapshot-every", "0",
             "--output-dir", str(tmp_path), "--summary-json", str(tmp_path / "producer.json"),
             "--progress-every", "1"],
            stdout=(tmp_path / "producer.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for(lambda: emu.depth.rest_requests >= 2, 30, "the first snapshots")
            time.sleep(1.0)
            emu.lose_depth_diffs("btcusdt", 3)  # a gap in U/u for one symbol
            time.sleep(1.5)
            emu.drop_connections()  # a reconnect: both symbols miss diffs
            time.sleep(3.0)
            emu.lose_depth_diffs(None, 1)  # a gap in both
            time.sleep(2.0)
            emu.freeze_depth()
            time.sleep(1.5)  # the last diffs reach the stage
        finally:
            producer.send_signal(signal.SIGINT)
            assert producer.wait(30) == 0, (tmp_path / "producer.log").read_text()[-3000:]
        assert stage.wait(60) == 0, (tmp_path / "stage.log").read_text()[-3000:]
        books = {s: emu.depth_book(s) for s in SYMBOLS}
    produced = json.loads((tmp_path / "producer.json").read_text())
    # lost diffs: 1 (btcusdt) + 2 (both); the reconnect adds gaps when it missed a 100 ms tick
    assert produced["depth_gaps"] >= 3, produced
    assert produced["depth_resyncs"] == produced["depth_gaps"]
    assert produced["depth_snapshots"] >= 2 + produced["depth_gaps"]
    got = read_books(output)
    for symbol in SYMBOLS:
        last_id, bids, asks = books[symbol]
        book = got[symbol.upper()]
        assert book.synced and book.counters.gaps >= (2 if symbol == "btcusdt" else 1)
        assert book.counters.resyncs == book.counters.gaps
        assert book.last_update_id == last_id
        assert book.book.bids == bids and book.book.asks == asks
        assert book.counters.crossed == 0
    with open_snapshot(output) as snap:
        rows = snap.read("depth_1s")
        partial = snap.read("depth_partial_1s")
    for symbol in SYMBOLS:
        mine = rows[rows["symbol"] == symbol.upper().encode()]
        assert len(mine) >= 5 and mine["synced"][-1]
        assert mine["gaps"][-1] == got[symbol.upper()].counters.gaps  # running totals
        assert mine["last_update_id"][-1] == books[symbol][0]
        best = max(books[symbol][1])
        assert mine["bid_px"][-1][0] == best
        five = partial[partial["symbol"] == symbol.upper().encode()]["ask_px"]  # depth5
        assert len(five) >= 5 and np.isfinite(five[:, :5]).all() and np.isnan(five[:, 5:]).all()


def test_refused_snapshots_are_retried_after_retry_after(tmp_path: Path) -> None:
    url = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pubsub"  # nobody needs to listen
    with emulator_thread(rate=10, symbols=("btcusdt",)) as emu:
        emu.refuse_rest(2, 429, retry_after_s=1)
        started = time.monotonic()
        producer = subprocess.Popen(
            [*HARNESS, "produce", "binance", "--source", "live", "--endpoint", emu.url,
             "--transport", url, "--symbols", "btcusdt", "--streams", "depth@100ms",
             "--duration", "5", "--output-dir", str(tmp_path),
             "--summary-json", str(tmp_path / "producer.json")],
            stdout=(tmp_path / "producer.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: emu.depth.rest_requests >= 1, 30, "a snapshot after the refusals")
        assert time.monotonic() - started >= 2.0  # Retry-After: 1 s, twice
        assert producer.wait(30) == 0, (tmp_path / "producer.log").read_text()[-3000:]
    produced = json.loads((tmp_path / "producer.json").read_text())
    assert produced["depth_snapshot_errors"] == 2 and produced["depth_snapshots"] == 1
    assert "HTTP 429" in (tmp_path / "producer.log").read_text()
