"""Delivered / lost / duplicated / reordered, computed from the producer side and the HDF5 file.

The truth is independent of the pipeline's own bookkeeping: every producer run sends sequence
numbers ``0..sent-1`` on ``binance.trade`` under a producer id the orchestrator chose, so the set
of expected ``(producer_id, seq)`` pairs is known. The ``trades`` table says what arrived (each row
keeps its envelope's producer id and seq); the ``gaps`` table says what the processor *reported*
missing. On ZeroMQ the two loss figures must agree; on Kafka both must be zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sinks.hdf5_reader import read_table
from transports.sequence import Range, SequenceTracker, intersect, size, union

TRADE_TOPIC = "binance.trade"


@dataclass(frozen=True, slots=True)
class Accounting:
    sent: int
    rows: int  # trade rows in the file, duplicates included
    delivered: int  # distinct (producer, seq) pairs in the file
    lost: int  # expected pairs absent from the file (the truth)
    duplicated: int  # rows beyond the first for a pair
    reordered: int  # rows that filled a gap below a later row of the same producer
    reported_lost: int  # numbers in the gaps table for these producers (the pipeline's claim)
    reported_but_present: int  # gap seqs that are in the file after all (over-reporting)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def account(output: Path, sent: Mapping[str, int]) -> Accounting:
    """Compare ``sent`` (producer id -> messages published) with the file at ``output``.

    The file's rows go through the same sequence tracker a receiver uses, so "lost",
    "duplicated" and "reordered" mean here what they mean everywhere; every count is done on
    ranges, so a gap row claiming 10**12 missing numbers costs no memory."""
    trades = _table(output, "trades")
    gaps = _table(output, "gaps")
    tracker = SequenceTracker(max_streams=max(len(sent), 1))
    rows = 0
    if len(trades):
        pids = trades["producer_id"]
        if pids.dtype.kind == "S":
            pids = np.char.decode(pids)
        for pid, seq in zip(pids.tolist(), trades["seq"].tolist(), strict=True):
            if pid in sent:  # else another run's producer: not part of this experiment
                rows += 1
                tracker.observe(pid, TRADE_TOPIC, seq)
    claimed: dict[str, list[Range]] = {pid: [] for pid in sent}
    for g in gaps:
        pid = _text(g["producer_id"])
        if pid in claimed and _text(g["topic"]) == TRADE_TOPIC:
            claimed[pid].append((int(g["first_missing_seq"]), int(g["last_missing_seq"])))
    lost = reported_lost = reported_but_present = 0
    for pid, total in sent.items():
        present = tracker.received_ranges(pid, TRADE_TOPIC)
        lost += total - size(intersect(present, [(0, total - 1)]))
        reported = union(claimed[pid])
        reported_lost += size(reported)
        reported_but_present += size(intersect(reported, present))
    report = tracker.report()
    return Accounting(
        sent=sum(sent.values()),
        rows=rows,
        delivered=sum(sent.values()) - lost,
        lost=lost,
        duplicated=report.duplicates,
        reordered=report.reordered,
        reported_lost=reported_lost,
        reported_but_present=reported_but_present,
    )


def trade_rows(output: Path) -> int:
    """Trade rows as of the newest checkpoint (0 if the file is not there or not readable yet)."""
    from sinks.hdf5_reader import open_snapshot

    try:
        with open_snapshot(output, timeout=0.5) as snap:
            return int(snap.rows.get("trades", 0))
    except (OSError, KeyError, ValueError):
        return 0


def _table(output: Path, name: str) -> np.ndarray:
    try:
        return read_table(output, name)
    except KeyError:
        return np.zeros(0, dtype=[("producer_id", "S64"), ("seq", "i8")])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
