"""Row layouts of the HDF5 sink: the built-in tables, the checkpoint records and row conversion.

Everything is fixed width because SWMR cannot grow variable-length data safely (vlen strings live
in HDF5's global heap, which SWMR readers cannot follow): symbols are ``S16``, free text is a fixed
UTF-8 byte width cut at a character boundary with a ``*_truncated`` flag beside it, and raw bytes
are base64 text plus their real length (pandas decodes every string column as UTF-8, so binary
bytes in an ``S`` column would make the whole table unreadable there). Gzip squeezes the padding,
so the width costs little on disk. How tables are laid out in the file: ``sinks.hdf5_layout``.
"""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.dead_letters import DeadLetter

log = logging.getLogger("sinks.hdf5")

#: Bumped when the file layout or the meaning of the internal datasets changes; checked on resume.
#: 2: tables as PyTables tables under ``<name>/table`` (``sinks.hdf5_layout``), v110 format.
SCHEMA_VERSION = 2

#: Internal datasets live apart from the caller's tables.
INTERNAL_GROUP = "_sink"
CHECKPOINTS = f"{INTERNAL_GROUP}/checkpoints"
POSITIONS = f"{INTERNAL_GROUP}/positions"
STATE_LOG = f"{INTERNAL_GROUP}/state"

GAPS = "gaps"
DEAD_LETTERS = "dead_letters"
LATE_EVENTS = "late_events"

#: Raw bytes of a dead letter kept in the file; the full frame stays in the JSONL store if any.
DEAD_LETTER_RAW_BYTES = 2048
#: Width of their base64 text.
DEAD_LETTER_RAW_B64 = 4 * ((DEAD_LETTER_RAW_BYTES + 2) // 3)
#: Tweet text: 280 characters of up to 4 UTF-8 bytes each.
TWEET_TEXT_BYTES = 1120

GAPS_DTYPE = np.dtype(
    [
        ("producer_id", "S64"),
        ("topic", "S64"),
        ("first_missing_seq", "i8"),
        ("last_missing_seq", "i8"),
        ("count", "i8"),
        ("detected_at_ns", "i8"),
    ]
)

DEAD_LETTERS_DTYPE = np.dtype(
    [
        ("kind", "S32"),
        ("reason", "S256"),
        ("source", "S64"),
        ("time_ns", "i8"),
        ("raw_len", "i8"),  # length of the original frame
        ("raw_kept", "i4"),  # how many of its bytes are in ``raw_base64``
        ("raw_base64", f"S{DEAD_LETTER_RAW_B64}"),  # the first bytes of the frame, base64
    ]
)

#: Events that arrived after the watermark had closed their window (counted, kept, not merged).
LATE_EVENTS_DTYPE = np.dtype(
    [
        ("kind", "S16"),  # "trade", "tweet", ...
        ("key", "S16"),  # symbol or coin
        ("event_time_ns", "i8"),
        ("watermark_ns", "i8"),
        ("receive_time_ns", "i8"),
        ("window_ns", "i8"),  # size of the window it missed
        ("id", "i8"),  # trade id / tweet id, -1 if none
        ("price", "f8"),
        ("quantity", "f8"),
        ("topic", "S64"),
        ("partition", "i4"),
        ("offset", "i8"),
    ]
)

BUILTIN_TABLES: Mapping[str, np.dtype] = {
    GAPS: GAPS_DTYPE,
    DEAD_LETTERS: DEAD_LETTERS_DTYPE,
    LATE_EVENTS: LATE_EVENTS_DTYPE,
}

POSITIONS_DTYPE = np.dtype(
    [("checkpoint_seq", "i8"), ("topic", "S128"), ("partition", "i4"), ("next_offset", "i8")]
)


def checkpoint_dtype(n_tables: int) -> np.dtype:
    """One record per flush; ``rows[i]`` is the row count of table i (order in an attribute).

    ``crc`` covers every other byte of the record, so a record torn by a crash (extent grown,
    bytes not yet written: zeros) is recognised and ignored; ``seq`` starts at 1 for the same
    reason.
    """
    return np.dtype(
        [
            ("seq", "i8"),
            ("time_ns", "i8"),
            ("positions_start", "i8"),
            ("positions_end", "i8"),
            ("state_start", "i8"),
            ("state_end", "i8"),
            ("rows", "i8", (max(n_tables, 1),)),
            ("crc", "u4"),
        ]
    )


def record_crc(record: np.void) -> int:
    """CRC32 of a checkpoint record without its own ``crc`` field."""
    raw = bytearray(record.tobytes())
    crc_offset = record.dtype.fields["crc"][1]  # type: ignore[index]
    del raw[crc_offset : crc_offset + 4]
    return zlib.crc32(bytes(raw))


def valid_checkpoint(record: np.void) -> bool:
    return int(record["seq"]) > 0 and int(record["crc"]) == record_crc(record)


@dataclass(frozen=True, slots=True)
class Gap:
    """Sequence numbers ``first..last`` (inclusive) of one producer's stream that never arrived."""

    producer_id: str
    topic: str
    first_missing_seq: int
    last_missing_seq: int
    detected_at_ns: int

    @property
    def count(self) -> int:
        return self.last_missing_seq - self.first_missing_seq + 1


def fit_utf8(text: str | bytes, width: int) -> tuple[bytes, bool]:
    """``text`` as UTF-8 cut to ``width`` bytes on a character boundary; True if it was cut."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(raw) <= width:
        return raw, False
    # raw[end] is the first byte left out; step back while it continues a character
    end = width
    while end > 0 and (raw[end] & 0xC0) == 0x80:
        end -= 1
    return raw[:end], True


class SchemaError(ValueError):
    """Rows do not fit the table they are appended to (missing field, wrong type)."""


class RowConverter:
    """Turns what processors produce into a structured array of one table's dtype.

    A structured array with exactly the table's dtype is copied as is (the fast path); one with
    the same field names is cast field by field; sequences of dicts or tuples go through
    ``np.array``. ``str`` values in byte columns are UTF-8 encoded and cut at the column width;
    cut values are counted in ``truncated``.
    """

    def __init__(self, table: str, dtype: np.dtype) -> None:
        self.table = table
        self.dtype = dtype
        self.names: tuple[str, ...] = tuple(dtype.names or ())
        self._byte_fields = {
            i: dtype.fields[n][0].itemsize  # type: ignore[index]
            for i, n in enumerate(self.names)
            if dtype.fields[n][0].kind == "S"  # type: ignore[index]
        }
        self.truncated = 0

    def convert(self, rows: np.ndarray | Sequence[Any] | Iterable[Any]) -> np.ndarray:
        if isinstance(rows, np.ndarray):
            return self._from_array(rows)
        if self.table == DEAD_LETTERS or self.table == GAPS:
            rows = [self._from_record(r) for r in rows]
        tuples = [self._row_tuple(r) for r in rows]
        if not tuples:
            return np.empty(0, self.dtype)
        try:
            return np.array(tuples, dtype=self.dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise SchemaError(f"rows for table {self.table!r} do not fit its dtype: {exc}") from exc

    def _from_array(self, rows: np.ndarray) -> np.ndarray:
        if rows.ndim != 1:
            rows = rows.reshape(-1)
        if rows.dtype == self.dtype:
            return rows.copy()
        names = rows.dtype.names
        if names is None:
            raise SchemaError(f"table {self.table!r} needs a structured array, got {rows.dtype}")
        missing = [n for n in self.names if n not in names]
        if missing:
            raise SchemaError(f"rows for table {self.table!r} lack fields {missing}")
        out = np.empty(len(rows), self.dtype)
        try:
            for name in self.names:
                out[name] = rows[name]
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"rows for table {self.table!r}: {exc}") from exc
        return out

    def _from_record(self, row: Any) -> Any:
        if isinstance(row, DeadLetter):
            return dead_letter_row(row)
        if isinstance(row, Gap):
            return (
                row.producer_id,
                row.topic,
                row.first_missing_seq,
                row.last_missing_seq,
                row.count,
                row.detected_at_ns,
            )
        return row

    def _row_tuple(self, row: Any) -> tuple[Any, ...]:
        if isinstance(row, Mapping):
            try:
                values = [row[n] for n in self.names]
            except KeyError as exc:
                raise SchemaError(f"row for table {self.table!r} lacks field {exc}") from exc
        else:
            values = list(row)
            if len(values) != len(self.names):
                raise SchemaError(
                    f"row for table {self.table!r} has {len(values)} values, "
                    f"expected {len(self.names)}: {self.names}"
                )
        for i, width in self._byte_fields.items():
            value = values[i]
            if isinstance(value, str | bytes):
                fitted, cut = fit_utf8(value, width)
                if cut:
                    if self.truncated == 0:
                        log.warning(
                            "table %s: value of %s cut to %d bytes (further cuts are counted)",
                            self.table,
                            self.names[i],
                            width,
                        )
                    self.truncated += 1
                values[i] = fitted
        return tuple(values)


def dead_letter_row(letter: DeadLetter) -> tuple[Any, ...]:
    kept = letter.raw[:DEAD_LETTER_RAW_BYTES]
    return (
        letter.kind,
        letter.reason,
        letter.source,
        letter.time_ns,
        len(letter.raw),
        len(kept),
        base64.b64encode(kept),
    )


def dead_letter_raw(row: np.void) -> bytes:
    """The kept raw bytes of one ``dead_letters`` row (exact, including NUL bytes)."""
    return base64.b64decode(bytes(row["raw_base64"]))
