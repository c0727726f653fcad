"""The order-book stage: Binance depth in, one book per symbol, ``depth_1s`` rows out.

Reads ``binance.depth`` (diffs and the REST snapshots the live producer interleaves with them)
and keeps a ``LocalBook`` per symbol by Binance's procedure, checking the update-id chain again:
a diff the transport lost (ZeroMQ drops, a gap while this stage was down) shows as a gap, is
counted, and the book stays unsynced until the next snapshot on the topic (the producer
publishes one at every (re)sync and periodically, so it comes). Crossed books are counted.

Writes ``depth_1s`` (see ``processors.depth_rows``): per symbol, the book at the end of every
second (event time ``E`` of the diffs) in which it received anything, from its first sync on.
Partial-book streams (``binance.depthPartial``) go to ``depth_partial_1s`` in the same layout:
the last partial book of each second.

Checkpoints hold each book's levels, ids, counters and open second (not its history), so after
a crash the stage continues from exactly the book it had at the checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.dead_letters import DeadLetters
from processors.depth_parsing import decode_depth
from processors.depth_rows import DEPTH_1S_DTYPE, book_row
from processors.order_book import DepthDiff, DepthSnapshot, LocalBook, Outcome
from processors.trade_parsing import DecodeError
from stages.runner import Rows, Stage
from transports import Envelope

DEPTH_TOPIC = "binance.depth"
DEPTH_PARTIAL_TOPIC = "binance.depthPartial"
DEPTH_TABLE = "depth_1s"
PARTIAL_TABLE = "depth_partial_1s"
#: Diffs kept per symbol while waiting for a snapshot. Only those after the snapshot's id are
#: used, and the producer publishes a snapshot within a REST round trip of asking for it.
STAGE_MAX_BUFFER = 200
_STATE_FORMAT = "depth-stage/1"


@dataclass(slots=True)
class _Second:
    """The second a symbol's next row is for, and what happened in it so far."""

    start_ms: int = -1
    last_event_ms: int = -1
    updates: int = 0
    dirty: bool = False  # something arrived in this second after the book's first sync

    def advance(self, time_ms: int) -> tuple[int, int, int] | None:
        """Move on to the second of ``time_ms`` if it is later (an earlier one stays open).

        Returns (start, last event, updates) of the second just completed if it has a row due.
        """
        start = time_ms - time_ms % 1000
        if start <= self.start_ms:
            return None
        done = (self.start_ms, self.last_event_ms, self.updates) if self.dirty else None
        self.start_ms, self.updates, self.dirty = start, 0, False
        return done


class DepthStage(Stage):
    name = "depth"
    topics = (DEPTH_TOPIC, DEPTH_PARTIAL_TOPIC)

    def __init__(self, dead_letters: DeadLetters, max_buffer: int = STAGE_MAX_BUFFER) -> None:
        super().__init__(dead_letters)
        self.max_buffer = max_buffer
        self.books: dict[str, LocalBook] = {}
        self.seconds: dict[str, _Second] = {}
        self.partials: dict[str, LocalBook] = {}
        self.partial_seconds: dict[str, _Second] = {}

    def tables(self) -> Mapping[str, np.dtype]:
        return {DEPTH_TABLE: DEPTH_1S_DTYPE, PARTIAL_TABLE: DEPTH_1S_DTYPE}

    def process(self, batch: list[Envelope]) -> Mapping[str, Rows]:
        rows: list[tuple[object, ...]] = []
        partial_rows: list[tuple[object, ...]] = []
        for env in batch:
            try:
                item = decode_depth(env.value, env.event_time_ns // 1_000_000)
            except DecodeError as exc:
                self.dead_letters.add(exc.kind, exc.reason, env.value, source=f"depth:{env.topic}")
                continue
            partial = type(item) is DepthSnapshot and item.partial
            if partial != (env.topic == DEPTH_PARTIAL_TOPIC):
                # a partial book is no sync point for a diff chain, nor a diff a partial book
                self.dead_letters.add("unknown_event", f"{type(item).__name__} on {env.topic}",
                                      env.value, source=f"depth:{env.topic}")  # fmt: skip
            elif partial:
                self._partial(item.symbol, item, partial_rows)
            elif type(item) is DepthDiff:
                self._diff(item, rows)
            else:
                self._snapshot(item, rows)
        out: dict[str, Rows] = {}
        if rows:
            out[DEPTH_TABLE] = rows
        if partial_rows:
            out[PARTIAL_TABLE] = partial_rows
        return out

    def _book(self, symbol: str) -> tuple[LocalBook, _Second]:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = LocalBook(symbol, max_buffer=self.max_buffer)
            self.seconds[symbol] = _Second()
        return book, self.seconds[symbol]

    def _diff(self, diff: DepthDiff, rows: list[tuple[object, ...]]) -> None:
        book, second = self._book(diff.symbol)
        done = second.advance(diff.event_time_ms)
        if done is not None:
            rows.append(book_row(book, *done))
        if book.on_diff(diff) is Outcome.APPLIED:
            second.updates += 1
            second.last_event_ms = diff.event_time_ms
        second.dirty = second.dirty or book.counters.syncs > 0

    def _snapshot(self, snap: Any, rows: list[tuple[object, ...]]) -> None:
        book, second = self._book(snap.symbol)
        if second.start_ms < 0:  # nothing seen yet: the snapshot opens the symbol's first second
            second.advance(snap.event_time_ms)
        book.on_snapshot(snap)
        second.dirty = second.dirty or book.counters.syncs > 0

    def _partial(self, symbol: str, snap: Any, rows: list[tuple[object, ...]]) -> None:
        book = self.partials.get(symbol)
        if book is None:
            book = self.partials[symbol] = LocalBook(symbol)
            self.partial_seconds[symbol] = _Second()
        second = self.partial_seconds[symbol]
        done = second.advance(snap.event_time_ms)
        if done is not None:
            rows.append(book_row(book, *done))
        book.replace(snap)
        second.updates += 1
        second.last_event_ms = snap.event_time_ms
        second.dirty = True

    def finish(self) -> Mapping[str, Rows]:
        rows = [
            book_row(self.books[s], w.start_ms, w.last_event_ms, w.updates)
            for s, w in self.seconds.items()
            if w.dirty
        ]
        partial_rows = [
            book_row(self.partials[s], w.start_ms, w.last_event_ms, w.updates)
            for s, w in self.partial_seconds.items()
            if w.dirty
        ]
        for w in (*self.seconds.values(), *self.partial_seconds.values()):
            w.dirty = False
        return {DEPTH_TABLE: rows, PARTIAL_TABLE: partial_rows}

    def snapshot(self) -> bytes:
        def export(books: dict[str, LocalBook], seconds: dict[str, _Second]) -> list[Any]:
            return [
                [book.export_state(), [w.start_ms, w.last_event_ms, w.updates, w.dirty]]
                for (book, w) in ((books[s], seconds[s]) for s in books)
            ]

        return json.dumps(
            {
                "format": _STATE_FORMAT,
                "books": export(self.books, self.seconds),
                "partials": export(self.partials, self.partial_seconds),
            },
            separators=(",", ":"),
        ).encode()

    def restore(self, state: bytes) -> None:
        if not state:
            return
        data = json.loads(state)
        if data.get("format") != _STATE_FORMAT:
            raise ValueError(f"checkpoint holds no depth-stage state ({data.get('format')!r})")
        for key, books, seconds in (
            ("books", self.books, self.seconds),
            ("partials", self.partials, self.partial_seconds),
        ):
            for book_state, (start, last_event, updates, dirty) in data[key]:
                book = LocalBook.from_state(book_state)
                book.max_buffer = self.max_buffer
                books[book.symbol] = book
                seconds[book.symbol] = _Second(start, last_event, updates, dirty)


def books_from_state(state: bytes) -> dict[str, LocalBook]:
    """Each symbol's book as of a checkpoint (``Hdf5Sink.resume_state()`` or a reader's)."""
    stage = DepthStage(DeadLetters("read"))
    stage.restore(state)
    return stage.books


def read_books(path: str | os.PathLike[str]) -> dict[str, LocalBook]:
    """The books as of the last checkpoint of a file written by this stage (alone or combined
    with others), read while its writer may still run (SWMR)."""
    from sinks.hdf5_reader import open_snapshot
    from stages.runner import split_state

    with open_snapshot(path) as snap:
        state = snap.checkpoint.state if snap.checkpoint else b""
    stage_state, _ = split_state(state)
    if not stage_state:
        return {}
    data = json.loads(stage_state)
    if data.get("format") != _STATE_FORMAT:  # CombinedStage: one state per stage name
        stage_state = str(data.get(DepthStage.name, "")).encode()
    return books_from_state(stage_state)
