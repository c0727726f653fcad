"""Recordings: raw source frames with receive timestamps, in gzip JSONL, and paced replay.

One line per received frame: ``{"recv_ns": <int>, "raw": "<frame text exactly as received>"}``.
The raw text is kept byte-exact (not re-serialized) so a replay feeds the producer's validation
path exactly what the live source sent. Lines are flushed as written so a killed recorder keeps
everything up to the last frame (gzip stream may need ``read_recording(..., tolerant=True)``).
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import orjson

from core.errors import UserError


class PaceObserver(Protocol):
    """What ``paced`` reports each frame to (``producers.run_control.PaceTracker``): the
    recording format stays below the producers and the emulators that both read it."""

    def item(self, intended_offset_ns: float | None) -> None: ...


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    recv_ns: int
    raw: str


class RecordingWriter:
    """Appends frames; ``flush_every`` bounds what a crash can lose (frames, not bytes)."""

    def __init__(self, path: Path, flush_every: int = 100) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = gzip.open(path, "ab")
        self._flush_every = flush_every
        self._pending = 0
        self.written = 0

    def write(self, raw: str, recv_ns: int | None = None) -> None:
        line = json.dumps({"recv_ns": recv_ns or time.time_ns(), "raw": raw}, ensure_ascii=False)
        self._fh.write(line.encode() + b"\n")
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


def read_recording(path: Path, tolerant: bool = True) -> Iterator[RecordedFrame]:
    """Yield frames in file order. ``tolerant`` stops quietly at a truncated tail (crash)."""
    if not path.is_file():
        raise UserError(f"recording {path} does not exist or is not a file")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                    yield RecordedFrame(int(obj["recv_ns"]), str(obj["raw"]))
                except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
                    if tolerant and not line.endswith("\n"):
                        return
                    raise UserError(f"{path}:{lineno}: not a recording line ({exc})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        if not tolerant:
            raise UserError(f"{path}: unreadable recording ({exc})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read recording ({exc})") from None


def paced(
    frames: Iterator[RecordedFrame], speed: float, tracker: PaceObserver | None = None
) -> Iterator[RecordedFrame]:
    """Yield frames at ``speed`` x their recorded pace; ``speed <= 0`` means as fast as possible.

    Pacing follows the recorded receive times against one start instant, so a slow consumer of
    this iterator catches up instead of drifting (no accumulated sleep error). ``tracker``
    records each frame's intended and actual time (did the producer keep pace?).
    """
    if speed <= 0:
        for frame in frames:
            if tracker is not None:
                tracker.item(None)
            yield frame
        return
    start_wall = time.perf_counter_ns()
    first_recv: int | None = None
    for frame in frames:
        if first_recv is None:
            first_recv = frame.recv_ns
        offset = (frame.recv_ns - first_recv) / speed
        delay = (start_wall + offset - time.perf_counter_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        if tracker is not None:
            tracker.item(offset)
        yield frame
