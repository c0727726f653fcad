"""Read a sink file while it is being written: consistent snapshots at checkpoint boundaries.

Opens with ``swmr=True`` (works on live files, cleanly closed files and files whose writer was
killed). A snapshot pins the newest valid checkpoint and returns every table cut to that
checkpoint's row counts, so a notebook never sees half a flush, and all tables agree with each
other and with the stored positions. ``refresh()`` moves to a newer checkpoint.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from sinks.hdf5_checkpoint import Checkpoint, checkpoint_tables, last_checkpoint
from sinks.hdf5_metadata import read_attributes
from sinks.hdf5_schema import DEAD_LETTERS, dead_letter_raw

#: A file being created is renamed into place complete; these retries only cover the moments
#: when HDF5 sees a metadata block mid-update (it then reports a checksum error).
OPEN_RETRY_S = 5.0


class Snapshot:
    """A SWMR reader pinned to one checkpoint of one sink file."""

    def __init__(self, file: h5py.File) -> None:
        self.file = file
        self.tables: list[str] = checkpoint_tables(file)
        self.checkpoint: Checkpoint | None = None
        self.refresh()

    def refresh(self) -> Checkpoint | None:
        """Move to the newest complete checkpoint (may be the same one)."""
        self.checkpoint = last_checkpoint(self.file, refresh=True)
        return self.checkpoint

    @property
    def rows(self) -> dict[str, int]:
        cp = self.checkpoint
        return {name: (cp.rows.get(name, 0) if cp else 0) for name in self.tables}

    @property
    def positions(self) -> dict[tuple[str, int], int]:
        return dict(self.checkpoint.positions) if self.checkpoint else {}

    @property
    def metadata(self) -> dict[str, Any]:
        return read_attributes(self.file)

    def read(self, name: str) -> np.ndarray:
        """Rows of ``name`` complete at the pinned checkpoint (a structured array)."""
        if name not in self.tables:
            raise KeyError(f"no table {name!r} in {self.file.filename}; tables: {self.tables}")
        count = self.rows[name]
        ds = self.file[name]
        ds.refresh()
        if ds.shape[0] < count:  # cannot happen with the sink's write order; fail loudly
            raise RuntimeError(f"{name}: {ds.shape[0]} rows on disk < checkpoint's {count}")
        return ds[:count] if count else np.empty(0, ds.dtype)

    def frame(self, name: str) -> pd.DataFrame:
        """``read`` as a DataFrame: byte columns decoded as UTF-8, raw bytes as ``bytes``."""
        return to_frame(self.read(name), name)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_frame(rows: np.ndarray, name: str = "") -> pd.DataFrame:
    columns: dict[str, Any] = {}
    fields = rows.dtype.fields or {}
    for field, (dt, _offset, *_title) in fields.items():
        values = rows[field]
        if name == DEAD_LETTERS and field == "raw":
            columns[field] = [dead_letter_raw(r) for r in rows]
        elif dt.kind == "S":
            columns[field] = np.char.decode(values, "utf-8", "replace").astype(object)
        elif dt.subdtype is not None:
            columns[field] = list(values)
        else:
            columns[field] = values
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


def open_snapshot(path: str | os.PathLike[str], timeout: float = OPEN_RETRY_S) -> Snapshot:
    """Open ``path`` as a SWMR reader and pin its newest checkpoint."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            f = h5py.File(Path(path), "r", libver="latest", swmr=True)
        except FileNotFoundError:
            raise
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
            continue
        try:
            return Snapshot(f)
        except Exception:
            f.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def read_table(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """One table as of the newest checkpoint, as a structured array."""
    with open_snapshot(path) as snap:
        return snap.read(name)


def read_frame(path: str | os.PathLike[str], name: str) -> pd.DataFrame:
    """One table as of the newest checkpoint, as a DataFrame (strings decoded)."""
    with open_snapshot(path) as snap:
        return snap.frame(name)
