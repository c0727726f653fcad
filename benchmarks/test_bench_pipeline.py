"""Whole-pipeline throughput, producer -> transport -> candle processor -> HDF5, in trades/s.

Run: ``.venv/bin/pytest benchmarks/test_bench_pipeline.py -s`` (figures in ``extra_info`` and
printed), or ``.venv/bin/python benchmarks/test_bench_pipeline.py [N_TRADES]`` for a table.

Every stage is the real ``harness`` command in its own process: ``harness produce binance
--source replay --speed 0`` replays a trade-only recording as fast as it can, ``harness process
candles`` writes trades + candles to HDF5. End to end = from the first publish (the smallest
``publish_time_ns`` in the file) to the checkpoint that made the last trade durable (that
checkpoint's ``time_ns``), so flush delay counts. Each run also checks that every trade arrived.
The producer and the processor share this machine's two cores with whatever else runs, so
compare the two transports inside one run, never across runs.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.recording import RecordingWriter
from sinks.hdf5_schema import CHECKPOINTS, valid_checkpoint
from transports.brokers import free_tcp_port, make_broker

HARNESS = [sys.executable, "-m", "harness.cli"]
N_TRADES = 300_000
FLUSH_INTERVAL_S = 0.25  # a checkpoint every 0.25 s: the flush delay is part of the figure
T0_MS = 1_700_000_000_000


def write_trade_recording(path: Path, n: int, seed: int = 5) -> Path:
    """Binance combined-stream trade frames (bursty times, two symbols) as a replay recording."""
    rng = random.Random(seed)
    t = T0_MS
    with RecordingWriter(path, flush_every=10_000) as rec:
        for i in range(n):
            t += rng.choice((0, 0, 0, 1, 2, 5, 20))
            sym = "BTCUSDT" if i % 3 else "ETHUSDT"
            data = {"e": "trade", "E": t + 1, "s": sym, "t": 1_000_000 + i,
                    "p": f"{60_000 + rng.uniform(-50, 50):.2f}", "q": f"{rng.random():.5f}",
                    "T": t, "m": rng.random() < 0.54, "M": True}  # fmt: skip
            frame = {"stream": f"{sym.lower()}@trade", "data": data}
            rec.write(json.dumps(frame, separators=(",", ":")), recv_ns=t * 1_000_000)
    return path


@dataclass
class PipelineRun:
    transport: str
    trades: int
    seconds: float
    producer_rate: float  # trades / producer process wall time (includes its start-up)

    @property
    def trades_per_s(self) -> float:
        return self.trades / self.seconds


def durable_at_ns(path: Path, table: str, rows: int) -> int:
    """time_ns of the first valid checkpoint at which ``table`` held ``rows`` rows."""
    with h5py.File(path, "r", swmr=True) as f:
        ds = f[CHECKPOINTS]
        tables = json.loads(ds.attrs["tables"])
        column = tables.index(table)
        for record in ds[:]:
            if valid_checkpoint(record) and int(record["rows"][column]) >= rows:
                return int(record["time_ns"])
    raise AssertionError(f"no checkpoint of {path} holds {rows} {table} rows")


def run_pipeline(transport: str, recording: Path, n: int, workdir: Path) -> PipelineRun:
    """One producer -> processor run over ``transport`` ("zmq", "zmq-batch" or "kafka").

    "zmq-batch" packs up to 100 envelopes per frame on the producer side (``batch=100``, 1 ms
    linger): the ZeroMQ analogue of Kafka's linger batching.
    """
    with ExitStack() as stack:
        if transport == "kafka":
            broker = stack.enter_context(
                make_broker(log_path=workdir / "broker.log", folder=workdir / "broker"))
            producer_url = processor_url = broker.url + "?linger_ms=5"
        else:
            processor_url = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pushpull"
            producer_url = processor_url
            if transport == "zmq-batch":
                producer_url += "&batch=100&batch_linger_ms=1"
        output = workdir / f"{transport}.h5"
        summary = workdir / f"{transport}-producer.json"
        processor = subprocess.Popen(
            [*HARNESS, "process", "candles", "--transport", processor_url, "--output",
             str(output), "--flush-interval", str(FLUSH_INTERVAL_S), "--end-after-producers",
             "1", "--idle-exit", "60", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=(workdir / f"{transport}-processor.log").open("wb"),
        )  # fmt: skip
        time.sleep(1.0)  # connected / assigned before the first publish
        started = time.monotonic()
        subprocess.run(
            [*HARNESS, "produce", "binance", "--transport", producer_url, "--source", "replay",
             "--recording", str(recording), "--speed", "0", "--output-dir", str(workdir),
             "--summary-json", str(summary)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        producer_seconds = time.monotonic() - started
        assert processor.wait(300) == 0, (workdir / f"{transport}-processor.log").read_text()
    with h5py.File(output, "r", swmr=True) as f:
        first_publish = int(np.min(f["trades/table"]["publish_time_ns"]))
        stored = len(f["trades/table"])
    assert stored == n, f"{transport}: {stored} of {n} trades stored"
    seconds = (durable_at_ns(output, "trades", n) - first_publish) / 1e9
    return PipelineRun(transport, n, seconds, n / producer_seconds)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trade_recording(tmp_path_factory.mktemp("rec") / "trades.jsonl.gz", N_TRADES)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["zmq", "zmq-batch", "kafka"])
def test_pipeline_end_to_end(benchmark, transport: str, recording: Path, tmp_path: Path) -> None:
    runs: list[PipelineRun] = []

    def once() -> None:
        workdir = Path(tempfile.mkdtemp(dir=tmp_path))
        runs.append(run_pipeline(transport, recording, N_TRADES, workdir))

    benchmark.pedantic(once, rounds=1, iterations=1)
    best = max(runs, key=lambda r: r.trades_per_s)
    benchmark.extra_info["trades_per_s"] = round(best.trades_per_s)
    benchmark.extra_info["producer_trades_per_s"] = round(best.producer_rate)
    print(f"\n{transport}: {best.trades_per_s:,.0f} trades/s end to end "
          f"({N_TRADES:,} trades in {best.seconds:.2f} s)")  # fmt: skip


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_TRADES
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        recording_path = write_trade_recording(work / "trades.jsonl.gz", n)
        print(f"{'transport':10} {'trades':>9} {'seconds':>8} {'trades/s e2e':>13} "
              f"{'producer/s':>11}")  # fmt: skip
        for transport in ("zmq", "zmq-batch", "kafka"):
            run_dir = work / transport
            run_dir.mkdir()
            r = run_pipeline(transport, recording_path, n, run_dir)
            print(f"{r.transport:10} {r.trades:>9,} {r.seconds:>8.2f} {r.trades_per_s:>13,.0f} "
                  f"{r.producer_rate:>11,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
