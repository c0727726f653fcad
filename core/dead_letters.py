"""Bad input is counted, kept and logged once per kind; it never stops a stage.

A ``DeadLetters`` object is the one place a producer or processor sends what it cannot use:
malformed JSON, unknown event types, invalid UTF-8, oversize frames, undecodable envelopes. It
counts per kind, logs the first occurrence of each kind (no log flood under attack) and appends
the raw bytes to a store: gzip JSONL here, an HDF5 table in the sinks.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger("core.dead_letters")

#: Raw bytes kept per dead letter; larger frames are truncated in the store, length recorded.
MAX_KEPT_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class DeadLetter:
    kind: str
    reason: str
    raw: bytes
    source: str  # stage or endpoint that saw it, e.g. "binance-producer", "candles:binance.trade"
    time_ns: int

    def to_json(self) -> dict[str, object]:
        kept = self.raw[:MAX_KEPT_BYTES]
        return {
            "kind": self.kind,
            "reason": self.reason,
            "source": self.source,
            "time_ns": self.time_ns,
            "raw_len": len(self.raw),
            "raw_b64": base64.b64encode(kept).decode("ascii"),
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> DeadLetter:
        return cls(
            kind=str(obj["kind"]),
            reason=str(obj["reason"]),
            raw=base64.b64decode(str(obj["raw_b64"])),
            source=str(obj["source"]),
            time_ns=int(obj["time_ns"]),  # type: ignore[call-overload]
        )


class JsonlDeadLetterStore:
    """Appends dead letters to a gzip JSONL file, flushed per write so a crash loses none."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = None
        self._lock = threading.Lock()

    def write(self, letter: DeadLetter) -> None:
        line = (json.dumps(letter.to_json()) + "\n").encode()
        with self._lock:
            if self._fh is None:
                self._fh = gzip.open(self.path, "ab")
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def read_jsonl_dead_letters(path: Path) -> list[DeadLetter]:
    with gzip.open(path, "rt") as fh:
        return [DeadLetter.from_json(json.loads(line)) for line in fh if line.strip()]


class DeadLetters:
    """Counts, logs once per kind, and forwards to a store (or keeps in memory if none)."""

    def __init__(
        self, source: str, store: Callable[[DeadLetter], None] | None = None
    ) -> None:
        self.source = source
        self.counts: dict[str, int] = {}
        self._store = store
        self.kept: list[DeadLetter] = []

    def add(self, kind: str, reason: str, raw: bytes, source: str | None = None) -> DeadLetter:
        letter = DeadLetter(kind, reason, bytes(raw), source or self.source, time.time_ns())
        first = kind not in self.counts
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if first:
            log.warning(
                "%s: dead-lettered %s: %s (further %s are counted, not logged)",
                letter.source,
                kind,
                reason,
                kind,
            )
        if self._store is not None:
            self._store(letter)
        else:
            self.kept.append(letter)
        return letter

    @property
    def total(self) -> int:
        return sum(self.counts.values())
