"""Shared by the HDF5 tests: a real short run's output, and the check that a file opens in
PyTables and pandas, not only in h5py."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import tables


def assert_opens_in_pandas_and_pytables(path: Path, with_rows: Iterable[str]) -> None:
    """Every node opens in PyTables without a warning (no ``UnImplemented`` column or node, no
    unsupported attribute), every table reads, and pandas lists and reads ``with_rows``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tables.open_file(str(path), mode="r") as f:
            for node in f.walk_nodes("/"):
                assert type(node).__name__ != "UnImplemented", node._v_pathname
                for name in node._v_attrs._f_list("all"):
                    node._v_attrs[name]  # every attribute decodes
                if isinstance(node, tables.Table | tables.Array):
                    node.read()
        with pd.HDFStore(path, mode="r") as store:
            keys = set(store.keys())
    for name in with_rows:
        assert f"/{name}" in keys, (name, sorted(keys))
        assert len(pd.read_hdf(path, name)) > 0


def short_run(out: Path, seconds: int) -> Path:
    """``harness run`` over ZeroMQ on synthetic data into ``out``; the folder of its market.h5."""
    cmd = [sys.executable, "-m", "harness.cli", "run", "--transport", "zmq", "--source",
           "synthetic", "--duration", str(seconds), "--output-dir", str(out)]
    done = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (market,) = sorted(out.rglob("market.h5"))
    assert (market.parent / "sentiment.h5").is_file()
    return market.parent
