"""Whole chunks of a table filtered here and written with ``write_direct_chunk``.

Why: deflating the trades table at checkpoints took about a quarter of the candle processor's
time (zlib at level 1: ~1 us per 144-byte row). ISA-L deflates the same bytes about nine times
faster into a standard zlib stream, so a chunk filtered here with the table's own pipeline
(shuffle, deflate, Fletcher-32, in that order) is one HDF5 reads back like its own: h5py,
PyTables, pandas and h5dump open it, and reading it checks its checksum. Only whole chunks go
this way; the partial chunks at either end of a write (a table's last chunk is rewritten at every
checkpoint) go through HDF5's own filters as before, and so does every table whose pipeline is
not exactly this one (no compression, say).
"""

from __future__ import annotations

import h5py
import numpy as np
from h5py import h5z
from isal import isal_zlib

from sinks.hdf5_layout import TableLayout, write_rows

#: The filter pipeline reproduced here, in HDF5's order (``sinks.hdf5_layout.create_table``).
PIPELINE = (h5z.FILTER_SHUFFLE, h5z.FILTER_DEFLATE, h5z.FILTER_FLETCHER32)
#: HDF5 sums 360 16-bit words before folding the sums, so they never overflow 32 bits.
_FLETCHER_BLOCK = 360


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 of ``data`` (``H5_checksum_fletcher32``: big-endian 16-bit words, the
    sums folded every 360 words, a last odd byte as the high byte of a word), with numpy doing
    each block's sums."""
    words = np.frombuffer(data, ">u2", len(data) // 2).astype(np.int64)
    whole = len(words) // _FLETCHER_BLOCK * _FLETCHER_BLOCK
    blocks = [words[:whole].reshape(-1, _FLETCHER_BLOCK)] if whole else []
    if len(words) > whole:
        blocks.append(words[whole:].reshape(1, -1))
    sum1 = sum2 = 0
    for block in blocks:
        sums = block.sum(axis=1).tolist()
        running = np.cumsum(block, axis=1).sum(axis=1).tolist()
        size = block.shape[1]
        for block_sum, block_running in zip(sums, running, strict=True):
            sum2 = (sum2 + size * sum1 + block_running) & 0xFFFFFFFF
            sum1 = (sum1 + block_sum) & 0xFFFFFFFF
            sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
            sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if len(data) % 2:
        sum1 += data[-1] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return (sum2 << 16) | sum1


def filtered_chunk(rows: np.ndarray) -> bytes:
    """One whole chunk of ``rows`` as HDF5 stores it: bytes shuffled by element, deflated,
    then the Fletcher-32 of that appended, little-endian."""
    shuffled = rows.view(np.uint8).reshape(len(rows), rows.itemsize).T.tobytes()
    packed = isal_zlib.compress(shuffled, 1)
    return packed + fletcher32(packed).to_bytes(4, "little")


class TableWriter:
    """Writes rows into one table dataset, its whole chunks filtered here when it can."""

    def __init__(self, ds: h5py.Dataset, layout: TableLayout) -> None:
        self.ds = ds
        self.layout = layout
        self.chunk_rows = int(ds.chunks[0]) if ds.chunks else 0
        plist = ds.id.get_create_plist()
        filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
        #: The numpy rows are the file's bytes (``write_rows`` hands them over as they are).
        same_bytes = ds.id.get_type().get_size() == layout.dtype.itemsize
        self.direct = filters == PIPELINE and same_bytes and self.chunk_rows > 0

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` at ``start``; the dataset must already be that long."""
        rows = np.ascontiguousarray(rows, dtype=self.layout.dtype)
        size = self.chunk_rows
        end = start + len(rows)
        first = -(-start // size) * size if self.direct else end  # the first whole chunk
        last = end // size * size if self.direct else end  # the end of the last one
        if last - first < size:  # no whole chunk (or not a pipeline reproduced here)
            write_rows(self.ds, start, rows, self.layout)
            return
        if first > start:
            write_rows(self.ds, start, rows[: first - start], self.layout)
        write_chunk = self.ds.id.write_direct_chunk
        for offset in range(first, last, size):
            write_chunk((offset,), filtered_chunk(rows[offset - start : offset - start + size]))
        if end > last:
            write_rows(self.ds, last, rows[last - start :], self.layout)
