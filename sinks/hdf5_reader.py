"""Read a sink file while it is being written: consistent snapshots at checkpoint boundaries.

Opens with ``swmr=True`` (works on live files, cleanly closed files and files whose writer was
killed). A snapshot pins the newest valid checkpoint and returns every table cut to that
checkpoint's row counts, so a notebook never sees half a flush, and all tables agree with each
other and with the stored positions. ``refresh()`` moves to a newer checkpoint.

Once no writer holds a file, pandas (``pd.read_hdf(path, "trades")``), PyTables and the HDF5
tools read it as well (layout: ``sinks.hdf5_layout``); while a writer holds it, only SWMR readers
(h5py, this module) may open it, and only this module cuts the tables to one checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
import pandas as pd

from sinks.hdf5_checkpoint import Checkpoint, checkpoint_tables, last_checkpoint
from sinks.hdf5_layout import EPOCH, TableLayout, layout_of, read_rows, table_path, units_of
from sinks.hdf5_metadata import read_attributes
from sinks.hdf5_schema import DEAD_LETTERS, dead_letter_raw

#: A file being created is renamed into place complete; these retries only cover the moments
#: when HDF5 sees a metadata block or a chunk mid-update (it then reports a checksum or filter
#: error), opening, refreshing or reading a live file. A file that stays unreadable for this
#: long is an error.
OPEN_RETRY_S = 5.0
T = TypeVar("T")


def _retried(call: Callable[[], T]) -> T:
    """``call()``, again after an ``OSError`` until ``OPEN_RETRY_S`` has passed."""
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            return call()
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class Snapshot:
    """A SWMR reader pinned to one checkpoint of one sink file."""

    def __init__(self, file: h5py.File) -> None:
        self.file = file
        self.tables: list[str] = checkpoint_tables(file)
        self.checkpoint: Checkpoint | None = None
        self._layouts: dict[str, TableLayout] = {}
        self.refresh()

    def refresh(self) -> Checkpoint | None:
        """Move to the newest complete checkpoint (may be the same one)."""
        self.checkpoint = _retried(lambda: last_checkpoint(self.file, refresh=True))
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
        ds = self.file[table_path(name)]

        def rows() -> np.ndarray:
            ds.refresh()
            if ds.shape[0] < count:  # cannot happen with the sink's write order; fail loudly
                raise RuntimeError(f"{name}: {ds.shape[0]} rows on disk < checkpoint's {count}")
            layout = self._layouts.get(name)
            if layout is None:
                layout = self._layouts[name] = layout_of(ds)
            return read_rows(ds, 0, count, layout)

        return _retried(rows)

    def units(self, name: str) -> dict[str, str]:
        """Column -> unit of table ``name`` (time columns)."""
        return units_of(self.file[table_path(name)])

    def frame(self, name: str, times: bool = False) -> pd.DataFrame:
        """``read`` as a DataFrame: byte columns decoded as UTF-8, raw bytes as ``bytes``;
        ``times`` turns columns holding points in time into UTC datetimes (by their units)."""
        df = to_frame(self.read(name), name)
        return with_times(df, self.units(name)) if times else df

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
        if name == DEAD_LETTERS and field == "raw_base64":
            columns["raw"] = [dead_letter_raw(r) for r in rows]
        elif dt.kind == "S":
            columns[field] = np.char.decode(values, "utf-8", "replace").astype(object)
        elif dt.subdtype is not None:
            columns[field] = list(values)
        else:
            columns[field] = values
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


_PANDAS_UNITS = {"nanoseconds": "ns", "microseconds": "us", "milliseconds": "ms"}


def with_times(df: pd.DataFrame, units: dict[str, str]) -> pd.DataFrame:
    """Columns whose unit is "<unit> since 1970-01-01 00:00:00 UTC" as UTC datetimes."""
    out = df.copy()
    for column, unit in units.items():
        word = unit.removesuffix(EPOCH)
        if column in out and word != unit and word in _PANDAS_UNITS:
            out[column] = pd.to_datetime(out[column], unit=_PANDAS_UNITS[word], utc=True)
    return out


def open_snapshot(path: str | os.PathLike[str], timeout: float = OPEN_RETRY_S) -> Snapshot:
    """Open ``path`` as a SWMR reader and pin its newest checkpoint."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            f = h5py.File(Path(path), "r", swmr=True)
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
