"""Batching HDF5 sink: chunked, compressed tables readable (SWMR) while written, crash-resumable.

Usage by a processor (Kafka: ``require_positions=True``)::

    sink = Hdf5Sink.open_for_resume(path, {"candles_1m": CANDLE_DTYPE}, run_metadata,
                                    require_positions=True)
    subscriber.seek(sink.resume_positions())        # nothing lost, nothing read twice
    processor.restore(sink.resume_state())          # windows that were open at the checkpoint
    for batch in subscriber:
        sink.append("candles_1m", processor.feed(batch))
        if due:
            sink.flush(positions=next_offsets, state=processor.snapshot())
            subscriber.commit(next_offsets)         # only after flush() returned
    sink.close()

**Why no loss and no duplicates (replayable transports).** A flush writes, in this order: (1) the
buffered rows of every table, the positions and the processor state, then ``H5Fflush``; (2) one
checkpoint record = (seq, time, row count of every table, where its positions and state are,
CRC), then ``H5Fflush`` again. The checkpoint is the commit point: rows exist in the file only
"up to the last valid checkpoint" for readers and for resume. The positions in a checkpoint are
the next offsets *after* the messages that produced its rows. After a crash, resume cuts every
table back to the last checkpoint's counts (dropping rows written after it) and the processor
seeks to that checkpoint's positions, so those rows are produced again exactly once. Transport
offsets are committed only after ``flush()`` returns; they are a hint (the file's positions win),
so a crash between flush and commit replays nothing twice either. Rows from messages that were
read but not yet flushed are simply re-read. Processor state (open windows) travels inside the
checkpoint, so a window spanning a crash is rebuilt from exactly the trades before the positions.

**Why a crash mid-write is safe.** h5py holds the file open in SWMR mode (file format bounds
v110, readable by HDF5 1.10 and later: see ``sinks.hdf5_layout``), in which HDF5 orders its
metadata writes so that the on-disk file is always a consistent tree as of
some flush, and readers never see dangling pointers. A ``kill -9`` inside a write may leave (a)
tables longer than the last checkpoint: cut on resume; (b) a checkpoint whose extent grew but
whose bytes are zero or partial: its CRC fails and it is ignored; (c) the superblock still marked
"open for writing": only SWMR readers may open such a file, so readers here always open with
``swmr=True`` and resume rebuilds the file (see ``sinks.hdf5_recovery``). Tested by killing a
writer process at random moments (tests/test_hdf5_crash.py). Power loss needs ``fsync=True``.

**Damage** (a truncated file, flipped bytes) is found before the writer touches the file: resume
first reads everything the last checkpoint vouches for in a child process with a deadline
(``sinks.hdf5_verify``; HDF5's metadata checksums and every chunk's Fletcher-32 checksum), so a
damaged file is one line and exit code 2, never a hang inside the HDF5 library or a run that
carries on over corrupt rows.

Limits: one writer per file (an flock on ``<real file>.lock``, the path with every symlink and
``..`` resolved, so no other spelling of the path gets a second writer), so scale out with one file
per processor instance and ``assign()`` of fixed partitions. Under consumer-group rebalancing a
partition can move to an instance whose file has no position for it; it then starts from the
committed offset, which is exactly-once except for rows flushed but not yet committed when the old
owner died (at-least-once for that window). The state log stores the whole state whenever it
changes, so keep it to what is open (windows), not history.

**ZeroMQ** cannot replay, so there are no positions: gaps found from sequence numbers go to the
``gaps`` table (exact counts), bad frames to ``dead_letters``, late events to ``late_events``.

SWMR forbids creating datasets or attributes once it is on, so every table is declared up front;
variable-length data is not SWMR-safe, so strings are fixed-width UTF-8 (see ``hdf5_schema``).
Each table is a PyTables table at ``/<name>/table`` (pandas: ``pd.read_hdf(path, name)``); the
checkpoint machinery lives in ``/_sink``. Layout details: ``sinks.hdf5_layout``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from core.dead_letters import DeadLetter
from core.errors import UserError
from sinks.hdf5_checkpoint import Checkpoint, checkpoint_tables
from sinks.hdf5_chunks import TableWriter
from sinks.hdf5_layout import (
    LIBVER,
    LayoutError,
    TableLayout,
    create_table,
    layout_of,
    mark_group,
    table_path,
    time_units,
)
from sinks.hdf5_metadata import read_attributes, run_attributes, write_attributes
from sinks.hdf5_recovery import left_open_by_writer, rebuild_from_checkpoint, truncate_in_place
from sinks.hdf5_schema import (
    BUILTIN_TABLES,
    CHECKPOINTS,
    DEAD_LETTERS,
    GAPS,
    INTERNAL_GROUP,
    POSITIONS,
    POSITIONS_DTYPE,
    SCHEMA_VERSION,
    STATE_LOG,
    Gap,
    RowConverter,
    SchemaError,
    checkpoint_dtype,
    record_crc,
)
from sinks.hdf5_verify import DamagedFileError, OtherLayoutError, verify
from transports.base import Positions

log = logging.getLogger("sinks.hdf5")

#: gzip or nothing: both are built into every HDF5 library (h5py's lzf is not: PyTables, pandas
#: and the HDF5 tools could not read it).
Compression = Literal["gzip"] | None

DEFAULT_CHUNK_ROWS = 8192
#: Chunks of wide rows (dead letters, tweets, trades) are capped near this size. With no chunk
#: cache (below), every checkpoint re-reads, re-inflates and re-deflates the table's last, partly
#: filled chunk, so a smaller chunk costs less per checkpoint (measured with the pipeline
#: benchmark's checkpoint cadence); much smaller ones compress worse.
TARGET_CHUNK_BYTES = 256 * 1024
#: No raw-data chunk cache: every flush writes its chunks straight through. With a cache, a failed
#: write (disk full) leaves dirty chunks that HDF5 2.0 can neither flush nor drop, and closing the
#: file then crashes the process (segfault at exit); measured cost: see benchmarks/test_bench_hdf5.
RAW_CHUNK_CACHE_BYTES = 0
#: A reader opening the file (the harness's progress, a notebook, a chaos check) holds HDF5's
#: shared file lock for a moment, and a writer's open fails while it does: resume retries this long.
READER_LOCK_WAIT_S = 10.0
GZIP_LEVEL = 1  # level 1 compresses padding nearly as well as 9 at a fraction of the CPU


def describe_error(exc: BaseException) -> str:
    """One line for an HDF5/OS error: HDF5 wraps errno in a long multi-line report."""
    text = str(exc)
    message = re.search(r"error message = '([^']*)'", text)
    errno = re.search(r"errno = (\d+)", text)
    if message:
        return f"{message.group(1)}" + (f" (errno {errno.group(1)})" if errno else "")
    return text.splitlines()[0] if text else type(exc).__name__


def _join_rows(parts: list[np.ndarray]) -> np.ndarray:
    """One array of the parts (one table's dtype): their bytes joined. ``np.concatenate`` of
    structured arrays promotes the dtype in Python per part, which made a checkpoint after many
    small batches cost more than writing its rows."""
    dtype = parts[0].dtype
    if any(part.dtype != dtype for part in parts):  # not from one converter: numpy decides
        return np.concatenate(parts)
    return np.frombuffer(b"".join([np.ascontiguousarray(part) for part in parts]), dtype=dtype)


class SinkError(UserError):
    """The sink cannot write (folder, disk, lock, schema); nothing is reported as flushed."""


class SinkClosedError(SinkError):
    """append()/flush() after close()."""


@dataclass(frozen=True, slots=True)
class FlushResult:
    seq: int
    rows_written: dict[str, int]  # table -> rows added by this flush
    seconds: float


class Hdf5Sink:
    """One HDF5 file kept open; rows are buffered by ``append`` and written by ``flush``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        tables: Mapping[str, np.dtype | Any],
        run_metadata: Mapping[str, Any] | None = None,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        compression: Compression = "gzip",
        require_positions: bool = False,
        fsync: bool = False,
        resume: bool = False,
        units: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Create ``path`` (or, with ``resume``, reopen it at its last checkpoint).

        ``tables`` maps names to structured dtypes; ``gaps``, ``dead_letters`` and
        ``late_events`` are added with the layouts of ``sinks.hdf5_schema`` unless given.
        ``require_positions`` (replayable sources) makes ``flush`` refuse to write rows without
        positions, and ``close`` discard unflushed rows rather than checkpoint them unpositioned.
        ``units`` adds or overrides column units per table (``{"t": {"lag_ms": "milliseconds"}}``);
        by default ``*_ms``/``*_us``/``*_ns`` columns are times since the epoch
        (``hdf5_layout.time_units``).
        """
        if compression not in ("gzip", None):
            raise SinkError(f"compression must be 'gzip' or None, not {compression!r}")
        if chunk_rows < 1:
            raise SinkError(f"chunk_rows must be >= 1, not {chunk_rows}")
        # the real file: the lock, the temporary files and the atomic renames all act on it, so
        # a symlink or another spelling of the path reaches the same lock (and the symlink stays)
        self.path = Path(os.path.realpath(path))
        self.require_positions = require_positions
        self._fsync = fsync
        self._units = {name: dict(u) for name, u in (units or {}).items()}
        schema = {**BUILTIN_TABLES, **{name: np.dtype(dt) for name, dt in tables.items()}}
        self._layouts: dict[str, TableLayout] = {}
        for name, dt in schema.items():
            if not name or name.startswith(INTERNAL_GROUP) or "/" in name or dt.names is None:
                raise SinkError(f"table {name!r}: needs a non-reserved name and a structured dtype")
            try:
                self._layouts[name] = TableLayout.of(dt, name)
            except LayoutError as exc:
                raise SinkError(str(exc)) from exc
        self.schema: dict[str, np.dtype] = schema
        self._converters = {name: RowConverter(name, dt) for name, dt in schema.items()}
        self._buffers: dict[str, list[np.ndarray]] = {name: [] for name in schema}
        self._buffered = dict.fromkeys(schema, 0)
        self.counts: dict[str, int] = dict.fromkeys(schema, 0)
        self.positions: dict[tuple[str, int], int] = {}
        self.dropped_on_resume: dict[str, int] = {}
        self._state = b""
        self._seq = 0
        self._positions_len = 0
        self._state_len = 0
        self._closed = False
        self._failed: BaseException | None = None
        self._lock_fd = self._acquire_lock()
        try:
            if resume and self.path.exists():
                self._file = self._reopen()
            elif self.path.exists():
                raise SinkError(
                    f"{self.path} exists; resume it (open_for_resume) or choose a new path"
                )
            else:
                self._file = self._create(run_metadata or {}, chunk_rows, compression)
        except BaseException:
            self._release_lock()
            raise
        self._datasets = {name: self._file[table_path(name)] for name in schema}
        #: Per table, its writer (whole chunks filtered here: ``sinks.hdf5_chunks``).
        self._writers = {name: TableWriter(ds, self._layouts[name])
                         for name, ds in self._datasets.items()}  # fmt: skip
        self._checkpoints = self._file[CHECKPOINTS]
        self._positions_ds = self._file[POSITIONS]
        self._state_ds = self._file[STATE_LOG]
        self._table_order = checkpoint_tables(self._file)

    @classmethod
    def open_for_resume(
        cls,
        path: str | os.PathLike[str],
        tables: Mapping[str, np.dtype | Any],
        run_metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Hdf5Sink:
        """Reopen at the last complete checkpoint (or create if missing); see module docstring."""
        return cls(path, tables, run_metadata, resume=True, **options)

    # ----------------------------------------------------------------------------- resume API

    def resume_positions(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset to read, as of the last complete checkpoint."""
        return dict(self.positions)

    def resume_state(self) -> bytes:
        """Processor state stored with the last checkpoint (b'' if none)."""
        return self._state

    @property
    def checkpoint_seq(self) -> int:
        return self._seq

    @property
    def buffered_rows(self) -> int:
        return sum(self._buffered.values())

    @property
    def truncated_values(self) -> dict[str, int]:
        """Per table: string values cut to their column width so far."""
        return {n: c.truncated for n, c in self._converters.items() if c.truncated}

    # ---------------------------------------------------------------------------- write path

    def append(self, table: str, rows: np.ndarray | Sequence[Any] | Iterable[Any]) -> int:
        """Buffer rows (structured array of the table's dtype is fastest); returns rows taken."""
        self._check_usable()
        converter = self._converters.get(table)
        if converter is None:
            raise SchemaError(f"unknown table {table!r}; declared: {sorted(self.schema)}")
        arr = converter.convert(rows)
        if len(arr):
            self._buffers[table].append(arr)
            self._buffered[table] += len(arr)
        return len(arr)

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Store callback: ``DeadLetters(source, store=sink.add_dead_letter)``."""
        self.append(DEAD_LETTERS, [letter])

    def add_gaps(self, gaps: Iterable[Gap]) -> None:
        self.append(GAPS, list(gaps))

    def flush(
        self,
        positions: Positions | None = None,
        gaps: Iterable[Gap] = (),
        state: bytes | None = None,
    ) -> FlushResult | None:
        """Write every buffered row, then a checkpoint; returns None if there was nothing to do.

        ``positions`` are the next offsets after the last message whose rows were appended
        (merged into the positions known so far); ``state`` replaces the stored processor state.
        On any write error the sink is marked failed and ``SinkError`` is raised: the checkpoint
        did not happen, positions did not advance, and the process should restart and resume.
        """
        self._check_usable()
        gaps = list(gaps)
        if gaps:
            self.add_gaps(gaps)
        new_positions = {(str(t), int(p)): int(o) for (t, p), o in (positions or {}).items()}
        if self.require_positions and self.buffered_rows and not new_positions:
            raise SinkError(
                "flush() without positions while rows are buffered; a replayable source must "
                "pass the next offsets, or resume would duplicate these rows"
            )
        merged = {**self.positions, **new_positions}
        state_changed = state is not None and state != self._state
        if not self.buffered_rows and merged == self.positions and not state_changed:
            return None
        started = time.perf_counter()
        try:
            written = self._write_checkpoint(merged, state if state_changed else None)
        except Exception as exc:
            self._failed = exc
            raise SinkError(
                f"writing {self.path} failed ({describe_error(exc)}); nothing after "
                f"checkpoint {self._seq} is flushed; restart and resume from the file"
            ) from exc
        self.positions = merged
        if state_changed:
            self._state = state or b""
        return FlushResult(self._seq, written, time.perf_counter() - started)

    def _write_checkpoint(
        self, positions: dict[tuple[str, int], int], state: bytes | None
    ) -> dict[str, int]:
        counts = dict(self.counts)
        written: dict[str, int] = {}
        for name, parts in self._buffers.items():
            if not parts:
                continue
            rows = parts[0] if len(parts) == 1 else _join_rows(parts)
            ds = self._datasets[name]
            start = counts[name]
            ds.resize((start + len(rows),))
            self._writers[name].write(start, rows)
            counts[name] = start + len(rows)
            written[name] = len(rows)
        pos_start = self._positions_len
        if positions:
            pos = np.array(
                [(self._seq + 1, t, p, o) for (t, p), o in sorted(positions.items())],
                dtype=POSITIONS_DTYPE,
            )
            self._positions_ds.resize((pos_start + len(pos),))
            self._positions_ds[pos_start:] = pos
        pos_end = pos_start + len(positions)
        state_start, state_end = self._state_bounds(state)
        self._file.flush()  # rows, positions and state are on disk before the commit record
        record = np.zeros((), self._checkpoints.dtype)
        record["seq"] = self._seq + 1
        record["time_ns"] = time.time_ns()
        record["positions_start"], record["positions_end"] = pos_start, pos_end
        record["state_start"], record["state_end"] = state_start, state_end
        record["rows"][: len(self._table_order)] = [counts[n] for n in self._table_order]
        record["crc"] = record_crc(record[()])
        n = self._checkpoints.shape[0]
        self._checkpoints.resize((n + 1,))
        self._checkpoints[n] = record
        self._file.flush()
        if self._fsync:
            self._sync_to_disk()
        # success: only now does the in-memory view advance
        self._seq += 1
        self.counts = counts
        self._positions_len = pos_end
        for name in written:
            self._buffers[name].clear()
            self._buffered[name] = 0
        return written

    def _state_bounds(self, state: bytes | None) -> tuple[int, int]:
        """Append new state to the byte log; unchanged state points at the previous bytes."""
        if state is None:
            return self._state_len - len(self._state), self._state_len
        start = self._state_len
        if state:
            self._state_ds.resize((start + len(state),))
            self._state_ds[start:] = np.frombuffer(state, np.uint8)
        self._state_len = start + len(state)
        return start, self._state_len

    def _sync_to_disk(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------------------ lifecycle

    def close(
        self,
        positions: Positions | None = None,
        gaps: Iterable[Gap] = (),
        state: bytes | None = None,
    ) -> None:
        """Flush (when safe) and close; idempotent, and bounded (local file I/O only).

        With ``require_positions`` and no ``positions``, buffered rows are discarded (logged):
        checkpointing them under stale positions would duplicate them on resume, and they will
        be re-read from the transport instead.
        """
        if self._closed:
            return
        try:
            if self._failed is None:
                gaps = list(gaps)
                if gaps:
                    self.add_gaps(gaps)
                if self.require_positions and not positions and self.buffered_rows:
                    log.warning(
                        "%s: closing without positions; %d buffered rows not written "
                        "(they are re-read from the transport on resume)",
                        self.path,
                        self.buffered_rows,
                    )
                else:
                    self.flush(positions, state=state)
        finally:
            self._closed = True
            try:
                self._file.close()
            except Exception as exc:  # the file may be unusable after a failed write
                log.warning("%s: close failed: %s", self.path, exc)
            self._release_lock()

    def __enter__(self) -> Hdf5Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise SinkClosedError(f"{self.path}: sink is closed")
        if self._failed is not None:
            raise SinkError(
                f"{self.path}: an earlier write failed ({describe_error(self._failed)}); "
                "restart and resume"
            )

    # --------------------------------------------------------------------------- open / create

    def _acquire_lock(self) -> int:
        """One writer per file: an flock on ``<real file>.lock`` (released by the kernel on kill
        -9). ``self.path`` is already resolved, so every spelling of the path shares this lock."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SinkError(f"cannot create output file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise SinkError(f"{self.path} is being written by another process") from exc
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = -1

    def _create(
        self, run_metadata: Mapping[str, Any], chunk_rows: int, compression: Compression
    ) -> h5py.File:
        """Build the complete file under a temporary name, switch on SWMR, then rename it in.

        Readers therefore never see a file without its schema, and a crash during creation
        leaves only a hidden temporary file.
        """
        tmp = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}")
        try:
            f = h5py.File(tmp, "w", libver=LIBVER, rdcc_nbytes=RAW_CHUNK_CACHE_BYTES)
        except OSError as exc:
            raise SinkError(f"cannot create output file {self.path}: {exc}") from exc
        try:
            mark_group(f)
            write_attributes(f, run_attributes(run_metadata))
            f.attrs["sink_schema_version"] = SCHEMA_VERSION
            gzip = GZIP_LEVEL if compression == "gzip" else None
            opts: dict[str, Any] = {"fletcher32": True}
            if gzip is not None:
                opts.update(compression="gzip", compression_opts=gzip, shuffle=True)
            for name, dt in self.schema.items():
                rows_per_chunk = max(1, min(chunk_rows, TARGET_CHUNK_BYTES // dt.itemsize))
                units = {**time_units(dt), **self._units.get(name, {})}
                create_table(f, name, dt, rows_per_chunk=rows_per_chunk, gzip_level=gzip,
                             units=units)
            tables = list(self.schema)
            mark_group(f.create_group(INTERNAL_GROUP), "checkpoints of the harness sink")
            ck = f.create_dataset(
                CHECKPOINTS,
                shape=(0,),
                maxshape=(None,),
                dtype=checkpoint_dtype(len(tables)),
                chunks=(64,),
                fletcher32=True,
            )
            ck.attrs["tables"] = json.dumps(tables)
            f.create_dataset(
                POSITIONS,
                shape=(0,),
                maxshape=(None,),
                dtype=POSITIONS_DTYPE,
                chunks=(256,),
                fletcher32=True,
            )
            f.create_dataset(
                STATE_LOG, shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(65536,), **opts
            )
            f.swmr_mode = True
            f.flush()
            os.replace(tmp, self.path)
        except BaseException as exc:
            f.close()
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError | RuntimeError | ValueError):
                raise SinkError(f"cannot create output file {self.path}: {exc}") from exc
            raise
        return f

    def _reopen(self) -> h5py.File:
        """Check the existing file, cut it back to its last checkpoint and continue writing it."""
        try:
            verify(self.path)
        except OtherLayoutError as exc:
            raise SinkError(f"{self.path} has {exc}; use a new output file") from None
        except DamagedFileError as exc:
            raise SinkError(
                f"{self.path} is damaged, left as it is: {exc}; move it away to start a new file"
            ) from None
        except OSError as exc:
            raise SinkError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            rebuilt = left_open_by_writer(self.path)
            if rebuilt:
                self.dropped_on_resume = rebuild_from_checkpoint(self.path)
            try:
                f = self._open_writable()
            except OSError as exc:
                if rebuilt:
                    raise
                # e.g. a write failed on a full disk: the superblock records an end of file
                # past the real one; SWMR readers still see the last checkpoint, so copy it
                log.warning("%s: not writable (%s); rebuilding", self.path, describe_error(exc))
                self.dropped_on_resume = rebuild_from_checkpoint(self.path)
                f = self._open_writable()
        except (OSError, KeyError) as exc:
            raise SinkError(f"cannot reopen {self.path} for resume: {describe_error(exc)}") from exc
        try:
            self._check_schema(f)
            checkpoint, dropped = truncate_in_place(f)
            for name, n in dropped.items():
                self.dropped_on_resume[name] = self.dropped_on_resume.get(name, 0) + n
            self._adopt(f, checkpoint)
            resumes = read_attributes(f).get("resumes", [])
            resumes.append(
                {
                    "time_ns": time.time_ns(),
                    "pid": os.getpid(),
                    "checkpoint_seq": self._seq,
                    "dropped_rows": self.dropped_on_resume,
                }
            )
            f.attrs["resumes"] = json.dumps(resumes)
            f.swmr_mode = True
            f.flush()
        except BaseException:
            f.close()
            raise
        if self.dropped_on_resume:
            log.warning(
                "%s: resumed at checkpoint %d; dropped rows written after it: %s",
                self.path,
                self._seq,
                self.dropped_on_resume,
            )
        return f

    def _open_writable(self) -> h5py.File:
        deadline = time.monotonic() + READER_LOCK_WAIT_S
        while True:
            try:
                return h5py.File(self.path, "r+", libver=LIBVER,
                                 rdcc_nbytes=RAW_CHUNK_CACHE_BYTES)
            except BlockingIOError:  # a reader holds the lock (EAGAIN)
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _check_schema(self, f: h5py.File) -> None:
        version = f.attrs.get("sink_schema_version")
        if version != SCHEMA_VERSION:
            raise SinkError(
                f"{self.path} has sink layout {version}, this harness writes {SCHEMA_VERSION}; "
                "use a new output file"
            )
        stored = checkpoint_tables(f)
        if stored != list(self.schema):
            raise SinkError(
                f"{self.path} holds tables {stored}, this run declares {list(self.schema)}; "
                "use a new output file"
            )
        for name, dt in self.schema.items():
            on_disk = layout_of(f[table_path(name)]).dtype
            if on_disk != dt:
                raise SinkError(
                    f"{self.path}: table {name!r} has dtype {on_disk}, this run {dt}; "
                    "use a new output file"
                )

    def _adopt(self, f: h5py.File, checkpoint: Checkpoint | None) -> None:
        if checkpoint is None:
            return
        self._seq = checkpoint.seq
        self.counts = {name: checkpoint.rows.get(name, 0) for name in self.schema}
        self.positions = dict(checkpoint.positions)
        self._state = checkpoint.state
        self._positions_len = checkpoint.positions_end
        self._state_len = checkpoint.state_end
