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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from core.errors import UserError


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as received: text (recordings, generators) or bytes (live clients)."""

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


def read_recording(path: Path, tolerant: bool = True) -> Iterator[Frame]:
    """Yield frames in file order. ``tolerant`` stops quietly at a cut tail (a crash); a file
    that is not a recording at all is a ``UserError`` either way."""
    if not path.is_file():
        raise UserError(f"recording {path} does not exist or is not a file")
    lineno = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                    raw = obj["raw"] if "raw" in obj else base64.b64decode(obj["raw_b64"])
                    if not isinstance(raw, str | bytes):
                        raise TypeError(f"raw is a {type(raw).__name__}, not text")
                    yield Frame(int(obj["recv_ns"]), raw)
                except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
                    if tolerant and not line.endswith("\n"):
                        return
                    raise UserError(f"{path}:{lineno}: not a recording line ({exc})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        if lineno == 0 or not tolerant:
            raise UserError(f"recording {path} is unreadable ({exc})") from None
    except OSError as exc:
        raise UserError(f"recording {path} cannot be read ({exc})") from None


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
