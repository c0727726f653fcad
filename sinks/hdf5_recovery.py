"""Bring a sink file back to its last complete checkpoint after the writer died.

A SWMR writer killed with ``kill -9`` leaves the superblock's "open for writing" flags set, so
HDF5 refuses to open the file normally ("may use h5clear"); only SWMR *readers* may open it, and
they see the metadata as of the last flush. Rather than patching the superblock in place (what
``h5clear -s`` does; the HDF5 API has no public call for it, and a crashed SWMR writer can leave
allocations past the recorded end of file that a new writer would overwrite), recovery reads the
file as a SWMR reader, copies every dataset up to the last valid checkpoint into a new file in the
same folder and atomically renames it over the old one. The cost is one sequential copy per crash;
the original stays untouched until the rename, so a crash during recovery loses nothing.

A file that was closed cleanly is truncated in place instead (dataset shrink, no copy).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
from h5py import h5d, h5s

from sinks.hdf5_checkpoint import Checkpoint, checkpoint_tables, last_checkpoint
from sinks.hdf5_layout import LIBVER, table_path
from sinks.hdf5_schema import CHECKPOINTS, INTERNAL_GROUP, POSITIONS, STATE_LOG
from sinks.hdf5_verify import open_without_writer, read_raw

log = logging.getLogger("sinks.hdf5")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Rows (or bytes for the state log) copied per slab during recovery.
_COPY_SLAB_ROWS = 1 << 16


def left_open_by_writer(path: Path) -> bool:
    """True if the superblock says a writer had the file open and never closed it.

    Superblock versions 2 and 3 (format 1.8 and later) keep "file consistency flags" in byte 11;
    older versions do not record it (the sink's v110 format writes version 3).
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or head[:8] != _HDF5_SIGNATURE:
        return False
    return head[8] >= 2 and head[11] != 0


def resolve(name: str) -> str:
    """Dataset path of a key of ``extents_at``: a table name or an internal dataset's path."""
    return name if name.startswith(INTERNAL_GROUP + "/") else table_path(name)


def extents_at(f: h5py.File, checkpoint: Checkpoint | None) -> dict[str, int]:
    """Length of every dataset (tables by name, internal logs by path) as of ``checkpoint``."""
    tables = checkpoint_tables(f)
    if checkpoint is None:
        out = dict.fromkeys(tables, 0)
        out.update({CHECKPOINTS: 0, POSITIONS: 0, STATE_LOG: 0})
        return out
    out = {name: checkpoint.rows.get(name, 0) for name in tables}
    out[CHECKPOINTS] = checkpoint.index + 1
    out[POSITIONS] = checkpoint.positions_end
    out[STATE_LOG] = checkpoint.state_end
    return out


def truncate_in_place(f: h5py.File) -> tuple[Checkpoint | None, dict[str, int]]:
    """Shrink every dataset of a writable file to its last checkpoint; returns rows dropped."""
    checkpoint = last_checkpoint(f)
    dropped: dict[str, int] = {}
    for name, length in extents_at(f, checkpoint).items():
        ds = f[resolve(name)]
        if ds.shape[0] > length:
            dropped[name] = ds.shape[0] - length
            ds.resize((length, *ds.shape[1:]))
    return checkpoint, dropped


def rebuild_from_checkpoint(path: Path) -> dict[str, int]:
    """Replace a crashed file by a copy of its last checkpoint; returns rows dropped."""
    tmp = path.with_name(f".{path.name}.recovering-{os.getpid()}")
    dropped: dict[str, int] = {}
    try:
        with (
            open_without_writer(path) as src,
            h5py.File(tmp, "w", libver=LIBVER) as dst,
        ):
            checkpoint = last_checkpoint(src, refresh=True)
            _copy_attributes(src, dst)
            for name, length in extents_at(src, checkpoint).items():
                ds = src[resolve(name)]
                ds.refresh()
                if ds.shape[0] > length:
                    dropped[name] = ds.shape[0] - length
                _copy_prefix(ds, dst, length)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    log.warning(
        "%s: writer had died; rebuilt the file at its last checkpoint (dropped %s)",
        path,
        dropped or "nothing",
    )
    return dropped


def _copy_attributes(src: h5py.Group | h5py.Dataset, dst: h5py.Group | h5py.Dataset) -> None:
    for key in src.attrs:
        dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)


def _copy_prefix(src: h5py.Dataset, dst: h5py.File, length: int) -> None:
    """The first ``length`` rows of ``src`` into ``dst`` at the same path, with the same type,
    chunking, filters and attributes (and its parent groups' attributes)."""
    parent_path = src.parent.name
    if parent_path not in dst:
        dst.create_group(parent_path)
        _copy_attributes(src.parent, dst[parent_path])
    space = h5s.create_simple((length, *src.shape[1:]), (h5s.UNLIMITED, *src.shape[1:]))
    out = h5py.Dataset(
        h5d.create(dst[parent_path].id, src.name.rsplit("/", 1)[1].encode(), src.id.get_type(),
                   space, dcpl=src.id.get_create_plist())
    )
    _copy_attributes(src, out)
    ftype = src.id.get_type()
    for start in range(0, length, _COPY_SLAB_ROWS):
        stop = min(length, start + _COPY_SLAB_ROWS)
        rows = read_raw(src, start, stop)
        file_space = out.id.get_space()
        file_space.select_hyperslab((start, *[0] * (len(src.shape) - 1)),
                                    (stop - start, *src.shape[1:]))
        out.id.write(h5s.create_simple(rows.shape), file_space, rows, mtype=ftype)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
