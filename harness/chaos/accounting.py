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

TRADE_TOPIC = "binance.trade"


@dataclass(frozen=True, slots=True)
class Accounting:
    sent: int
    rows: int  # trade rows in the file, duplicates included
    delivered: int  # distinct (producer, seq) pairs in the file
    lost: int  # expected pairs absent from the file (the truth)
    duplicated: int  # rows beyond the first for a pair
    reordered: int  # rows whose seq is below an earlier row's seq of the same producer
    reported_lost: int  # sum of the gaps table for these producers (the pipeline's own claim)
    reported_but_present: int  # gap seqs that are in the file after all (over-reporting)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def account(output: Path, sent: Mapping[str, int]) -> Accounting:
    """Compare ``sent`` (producer id -> messages published) with the file at ``output``."""
    trades = _table(output, "trades")
    gaps = _table(output, "gaps")
    present: dict[str, set[int]] = {pid: set() for pid in sent}
    rows = duplicated = reordered = 0
    highest: dict[str, int] = {}
    if len(trades):
        pids = np.char.decode(trades["producer_id"]) if trades["producer_id"].dtype.kind == "S" \
            else trades["producer_id"]
        for pid, seq in zip(pids.tolist(), trades["seq"].tolist(), strict=True):
            if pid not in present:
                continue  # another run's producer: not part of this experiment
            rows += 1
            seen = present[pid]
            if seq in seen:
                duplicated += 1
            seen.add(seq)
            if seq < highest.get(pid, -1):
                reordered += 1
            highest[pid] = max(highest.get(pid, -1), seq)
    delivered = sum(len(s & set(range(sent[p]))) for p, s in present.items())
    reported: dict[str, set[int]] = {pid: set() for pid in sent}
    for g in gaps:
        pid = _text(g["producer_id"])
        if pid in reported and _text(g["topic"]) == TRADE_TOPIC:
            reported[pid].update(range(int(g["first_missing_seq"]), int(g["last_missing_seq"]) + 1))
    return Accounting(
        sent=sum(sent.values()),
        rows=rows,
        delivered=delivered,
        lost=sum(sent.values()) - delivered,
        duplicated=duplicated,
        reordered=reordered,
        reported_lost=sum(len(s) for s in reported.values()),
        reported_but_present=sum(len(reported[p] & present[p]) for p in sent),
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
