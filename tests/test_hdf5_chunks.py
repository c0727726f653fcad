"""Whole chunks the sink filters itself (shuffle, ISA-L deflate, Fletcher-32) are chunks HDF5
reads as its own: the checksum is HDF5's bit for bit, the bytes are the rows, and h5py,
PyTables, pandas and h5dump read the table back; a damaged chunk is an error, not numbers."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hdf5_helpers import assert_opens_in_pandas_and_pytables

from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_chunks import TableWriter, filtered_chunk, fletcher32
from sinks.hdf5_layout import TableLayout, create_table, write_rows
from stages.candles import TRADES_DTYPE


def trades(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, TRADES_DTYPE)
    rows["symbol"] = rng.choice([b"BTCUSDT", b"ETHUSDT"], n)
    rows["time_ms"] = 1_700_000_000_000 + np.cumsum(rng.integers(0, 20, n))
    rows["trade_id"] = np.arange(n) + 10**9
    rows["price"] = np.round(rng.uniform(59_950, 60_050, n), 2)
    rows["qty"] = np.round(rng.random(n), 5)
    rows["buyer_is_maker"] = rng.random(n) < 0.5
    rows["producer_id"] = b"binance-host-1234-abcdef"
    rows["seq"] = np.arange(n)
    rows["in_candles"] = True
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_fletcher32_is_hdf5s_own(tmp_path: Path, seed: int) -> None:
    """HDF5 filters a chunk itself; our checksum of its payload is the one it appended, for
    payloads of odd and even length, shorter and longer than one 360-word block."""
    rng = random.Random(seed)
    with h5py.File(tmp_path / "c.h5", "w", libver="latest") as f:
        for i, n in enumerate(rng.sample(range(400, 6000), 8)):
            data = np.arange(n, dtype=np.uint8) // 5
            data[rng.sample(range(n), n // 20)] = 7
            ds = f.create_dataset(f"d{i}", data=data, chunks=(n,), shuffle=True,
                                  compression="gzip", compression_opts=1, fletcher32=True)
            f.flush()  # a chunk still in HDF5's cache cannot be read raw
            _, chunk = ds.id.read_direct_chunk((0,))
            assert fletcher32(chunk[:-4]).to_bytes(4, "little") == chunk[-4:], n


def test_a_filtered_chunk_holds_the_rows_and_hdf5_reads_it(tmp_path: Path) -> None:
    rows = trades(1000)
    layout = TableLayout.of(TRADES_DTYPE, "trades")
    with h5py.File(tmp_path / "t.h5", "w", libver="latest") as f:
        ds = create_table(f, "trades", TRADES_DTYPE, rows_per_chunk=1000)
        assert TableWriter(ds, layout).direct
        ds.resize((1000,))
        ds.id.write_direct_chunk((0,), filtered_chunk(rows))
        _, chunk = ds.id.read_direct_chunk((0,))
        shuffled = zlib.decompress(chunk[:-4])
        assert np.frombuffer(shuffled, np.uint8).reshape(rows.itemsize, -1).T.tobytes() == (
            rows.tobytes())
        assert ds[:].tobytes() == rows.tobytes()
        # HDF5's own filters give the same bytes before deflate (the deflate stream differs)
        other = create_table(f, "other", TRADES_DTYPE, rows_per_chunk=1000)
        other.resize((1000,))
        write_rows(other, 0, rows, layout)
        f.flush()
        assert zlib.decompress(other.id.read_direct_chunk((0,))[1][:-4]) == shuffled


def test_sink_output_with_whole_and_partial_chunks_reads_everywhere(tmp_path: Path) -> None:
    """Checkpoints of uneven sizes: each write has a partial chunk ahead (HDF5's filters),
    whole chunks (ours) and a partial one behind (HDF5's again)."""
    path = tmp_path / "market.h5"
    rows = trades(20_000)
    with Hdf5Sink(path, {"trades": TRADES_DTYPE}, {}) as sink:
        size = sink._datasets["trades"].chunks[0]
        start = 0
        for n in (size // 3, 3 * size + 17, 1, 2 * size, 20_000):
            part = rows[start : start + n]
            sink.append("trades", part)
            sink.flush()
            start += len(part)
        assert sink._writers["trades"].direct
    with h5py.File(path, "r") as f:
        assert f["trades/table"][:].tobytes() == rows.tobytes()
    assert_opens_in_pandas_and_pytables(path, ["trades"])
    assert pd.read_hdf(path, "trades")["trade_id"].tolist() == rows["trade_id"].tolist()
    h5dump = shutil.which("h5dump")
    if h5dump is None:
        if os.environ.get("HARNESS_REQUIRE_HDF5_TOOLS") == "1":
            pytest.fail("h5dump is missing: .ci/run installs Debian's hdf5-tools")
        return
    dump = subprocess.run([h5dump, "-d", "/trades/table", "-s", "3000", "-c", "2", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert dump.returncode == 0 and "1000003000" in dump.stdout, dump.stderr


def test_a_damaged_filtered_chunk_is_an_error_when_read(tmp_path: Path) -> None:
    rows = trades(1000)
    with h5py.File(tmp_path / "d.h5", "w", libver="latest") as f:
        ds = create_table(f, "trades", TRADES_DTYPE, rows_per_chunk=1000)
        ds.resize((1000,))
        chunk = bytearray(filtered_chunk(rows))
        chunk[len(chunk) // 2] ^= 0x10
        ds.id.write_direct_chunk((0,), bytes(chunk))
        with pytest.raises(OSError):
            ds[:]
