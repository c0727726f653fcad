"""Synthetic Binance depth: a book per symbol that moves with the trade price, in wire format.

Every 100 ms of event time each symbol's book changes a heavy-tailed number of levels, mostly
near the top (lognormal count, ~32 B a level, capped at 1,070 levels), plus the levels the
trade price moved through, which go (so the book never crosses): shaped after real BTCUSDT
depth@100ms frames (median 840 B, up to 34.5 KB, figures.md); the README gives what this
generator measures against them, with its command. The frames are what Binance sends for
the requested streams:

- ``depth@100ms``: one ``depthUpdate`` per tick; ``depth`` / ``depth@1000ms``: ten ticks merged
  (last quantity per price wins, ``U`` of the first, ``u`` of the last);
- ``depth<N>[@100ms]``: the top N levels with ``lastUpdateId``;
- ``depthSnapshot`` (what the live producer records for a REST snapshot): the top
  ``snapshot_levels`` levels at the first tick and every ``snapshot_every_ms``, so a replay or a
  synthetic run carries what a downstream order book needs to synchronise.

Own RNG (seeded from the market's seed), so asking for depth does not change the trades.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from core.recording import Frame

TICK_MS = 100
MEDIAN_CHANGES = 9
_CHANGES_SIGMA = 1.3  # with the cap: real frames' tail (34.5 KB among 9,360)
MAX_CHANGES = 1070
START_LEVELS = 300  # per side
MAX_LEVELS = 700  # per side; beyond it removals outweigh additions
SNAPSHOT_LEVELS = 1000
SNAPSHOT_EVERY_MS = 60_000
DIFF_TYPES = ("depth", "depth@100ms", "depth@1000ms")
PARTIAL_TYPES = tuple(
    f"depth{n}{speed}" for n in (5, 10, 20) for speed in ("", "@100ms", "@1000ms")
)
DEPTH_STREAM_TYPES = DIFF_TYPES + PARTIAL_TYPES


@dataclass(slots=True)
class _Book:
    name: str  # lower case
    upper: str
    update_id: int
    bids: dict[int, float] = field(default_factory=dict)  # price in ticks of 0.01 -> qty
    asks: dict[int, float] = field(default_factory=dict)
    pending: dict[tuple[str, int], float] = field(default_factory=dict)  # the 1000 ms merge
    pending_first: int = 0
    ticks: int = 0
    next_snapshot_ms: int = -1
    mid: int = 0


class SyntheticDepth:
    """Depth frames for ``types`` (a subset of ``DEPTH_STREAM_TYPES``) of several symbols."""

    def __init__(
        self,
        types: set[str],
        seed: int,
        *,
        snapshot_levels: int = SNAPSHOT_LEVELS,
        snapshot_every_ms: int = SNAPSHOT_EVERY_MS,
        combined: bool = True,
    ) -> None:
        self.types = types & set(DEPTH_STREAM_TYPES)
        self.rng = random.Random(seed * 7919 + 17)
        self.snapshot_levels = snapshot_levels
        self.snapshot_every_ms = snapshot_every_ms
        self.combined = combined
        self.books: dict[str, _Book] = {}
        self.diffs = bool(self.types & set(DIFF_TYPES))

    def tick(self, name: str, mid_ticks: int, e_ms: int, index: int) -> Iterator[Frame]:
        """One 100 ms step of ``name``'s book around the trade price ``mid_ticks``."""
        book = self.books.get(name)
        if book is None:
            book = self.books[name] = self._new_book(name, mid_ticks, index)
        first = book.update_id + 1
        changes = self._changes(book, mid_ticks)
        book.update_id += len(changes) + self.rng.randrange(len(changes) + 1)
        bids = [[_px(p), _qty(q)] for side, p, q in changes if side == "b"]
        asks = [[_px(p), _qty(q)] for side, p, q in changes if side == "a"]
        book.ticks += 1
        if "depth@100ms" in self.types:
            yield self._diff(book, "depth@100ms", first, bids, asks, e_ms)
        slow = book.ticks % (1000 // TICK_MS) == 0
        if self.types & {"depth", "depth@1000ms"}:
            if not book.pending:
                book.pending_first = first
            for side, p, q in changes:
                book.pending[(side, p)] = q
            if slow:
                merged = sorted(book.pending.items())
                mb = [[_px(p), _qty(q)] for (s, p), q in merged if s == "b"]
                ma = [[_px(p), _qty(q)] for (s, p), q in merged if s == "a"]
                for st in ("depth", "depth@1000ms"):
                    if st in self.types:
                        yield self._diff(book, st, book.pending_first, mb, ma, e_ms)
                book.pending.clear()
        for st in self.types:
            if st.startswith("depth") and st not in DIFF_TYPES and (slow or "@100ms" in st):
                levels = int(st[5:].partition("@")[0])
                yield self._frame(book, st, self._book_payload(book, levels), e_ms)
        if self.diffs and e_ms >= book.next_snapshot_ms:
            book.next_snapshot_ms = e_ms + self.snapshot_every_ms
            payload = self._book_payload(book, self.snapshot_levels)
            yield self._frame(book, "depthSnapshot", payload, e_ms)

    # -- the book --------------------------------------------------------------------------
    def _new_book(self, name: str, mid: int, index: int) -> _Book:
        book = _Book(name, name.upper(), 70_000_000_000 + index * 1_000_000_000, mid=mid)
        rng = self.rng
        for k in range(START_LEVELS):
            book.bids[mid - k - rng.randrange(2) * k] = self._size()
            book.asks[mid + 1 + k + rng.randrange(2) * k] = self._size()
        return book

    def _size(self) -> float:
        return round(min(self.rng.lognormvariate(-1.5, 1.6), 50.0), 5) or 0.00001

    def _changes(self, book: _Book, mid: int) -> list[tuple[str, int, float]]:
        """Level changes of one tick, one per price and side (Binance sends one per level)."""
        rng = self.rng
        out: dict[tuple[str, int], float] = {}
        # the price moved: levels now on the wrong side of it go (the book never crosses)
        if mid < book.mid:
            for p in [p for p in book.bids if p > mid]:
                out[("b", p)] = 0.0
        elif mid > book.mid:
            for p in [p for p in book.asks if p <= mid]:
                out[("a", p)] = 0.0
        book.mid = mid
        out[("b", mid)] = self._size()
        out[("a", mid + 1)] = self._size()
        n = min(MAX_CHANGES, max(1, round(rng.lognormvariate(math.log(MEDIAN_CHANGES),
                                                             _CHANGES_SIGMA))))
        spread = max(25.0, n / 2)  # a big frame touches levels deep in the book
        for _ in range(n):
            side = "b" if rng.random() < 0.5 else "a"
            levels = book.bids if side == "b" else book.asks
            depth = int(rng.expovariate(1 / spread)) if rng.random() < 0.8 else rng.randrange(1500)
            price = mid - depth if side == "b" else mid + 1 + depth
            remove = price in levels and rng.random() < (0.45 if len(levels) > MAX_LEVELS else 0.2)
            out[(side, price)] = 0.0 if remove else self._size()
        changes = []
        for (side, p), q in out.items():
            levels = book.bids if side == "b" else book.asks
            if q == 0.0:
                if levels.pop(p, None) is None and rng.random() < 0.9:
                    continue  # mostly only real removals, sometimes one of a level never seen
            else:
                levels[p] = q
            changes.append((side, p, q))
        for side, levels, farthest in (("b", book.bids, min), ("a", book.asks, max)):
            while len(levels) > MAX_LEVELS:  # far orders get cancelled: the book stays bounded
                p = farthest(levels)
                del levels[p]
                changes.append((side, p, 0.0))
        return changes

    def _book_payload(self, book: _Book, levels: int) -> dict[str, object]:
        bids = heapq.nlargest(levels, book.bids)
        asks = heapq.nsmallest(levels, book.asks)
        return {
            "lastUpdateId": book.update_id,
            "bids": [[_px(p), _qty(book.bids[p])] for p in bids],
            "asks": [[_px(p), _qty(book.asks[p])] for p in asks],
        }

    # -- frames ----------------------------------------------------------------------------
    def _diff(
        self, book: _Book, stream_type: str, first: int, bids: list, asks: list, e_ms: int
    ) -> Frame:
        data = {
            "e": "depthUpdate", "E": e_ms, "s": book.upper, "U": first, "u": book.update_id,
            "b": bids, "a": asks,
        }  # fmt: skip
        return self._frame(book, stream_type, data, e_ms)

    def _frame(
        self, book: _Book, stream_type: str, data: dict[str, object], e_ms: int
    ) -> Frame:
        obj = {"stream": f"{book.name}@{stream_type}", "data": data} if self.combined else data
        recv_ns = e_ms * 1_000_000 + int(self.rng.uniform(0.3, 3.0) * 1_000_000)
        return Frame(recv_ns, orjson.dumps(obj).decode())


def _px(ticks: int) -> str:
    return f"{ticks / 100:.8f}"


def _qty(q: float) -> str:
    return f"{q:.8f}"
