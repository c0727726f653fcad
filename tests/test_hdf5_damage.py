"""A damaged output file is one line and exit code 2, at once; never a hang or a run on bad rows.

The files are a real candle processor's ``market.h5`` (from ``harness run``), damaged as disks and
people damage files: cut in half, cut to a tenth (everything it vouches for lies past the new
end), four flipped bytes in the superblock, 64 flipped bits in a chunk of the rows the last
checkpoint vouches for, four flipped bytes in a table's object header and in an attribute index.
``harness process candles`` is then asked to resume each one. The flips land where the file keeps
something: about a third of a sink file is space earlier flushes freed (HDF5 does not reuse it
across sessions), and damage there is rightly no reason to refuse a resume. Also here: the
single-writer lock holds through a symlink and through another spelling of the same path.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from h5py import h5o
from hdf5_helpers import short_run

from sinks.hdf5 import Hdf5Sink, SinkError
from sinks.hdf5_checkpoint import last_checkpoint
from sinks.hdf5_layout import table_path
from sinks.hdf5_reader import read_table
from transports.brokers import free_tcp_port

#: A hang (the bug this guards against ran past 12 minutes) fails here instead.
PROCESS_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def market_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return short_run(tmp_path_factory.mktemp("run"), 5) / "market.h5"


def _damaged(market_h5: Path, tmp_path: Path, how: str) -> Path:
    data = bytearray(market_h5.read_bytes())
    rng = random.Random(how)
    if how == "cut in half":
        data = data[: len(data) // 2]
    elif how == "cut to a tenth":
        data = data[: len(data) // 10]
    elif how == "flipped header bytes":
        for i in rng.sample(range(8, 48), 4):  # inside the superblock
            data[i] ^= 0xFF
    elif how == "64 flipped bits in vouched rows":
        start, stop = _vouched_chunk_bytes(market_h5, "trades")
        for i in rng.sample(range(start, stop), 64):
            data[i] ^= 1 << rng.randrange(8)
    elif how == "flipped bytes in a table's header":
        with h5py.File(market_h5, "r") as f:
            header = h5o.get_info(f[table_path("trades")].id).addr
        for i in rng.sample(range(header + 8, header + 64), 4):
            data[i] ^= 0xFF
    elif how == "flipped bytes in an attribute index":
        # The newest fractal heap header (a table's dense attributes): no table read touches it.
        heap = data.rfind(b"FRHP")
        for i in rng.sample(range(heap + 4, heap + 40), 4):
            data[i] ^= 0xFF
    path = tmp_path / "market.h5"
    path.write_bytes(bytes(data))
    return path


def _vouched_chunk_bytes(market_h5: Path, table: str) -> tuple[int, int]:
    """The byte range of the middle stored chunk among those holding ``table``'s vouched rows."""
    with h5py.File(market_h5, "r") as f:
        vouched = last_checkpoint(f).rows[table]
        ds = f[table_path(table)]
        step = ds.chunks[0]
        assert vouched >= step, "the run wrote too few rows to damage a full chunk"
        info = ds.id.get_chunk_info_by_coord(((vouched // step // 2) * step,))
        return info.byte_offset, info.byte_offset + info.size


def _resume(path: Path) -> subprocess.CompletedProcess[str]:
    url = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pushpull"
    cmd = [sys.executable, "-m", "harness.cli", "process", "candles", "--transport", url,
           "--output", str(path), "--duration", "3", "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how",
    [
        "cut in half",
        "cut to a tenth",
        "flipped header bytes",
        "64 flipped bits in vouched rows",
        "flipped bytes in a table's header",
        "flipped bytes in an attribute index",
    ],
)
def test_damaged_file_is_one_line_and_exit_2_and_left_untouched(
    market_h5: Path, tmp_path: Path, how: str
) -> None:
    path = _damaged(market_h5, tmp_path, how)
    before = path.read_bytes()
    done = _resume(path)
    assert done.returncode == 2, (how, done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    error = [line for line in lines if "error" in line]
    assert len(error) == 1 and "is damaged" in error[0], lines
    assert path.read_bytes() == before  # nothing rebuilt, nothing cut: the evidence stays


@pytest.mark.slow
def test_intact_copy_of_the_same_file_resumes(market_h5: Path, tmp_path: Path) -> None:
    path = tmp_path / "market.h5"
    shutil.copyfile(market_h5, path)
    trades = len(read_table(path, "trades"))
    done = _resume(path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(read_table(path, "trades")) == trades


# ------------------------------------------------------------------- one writer per real file

T = np.dtype([("ts", "i8"), ("symbol", "S12")])


def test_a_symlink_to_a_file_being_written_does_not_get_a_second_writer(tmp_path: Path) -> None:
    real = tmp_path / "data" / "m.h5"
    link = tmp_path / "link.h5"
    with Hdf5Sink(real, {"t": T}) as sink:
        sink.append("t", [(1, "BTC")])
        sink.flush()
        link.symlink_to(real)
        with pytest.raises(SinkError, match="being written by another process"):
            Hdf5Sink.open_for_resume(link, {"t": T})
    assert len(read_table(real, "t")) == 1
    resumed = Hdf5Sink.open_for_resume(link, {"t": T})  # the writer is gone: resume through it
    assert resumed.path == real.resolve()
    resumed.close()
    assert link.is_symlink()  # the link still points at the file, not replaced by a copy


def test_another_spelling_of_the_path_does_not_get_a_second_writer(tmp_path: Path) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "data" / "sub", target_is_directory=True)
    real = tmp_path / "data" / "m.h5"
    with Hdf5Sink(real, {"t": T}):
        for spelling in (tmp_path / "data" / "sub" / ".." / "m.h5",
                         tmp_path / "alias" / ".." / "m.h5"):
            with pytest.raises(SinkError, match="being written by another process"):
                Hdf5Sink.open_for_resume(spelling, {"t": T})
