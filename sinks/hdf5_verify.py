"""Check a sink file for damage before a writer touches it, in a child process with a deadline.

A damaged HDF5 file can make the library spin for many minutes inside one C call (a truncated
file sent a resuming processor into a loop that ignored SIGTERM and SIGINT: Python's handlers
only run between bytecodes) or raise errors from deep inside h5py. So the check runs in a child
process that the parent kills at its deadline, and everything it finds becomes one line.

What it reads is exactly what the last checkpoint vouches for: every table up to the checkpoint's
row counts and the internal logs up to their extents. HDF5 verifies the checksum of every
metadata block it reads (superblock, object headers, chunk indexes) and the Fletcher-32 checksum
of every data chunk (``sinks.hdf5_layout``), so truncation and flipped bytes in anything the file
promises are caught; bytes past the checkpoint are cut on resume anyway.

Run by hand: ``python -m sinks.hdf5_verify FILE`` (exit 0: intact; 1: damaged, one line why).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from h5py import h5s

#: The child's deadline: a base for start-up plus time to read the file at a slow disk's pace.
VERIFY_BASE_S = 60.0
VERIFY_BYTES_PER_S = 10 * 1024 * 1024
#: Rows read per step.
_SLAB_ROWS = 1 << 16
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_REPO = Path(__file__).resolve().parent.parent


class DamagedFileError(Exception):
    """The file is not an intact sink file; the message is one line."""


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
    if done.returncode < 0:
        raise DamagedFileError(f"the HDF5 library crashed reading it (signal {-done.returncode})")
    raise DamagedFileError(lines[-1] if lines else f"check exited with {done.returncode}")


def check(path: Path) -> None:
    """The child's work: read everything the last checkpoint vouches for (raises on damage)."""
    from sinks.hdf5_checkpoint import last_checkpoint
    from sinks.hdf5_recovery import extents_at, resolve
    from sinks.hdf5_schema import SCHEMA_VERSION

    with h5py.File(path, "r", swmr=True) as f:
        version = f.attrs.get("sink_schema_version")
        if version != SCHEMA_VERSION:
            raise DamagedFileError(
                f"sink layout {version}, this harness reads {SCHEMA_VERSION} (not a sink file "
                "of this version)"
            )
        checkpoint = last_checkpoint(f, refresh=True)
        for name, length in extents_at(f, checkpoint).items():
            ds = f[resolve(name)]
            ds.refresh()
            if ds.shape[0] < length:
                raise DamagedFileError(
                    f"{name} holds {ds.shape[0]} rows, its last checkpoint vouches for {length}"
                )
            for start in range(0, length, _SLAB_ROWS):
                read_raw(ds, start, min(length, start + _SLAB_ROWS))


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
    except DamagedFileError as exc:
        print(exc)
        return 1
    except Exception as exc:  # whatever HDF5 raised: one line
        from sinks.hdf5 import describe_error

        print(describe_error(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
