"""Shared check: an HDF5 file the harness wrote opens in PyTables and pandas, not only in h5py."""

from __future__ import annotations

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
