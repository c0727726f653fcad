"""The chaos experiments' truth: what a processor's file holds against what was sent, counted
with the same range arithmetic as every receiver (a huge claimed gap costs no memory)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from harness.chaos.accounting import TRADE_TOPIC, account
from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_schema import Gap
from stages.candles import TRADES_DTYPE


def write_file(path: Path, rows: list[tuple[str, int]], gaps: list[tuple[str, int, int]]) -> None:
    trades = np.zeros(len(rows), dtype=TRADES_DTYPE)
    trades["producer_id"] = [pid.encode() for pid, _ in rows]
    trades["seq"] = [seq for _, seq in rows]
    with Hdf5Sink(path, {"trades": TRADES_DTYPE}) as sink:
        sink.append("trades", trades)
        sink.flush(gaps=[Gap(pid, TRADE_TOPIC, a, b, 0) for pid, a, b in gaps])


def test_loss_duplicates_reorders_and_over_reported_gaps(tmp_path: Path) -> None:
    path = tmp_path / "market.h5"
    rows = [("p", s) for s in (0, 1, 4, 2, 4, 6)] + [("other-run", 3)]
    # the processor reported 2..3 and 5 missing (2 arrived later after all), twice over 5
    write_file(path, rows, [("p", 2, 3), ("p", 5, 5), ("p", 5, 5), ("other-run", 0, 9)])
    acc = account(path, {"p": 9})  # 3, 5, 7, 8 never arrived
    assert (acc.sent, acc.rows, acc.delivered, acc.lost) == (9, 6, 5, 4)
    assert (acc.duplicated, acc.reordered) == (1, 1)
    assert (acc.reported_lost, acc.reported_but_present) == (3, 1)


def test_a_claimed_gap_of_10_to_the_12_is_counted_without_expanding_it(tmp_path: Path) -> None:
    path = tmp_path / "market.h5"
    write_file(path, [("p", 0), ("p", 10**12 + 1)], [("p", 1, 10**12)])
    tracemalloc.start()
    try:
        acc = account(path, {"p": 10**12 + 2})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert acc.lost == acc.reported_lost == 10**12 and acc.reported_but_present == 0
    assert peak < 50_000_000
