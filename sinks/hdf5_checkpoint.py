"""Checkpoint records: what a flush promised was complete, found again by readers and on resume.

The sink's internal group holds three append-only datasets: ``checkpoints`` (one record per
flush, see ``checkpoint_dtype``), ``positions`` (every source position at that flush, rows
``positions_start:positions_end``) and ``state`` (an opaque byte log of processor state, bytes
``state_start:state_end``: windows still open at the checkpoint, serialized by the processor
without pickle). A checkpoint is valid when its CRC matches; the last valid one is the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import h5py
import numpy as np

from sinks.hdf5_schema import CHECKPOINTS, POSITIONS, STATE_LOG, valid_checkpoint

#: Records read per step when scanning backwards for the last valid checkpoint.
_SCAN_STEP = 16


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    time_ns: int
    index: int  # record number in the checkpoints dataset
    rows: dict[str, int]  # table name -> rows complete at this checkpoint
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    state: bytes = b""
    positions_end: int = 0
    state_end: int = 0


def checkpoint_tables(f: h5py.File) -> list[str]:
    """Table order of the ``rows`` vector, fixed when the file was created."""
    return list(json.loads(f[CHECKPOINTS].attrs["tables"]))


def last_checkpoint(f: h5py.File, *, refresh: bool = False) -> Checkpoint | None:
    """The newest valid checkpoint, or None if no flush completed yet.

    ``refresh`` re-reads dataset extents first (needed by SWMR readers). Invalid records can only
    be at the tail (a crash between growing the extent and writing the bytes), so the backwards
    scan stops at the first valid one.
    """
    ds = f[CHECKPOINTS]
    if refresh:
        ds.refresh()
    end = ds.shape[0]
    while end > 0:
        start = max(0, end - _SCAN_STEP)
        block = ds[start:end]
        for i in range(len(block) - 1, -1, -1):
            if valid_checkpoint(block[i]):
                return _materialise(f, block[i], start + i, refresh)
        end = start
    return None


def _materialise(f: h5py.File, record: np.void, index: int, refresh: bool) -> Checkpoint:
    tables = checkpoint_tables(f)
    rows = {name: int(record["rows"][i]) for i, name in enumerate(tables)}
    pos_ds, state_ds = f[POSITIONS], f[STATE_LOG]
    if refresh:
        pos_ds.refresh()
        state_ds.refresh()
    p0, p1 = int(record["positions_start"]), int(record["positions_end"])
    positions = {
        (bytes(r["topic"]).decode(), int(r["partition"])): int(r["next_offset"])
        for r in (pos_ds[p0:p1] if p1 > p0 else ())
    }
    s0, s1 = int(record["state_start"]), int(record["state_end"])
    state = state_ds[s0:s1].tobytes() if s1 > s0 else b""
    return Checkpoint(
        seq=int(record["seq"]),
        time_ns=int(record["time_ns"]),
        index=index,
        rows=rows,
        positions=positions,
        state=state,
        positions_end=p1,
        state_end=s1,
    )
