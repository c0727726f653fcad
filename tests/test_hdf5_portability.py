"""The output of a real short run opens everywhere: pandas, PyTables, h5py and HDF5 1.10's tools.

Every table of ``market.h5`` and ``sentiment.h5`` from ``harness run`` (ZeroMQ, synthetic) is
read with pandas (``pd.read_hdf`` and ``HDFStore.keys()``), PyTables and plain h5py, and compared
with the project's own reader; ``h5dump`` from Debian's hdf5-tools (HDF5 1.10) dumps the
structure and data. A sink file with every column kind (arrays, bools, UTF-8 text, dead letters
with binary bytes, gaps, late events) checks what a short run leaves empty.

``h5dump`` missing: skipped on a developer's machine, a failure under CI (``.ci/run`` installs
hdf5-tools and sets ``HARNESS_REQUIRE_HDF5_TOOLS=1``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tables
from hdf5_helpers import assert_opens_in_pandas_and_pytables, short_run

from core.dead_letters import DeadLetters
from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_reader import open_snapshot
from sinks.hdf5_schema import Gap

REPO = Path(__file__).resolve().parents[1]

DEPTH = np.dtype(
    [
        ("symbol", "S24"),
        ("time_ms", "i8"),
        ("bid_px", "f8", (10,)),
        ("bid_qty", "f8", (10,)),
        ("ask_px", "f8", (10,)),
        ("ask_qty", "f8", (10,)),
        ("crossed", "?"),
        ("window_ms", "i8"),
        ("note", "S32"),
    ]
)


# A real pipeline run feeds the module (several seconds): the full suite, not test-fast.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """market.h5 and sentiment.h5 of a real ~4 s synthetic pipeline run over ZeroMQ."""
    return short_run(tmp_path_factory.mktemp("run"), 4)


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sink file whose every table has rows: array columns, bools, UTF-8, binary dead letters."""
    path = tmp_path_factory.mktemp("kinds") / "kinds.h5"
    rows = np.zeros(3, DEPTH)
    rows["symbol"] = [b"btcusdt", "ÉTH€".encode(), b"sol"]
    rows["time_ms"] = [1_764_000_000_000, 1_764_000_001_000, 1_764_000_002_000]
    rows["bid_px"] = np.arange(30).reshape(3, 10) + 0.5
    rows["ask_qty"][1, 9] = 7.25
    rows["crossed"] = [True, False, True]
    rows["window_ms"] = 1000
    rows["note"] = "gm 🚀".encode()
    with Hdf5Sink(path, {"depth_1s": DEPTH}, {"role": "portability"}) as sink:
        sink.append("depth_1s", rows)
        DeadLetters("test", store=sink.add_dead_letter).add(
            "invalid_utf8", "bytes that are not text", b"\xff\xfe\x00{\x80\x00\x00"
        )
        sink.append("late_events", [("trade", "BTCUSDT", 5, 10, 11, 60_000_000_000, 42, 1.0, 2.0,
                                     "binance.trade", -1, -1)])
        sink.flush(gaps=[Gap("p-1", "binance.trade", 10, 14, 123)])
    return path


def _files(run_output: Path, every_kind: Path) -> list[Path]:
    return [run_output / "market.h5", run_output / "sentiment.h5", every_kind]


def _ours(path: Path) -> dict[str, pd.DataFrame]:
    with open_snapshot(path) as snap:
        return {name: snap.frame(name) for name in snap.tables}


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Our reader's frame in pandas' flat shape: array columns spread into ``<name>_<i>``."""
    out = {}
    for column in frame.columns:
        values = frame[column]
        if len(values) and isinstance(values.iloc[0], np.ndarray):
            stacked = np.stack(values.to_list())
            for i in range(stacked.shape[1]):
                out[f"{column}_{i}"] = stacked[:, i]
        else:
            out[column] = values.to_numpy()
    return pd.DataFrame(out)


def test_every_table_reads_the_same_in_pandas_as_in_our_reader(
    run_output: Path, every_kind: Path
) -> None:
    for path in _files(run_output, every_kind):
        ours = _ours(path)
        with_rows = {name for name, frame in ours.items() if len(frame)}
        assert {"trades", "tweets", "depth_1s"} & with_rows, path
        with pd.HDFStore(path, mode="r") as store:
            assert set(store.keys()) == {f"/{name}" for name in with_rows}, path
        for name in with_rows:
            theirs = pd.read_hdf(path, name)
            expected = _comparable(ours[name].drop(columns=["raw"], errors="ignore"))
            theirs = theirs.drop(columns=["raw_base64"], errors="ignore")
            assert list(theirs.columns) == list(expected.columns), (path, name)
            for column in expected.columns:
                got, want = theirs[column].to_numpy(), expected[column].to_numpy()
                if want.dtype == object:  # text: pandas decodes UTF-8 like our reader
                    assert [str(v) for v in got] == [str(v) for v in want], (name, column)
                else:
                    assert got.dtype == want.dtype, (name, column, got.dtype, want.dtype)
                    np.testing.assert_array_equal(got, want, err_msg=f"{path} {name}.{column}")


def test_depth_table_flattens_arrays_bools_and_text_for_pandas(every_kind: Path) -> None:
    depth = pd.read_hdf(every_kind, "depth_1s")
    assert [c for c in depth.columns if c.startswith("bid_px_")] == [f"bid_px_{i}" for i in
                                                                     range(10)]
    assert depth["crossed"].dtype == bool and depth["crossed"].tolist() == [True, False, True]
    assert depth["symbol"].tolist() == ["btcusdt", "ÉTH€", "sol"]
    assert depth.loc[1, "ask_qty_9"] == 7.25 and depth.loc[2, "bid_px_3"] == 23.5
    with open_snapshot(every_kind) as snap:  # the project's reader gives the arrays back
        rows = snap.read("depth_1s")
        assert rows.dtype == DEPTH
        letters = snap.frame("dead_letters")
        assert letters.loc[0, "raw"] == b"\xff\xfe\x00{\x80\x00\x00"
        units = snap.units("depth_1s")
        timed = snap.frame("depth_1s", times=True)
    assert units["time_ms"] == "milliseconds since 1970-01-01 00:00:00 UTC"
    assert units["window_ms"] == "milliseconds"
    assert isinstance(timed["time_ms"].dtype, pd.DatetimeTZDtype)
    assert timed["time_ms"].iloc[0] == pd.Timestamp(1_764_000_000_000, unit="ms", tz="UTC")


def test_every_table_opens_as_a_pytables_table(run_output: Path, every_kind: Path) -> None:
    for path in _files(run_output, every_kind):
        ours = _ours(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "unsupported type", no UnImplemented nodes
            with tables.open_file(str(path), mode="r") as f:
                kinds = {n._v_pathname: type(n).__name__ for n in f.walk_nodes("/")}
                assert "UnImplemented" not in kinds.values(), kinds
                assert f.format_version == "2.1"
                for name, frame in ours.items():
                    table = f.get_node(f"/{name}/table")
                    assert isinstance(table, tables.Table), (path, name)
                    assert table.nrows == len(frame)
                    data = table.read()
                    if "time_ms" in table.colnames:
                        assert table.cols.time_ms.attrs.unit.startswith("milliseconds")
                    if name == "trades":
                        np.testing.assert_array_equal(data["trade_id"], frame["trade_id"])
                        assert data.dtype["buyer_is_maker"] == np.dtype(bool)
        with_rows = [name for name, frame in ours.items() if len(frame)]
        assert_opens_in_pandas_and_pytables(path, with_rows)  # every node and attribute too


def test_every_table_opens_with_plain_h5py(run_output: Path, every_kind: Path) -> None:
    for path in _files(run_output, every_kind):
        with open_snapshot(path) as snap:
            ours = {name: snap.read(name) for name in snap.tables}
        with h5py.File(path, "r") as f:  # not SWMR: the writer is gone
            assert f.attrs["CLASS"] == b"GROUP"
            for name, rows in ours.items():
                ds = f[f"{name}/table"]
                assert ds.attrs["CLASS"] == b"TABLE" and ds.fletcher32
                data = ds[:]  # flat scalar columns, bools as uint8: the same bytes
                assert data.dtype.itemsize == rows.dtype.itemsize
                assert data.tobytes() == rows.tobytes(), (path, name)


def _h5dump() -> str:
    found = shutil.which("h5dump")
    if found is None:
        if os.environ.get("HARNESS_REQUIRE_HDF5_TOOLS") == "1":
            pytest.fail("h5dump is missing: .ci/run installs Debian's hdf5-tools")
        pytest.skip("h5dump not installed (apt-get install hdf5-tools)")
    return found


def test_hdf5_110_command_line_tools_read_structure_and_data(
    run_output: Path, every_kind: Path
) -> None:
    h5dump = _h5dump()
    version = subprocess.run([h5dump, "--version"], capture_output=True, text=True).stdout
    major_minor = tuple(int(v) for v in re.search(r"(\d+)\.(\d+)", version).groups())  # type: ignore[union-attr]
    assert major_minor >= (1, 10), version
    for path in _files(run_output, every_kind):
        header = subprocess.run([h5dump, "-H", str(path)], capture_output=True, text=True,
                                timeout=60)
        assert header.returncode == 0, header.stderr
        assert "error" not in (header.stdout + header.stderr).lower()
        with open_snapshot(path) as snap:
            tables_with_rows = [n for n, count in snap.rows.items() if count]
        for name in tables_with_rows:  # data too: HDF5 1.10 decodes gzip and Fletcher-32
            data = subprocess.run([h5dump, "-d", f"/{name}/table", str(path)],
                                  capture_output=True, text=True, timeout=60)
            assert data.returncode == 0, (name, data.stderr)
            assert "DATA {" in data.stdout
