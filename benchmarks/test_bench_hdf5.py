"""HDF5 sink throughput: rows/s for one append + checkpointed flush per batch of 1..10,000 rows.

Each round is what a processor does per flush: ``append`` a batch (structured array, or dicts
for the slow path), then ``flush(positions=...)`` which writes the rows, the positions, two
``H5Fflush`` calls and a CRC'd checkpoint. ``extra_info["rows_per_s"]`` is batch / mean round.
Micro benchmarks, not tests: run ``pytest benchmarks/test_bench_hdf5.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sinks.hdf5 import Hdf5Sink

TRADE = np.dtype(
    [
        ("event_time_ns", "i8"),
        ("symbol", "S12"),
        ("price", "f8"),
        ("quantity", "f8"),
        ("trade_id", "i8"),
        ("buyer_is_maker", "?"),
    ]
)


def _trades(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    rows = np.zeros(n, TRADE)
    rows["event_time_ns"] = 1_723_456_789_000_000_000 + np.arange(n) * 1_000_000
    rows["symbol"] = b"BTCUSDT"
    rows["price"] = 59_000 + rng.normal(0, 5, n).round(2)
    rows["quantity"] = rng.exponential(0.001, n).round(5)
    rows["trade_id"] = 3_700_000_000 + np.arange(n)
    rows["buyer_is_maker"] = rng.random(n) < 0.54
    return rows


def _run(benchmark: Any, tmp_path: Path, batch: int, compression: Any, rows: Any) -> None:
    sink = Hdf5Sink(
        tmp_path / "bench.h5", {"trades": TRADE}, require_positions=True, compression=compression
    )
    offset = [0]

    def append_and_flush() -> None:
        sink.append("trades", rows)
        offset[0] += batch
        sink.flush(positions={("binance.trade", 0): offset[0]})

    try:
        benchmark(append_and_flush)
    finally:
        sink.close()
    benchmark.extra_info["batch"] = batch
    benchmark.extra_info["rows_per_s"] = round(batch / benchmark.stats.stats.mean)
    assert sink.counts["trades"] == offset[0]


@pytest.mark.parametrize("compression", ["gzip", None], ids=["gzip1", "none"])
@pytest.mark.parametrize("batch", [1, 100, 1_000, 10_000])
def test_append_flush_numpy(benchmark: Any, tmp_path: Path, batch: int, compression: Any) -> None:
    _run(benchmark, tmp_path, batch, compression, _trades(batch))


@pytest.mark.parametrize("batch", [100, 1_000, 10_000])
def test_append_flush_dicts(benchmark: Any, tmp_path: Path, batch: int) -> None:
    """The convenience path: rows as dicts with str symbols (converted per row)."""
    dicts = [
        {**{name: r[name].item() for name in TRADE.names}, "symbol": "BTCUSDT"}
        for r in _trades(batch)
    ]
    _run(benchmark, tmp_path, batch, "gzip", dicts)
