"""Check a sink file for damage before a writer touches it, in a child process with a deadline.

What hung: a crashed writer leaves the superblock flagged "open for writing", so resume opens the
file as a SWMR reader, and a SWMR reader takes a metadata checksum failure for a write in progress
and retries it -- 100 times per block, backing off -- with flipped header bytes that ran past 12
minutes inside one C call, deaf to SIGTERM and SIGINT (Python's handlers run between bytecodes).
Here no writer is alive (the resuming process holds the file's lock), so ``open_without_writer``
allows one read attempt: a checksum failure is damage, reported at once. The check still runs in
a child process that the parent kills at a deadline, so no other loop in the library can hang the
processor, and whatever it finds becomes one line.

What it reads is everything the last checkpoint vouches for: every object and attribute, every
table up to the checkpoint's row counts and the internal logs up to their extents. HDF5 verifies
the checksum of every metadata block it reads (superblock, object headers, attribute indexes,
chunk indexes) and the Fletcher-32 checksum of every data chunk (``sinks.hdf5_layout``), so
truncation and flipped bytes in anything the file promises are caught; bytes past the checkpoint
are cut on resume anyway, and the space earlier flushes freed (HDF5 does not reuse it across
sessions) holds nothing a reader sees.

Run by hand: ``python -m sinks.hdf5_verify FILE`` (exit 0: intact; 1: damaged, one line why).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import h5py
import numpy as np
from h5py import h5f, h5p, h5s

#: The child's deadline: a base for start-up plus time to read the file at a slow disk's pace.
VERIFY_BASE_S = 60.0
VERIFY_BYTES_PER_S = 10 * 1024 * 1024
#: Rows read per step.
_SLAB_ROWS = 1 << 16
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Offset of the end-of-file address in a version 2/3 superblock with 8-byte addresses.
_SUPERBLOCK_EOF = 28
_REPO = Path(__file__).resolve().parent.parent


class DamagedFileError(Exception):
    """The file is not an intact sink file; the message is one line."""


class OtherLayoutError(DamagedFileError):
    """An intact sink file of another layout version (an older harness wrote it)."""


_EXIT_DAMAGED, _EXIT_OTHER_LAYOUT = 1, 3


@cache
def _loaded_hdf5() -> ctypes.CDLL | None:
    """The HDF5 library h5py loaded (the same copy: property lists are per library)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libhdf5" in line}
    except OSError:
        return None
    core = sorted(p for p in paths if "libhdf5_hl" not in p and "libhdf5" in Path(p).name)
    if not core:
        return None
    try:
        return ctypes.CDLL(core[0])
    except OSError:
        return None


def open_without_writer(path: Path) -> h5py.File:
    """Open read-only as a SWMR reader (works on files whose writer died), with one metadata read
    attempt: only for files no writer holds, where a checksum failure can only be damage."""
    fapl = h5p.create(h5p.FILE_ACCESS)
    lib = _loaded_hdf5()
    if lib is not None:
        lib.H5Pset_metadata_read_attempts(ctypes.c_int64(fapl.id), ctypes.c_uint(1))
    fid = h5f.open(str(path).encode(), h5f.ACC_RDONLY | h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


def deadline_s(path: Path) -> float:
    return VERIFY_BASE_S + path.stat().st_size / VERIFY_BYTES_PER_S


def verify(path: str | os.PathLike[str], timeout: float | None = None) -> None:
    """Raise ``DamagedFileError`` (one line) unless ``path`` reads back intact within a deadline."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(len(_HDF5_SIGNATURE))
    if head != _HDF5_SIGNATURE:
        raise DamagedFileError("no HDF5 signature at its start (not an HDF5 file, or overwritten)")
    limit = deadline_s(path) if timeout is None else timeout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sinks.hdf5_verify", str(path)],
            capture_output=True,
            text=True,
            timeout=limit,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise DamagedFileError(
            f"the HDF5 library did not finish reading it within {limit:.0f} s (damaged "
            "structure)"
        ) from None
    if done.returncode == 0:
        return
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode == _EXIT_OTHER_LAYOUT and lines:
        raise OtherLayoutError(lines[-1])
    if done.returncode < 0:
        reason = f"the HDF5 library crashed reading it (signal {-done.returncode})"
    else:
        reason = lines[-1] if lines else f"check exited with {done.returncode}"
    raise DamagedFileError(reason if reason.startswith("truncated") else reason + _size_hint(path))


def _size_hint(path: Path) -> str:
    """" (N bytes, superblock says M)" when the file is shorter than its superblock records."""
    with open(path, "rb") as fh:
        head = fh.read(_SUPERBLOCK_EOF + 8)
    if len(head) < _SUPERBLOCK_EOF + 8 or head[8] not in (2, 3) or head[9] != 8:
        return ""
    stored = int.from_bytes(head[_SUPERBLOCK_EOF : _SUPERBLOCK_EOF + 8], "little")
    size = path.stat().st_size
    return f" (the file has {size} bytes, its superblock records {stored})" if size < stored else ""


def check(path: Path) -> None:
    """The child's work: read everything the last checkpoint vouches for (raises on damage)."""
    from sinks.hdf5_checkpoint import last_checkpoint
    from sinks.hdf5_recovery import extents_at, resolve
    from sinks.hdf5_schema import CHECKPOINTS, SCHEMA_VERSION

    size = path.stat().st_size
    with open_without_writer(path) as f:
        version = f.attrs.get("sink_schema_version")
        if version is not None and version != SCHEMA_VERSION:
            raise OtherLayoutError(
                f"sink layout {version} (written by an older harness), this harness writes "
                f"{SCHEMA_VERSION}"
            )
        if version != SCHEMA_VERSION:
            raise DamagedFileError(
                f"no sink layout {SCHEMA_VERSION} in its attributes (found {version}): not a "
                "sink file of this version, or its metadata is lost"
            )
        # HDF5 reads bytes past the end of a file as zeros, and a chunk of zeros passes its
        # checksum: so a truncated file could hide its newest checkpoints and look like a file
        # whose writer died before them. Every stored checkpoint chunk must be in the file (a
        # write that failed on a full disk leaves none outside: tests/test_hdf5_sink.py).
        _read_every_object_and_attribute(f)
        records = f[CHECKPOINTS]
        _chunks_inside(records, 0, records.shape[0], size, CHECKPOINTS)
        checkpoint = last_checkpoint(f, refresh=True)
        for name, length in extents_at(f, checkpoint).items():
            ds = f[resolve(name)]
            ds.refresh()
            if ds.shape[0] < length:
                raise DamagedFileError(
                    f"{name} holds {ds.shape[0]} rows, its last checkpoint vouches for {length}"
                )
            _chunks_inside(ds, 0, length, size, name)
            for start in range(0, length, _SLAB_ROWS):
                read_raw(ds, start, min(length, start + _SLAB_ROWS))


def _read_every_object_and_attribute(f: h5py.File) -> None:
    """Open every object and decode every attribute: their headers and attribute indexes carry
    checksums too, and a reader (pandas, PyTables) fails on a damaged one even when every table's
    rows are intact."""

    def visit(obj: h5py.Group | h5py.Dataset) -> None:
        for name in obj.attrs:
            obj.attrs[name]

    visit(f)
    f.visititems(lambda _name, obj: visit(obj))


def _chunks_inside(ds: h5py.Dataset, start: int, stop: int, size: int, name: str) -> None:
    """Every stored chunk holding rows ``start:stop`` lies within the file's ``size`` bytes."""
    step = ds.chunks[0]
    for row in range(start - start % step, stop, step):
        info = ds.id.get_chunk_info_by_coord((row, *[0] * (len(ds.shape) - 1)))
        if info.byte_offset is None:  # never written: reads as the fill value
            continue
        if info.byte_offset + info.size > size:
            raise DamagedFileError(
                f"truncated: {name} rows from {row} are stored at bytes "
                f"{info.byte_offset}..{info.byte_offset + info.size}, the file has {size}"
            )


def read_raw(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of any 1-D or N-D dataset as stored (no type conversion)."""
    file_space = ds.id.get_space()
    file_space.select_hyperslab((start, *[0] * (len(ds.shape) - 1)), (stop - start, *ds.shape[1:]))
    out = np.empty((stop - start, *ds.shape[1:]), ds.dtype)
    ds.id.read(h5s.create_simple(out.shape), file_space, out, mtype=ds.id.get_type())
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sinks.hdf5_verify FILE", file=sys.stderr)
        return 2
    try:
        check(Path(argv[0]))
    except OtherLayoutError as exc:
        print(exc)
        return _EXIT_OTHER_LAYOUT
    except DamagedFileError as exc:
        print(exc)
        return _EXIT_DAMAGED
    except Exception as exc:  # whatever HDF5 raised: one line
        from sinks.hdf5 import describe_error

        print(describe_error(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
