"""Recordings: raw source frames with their receive times, in gzip JSONL, for byte-exact replay.

One line per received frame: ``{"recv_ns": <int>, "raw": "<frame text exactly as received>"}``.
The raw text is kept as received (not re-serialized), so a replay feeds the decoder exactly what
the live source sent. A frame that is not UTF-8 (a hostile or damaged one) is kept byte for byte
as ``"raw_b64"`` instead, so its replay is dead-lettered the same way. Lines are flushed every
``flush_every`` frames so a killed recorder keeps what came before (``read_recording`` stops
quietly at a cut tail).
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec
import orjson
from isal import igzip, isal_zlib

from core.errors import UserError


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One frame as received: text (recordings, generators) or bytes (live clients).

    A msgspec struct: built once per frame on the hot path, in a tenth of a frozen dataclass's
    time."""

    recv_ns: int
    raw: bytes | str

    def raw_bytes(self) -> bytes:
        return self.raw if type(self.raw) is bytes else self.raw.encode()  # type: ignore[union-attr]


class RecordingWriter:
    """Appends frames; ``flush_every`` bounds what a crash can lose (frames, not bytes)."""

    def __init__(self, path: Path, flush_every: int = 100) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = gzip.open(path, "ab")
        self._flush_every = flush_every
        self._pending = 0
        self.written = 0

    def write(self, raw: str | bytes, recv_ns: int | None = None) -> None:
        entry: dict[str, object] = {"recv_ns": time.time_ns() if recv_ns is None else recv_ns}
        if type(raw) is bytes:
            try:
                entry["raw"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                entry["raw_b64"] = base64.b64encode(raw).decode("ascii")
        else:
            entry["raw"] = raw
        self._fh.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        self.written += 1
        self._pending += 1
        if self._pending >= self._flush_every:
            self._fh.flush()
            self._pending = 0

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Most decompressed bytes read at a time (``read1``: what one read of the file gives, so a cut
#: file loses only the lines of its last read). The whole lines of a chunk are decoded by a
#: typed msgspec decoder (half the cost of ``orjson.loads`` and picking the keys in Python); a
#: chunk with anything unusual in it (a ``raw_b64`` frame, a damaged or foreign line) goes
#: line by line, checked one at a time.
READ_CHUNK_BYTES = 256 * 1024


class _Line(msgspec.Struct, gc=False):
    """A recording line as the chunk decoder reads it (unknown keys ignored, like ``orjson``)."""

    recv_ns: int
    raw: str | None = None


_decode_line = msgspec.json.Decoder(_Line).decode


def read_recording(path: Path, tolerant: bool = True) -> Iterator[Frame]:
    """Yield frames in file order. ``tolerant`` stops quietly at a cut tail (a crash); a file
    that is not a recording at all is a ``UserError`` either way."""
    if not path.is_file():
        raise UserError(f"recording {path} does not exist or is not a file")
    lineno = 0
    try:
        with igzip.open(path, "rb") as fh:  # ISA-L: inflates ~6x faster than gzip here
            tail = b""
            while True:
                chunk = fh.read1(READ_CHUNK_BYTES)
                if not chunk:
                    break
                cut = chunk.rfind(b"\n") + 1
                if not cut:
                    tail += chunk
                    continue
                lines, tail = tail + chunk[:cut], chunk[cut:]
                yield from _chunk_frames(lines) or _line_frames(path, lines, lineno, tolerant)
                lineno += lines.count(b"\n")
            if tail:  # no newline at the end: the last line of a cut file, or a whole one
                yield from _line_frames(path, tail, lineno, tolerant)
    except (EOFError, zlib.error, isal_zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        if lineno == 0 or not tolerant:
            raise UserError(f"recording {path} is unreadable ({exc})") from None
    except OSError as exc:
        raise UserError(f"recording {path} cannot be read ({exc})") from None


def _chunk_frames(lines: bytes) -> list[Frame] | None:
    """Every line of ``lines`` (whole lines) as a frame, or None when any needs a closer look
    (``_line_frames`` then names the bad line). One msgspec call per line: a line holding
    anything but one JSON object fails it."""
    try:
        decoded = [_decode_line(line) for line in lines.split(b"\n")[:-1]]
    except (msgspec.DecodeError, ValueError):
        return None  # a blank, damaged or foreign line
    if not all([d.raw is not None for d in decoded]):
        return None  # a raw_b64 frame
    return [Frame(d.recv_ns, d.raw) for d in decoded]  # type: ignore[arg-type]


def _line_frames(path: Path, lines: bytes, lineno: int, tolerant: bool) -> Iterator[Frame]:
    """The lines of ``lines`` one by one (``lineno`` lines came before): each is checked and
    named in the error if it is not a recording line. Only a last line with no newline after
    it may be cut (a crash while writing it)."""
    last_line = lineno + lines.count(b"\n") + 1
    for line in lines.split(b"\n"):
        lineno += 1
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            raw = obj["raw"] if "raw" in obj else base64.b64decode(obj["raw_b64"])
            if not isinstance(raw, str | bytes):
                raise TypeError(f"raw is a {type(raw).__name__}, not text")
            yield Frame(int(obj["recv_ns"]), raw)
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
            if tolerant and lineno == last_line and not lines.endswith(b"\n"):
                return
            raise UserError(f"{path}:{lineno}: not a recording line ({exc})") from None


def open_recording(path: Path | None) -> Iterator[Frame]:
    """``read_recording`` that fails now, before anything starts, for a missing, unreadable or
    empty recording (a generator would fail only at its first frame)."""
    if path is None:
        raise UserError("--source replay needs --recording PATH")
    frames = read_recording(path)
    first = next(frames, None)
    if first is None:
        raise UserError(f"recording {path} holds no frames")
    return itertools.chain([first], frames)
