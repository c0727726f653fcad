"""A local order book kept in sync with Binance's diff depth stream, as Binance documents it.

The procedure ("How to manage a local order book correctly", Binance Spot websocket streams):
buffer the diffs, take a REST snapshot (``lastUpdateId``), drop buffered diffs with
``u <= lastUpdateId``, require the first diff applied to straddle the snapshot
(``U <= lastUpdateId + 1 <= u``), then apply each diff whose ``U`` follows the book's update id
(``U == id + 1``). A diff that starts beyond ``id + 1`` means diffs were missed: the book is
discarded (a *gap*, counted) and the process restarts from the next snapshot. Quantities are
absolute; a quantity of zero removes the level (removing a level the book does not hold is
normal). A diff that overlaps the book's id (``U <= id < u``) is applied, as the procedure says;
quantities being absolute, that is harmless.

``LocalBook`` is that state machine plus the levels. The live producer runs it without levels
(``keep_levels=False``) only to know when to fetch a snapshot; the order-book stage runs it with
levels on what the producer published (diffs and the snapshots it fetched), so a message the
transport lost shows as a gap there too. Pure logic: no I/O, no transport, no clock.

Prices and quantities are float64 here (exact for every Binance decimal, see
``processors.trade_parsing``); the book keeps one dict per side and a sorted list of its prices,
so the top levels and the best bid/ask cost nothing per update.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

Level = tuple[float, float]  # (price, quantity)

#: Diffs kept while waiting for a snapshot. depth@100ms sends 10 per second and symbol, so this
#: covers ~17 minutes; older ones are dropped (a snapshot older than what is kept cannot be used).
DEFAULT_MAX_BUFFER = 10_000


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """One ``depthUpdate``: levels changed from update id ``first_id`` (U) to ``final_id`` (u)."""

    symbol: str
    first_id: int
    final_id: int
    event_time_ms: int
    bids: Sequence[Level]
    asks: Sequence[Level]


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A REST depth snapshot (or a partial-book frame): the top levels as of ``last_update_id``."""

    symbol: str
    last_update_id: int
    event_time_ms: int
    bids: Sequence[Level]
    asks: Sequence[Level]
    partial: bool = False  # a partial-book frame: only the top levels, never a sync point


class Outcome(Enum):
    APPLIED = "applied"  # the book moved
    BUFFERED = "buffered"  # no snapshot yet: kept until one arrives
    STALE = "stale"  # u <= the book's id: already contained in the book
    GAP = "gap"  # diffs are missing: book discarded, waiting for a snapshot
    SYNCED = "synced"  # a snapshot (plus buffered diffs) made the book usable
    SNAPSHOT_TOO_OLD = "snapshot_too_old"  # older than the buffered diffs: fetch another
    SNAPSHOT_IGNORED = "snapshot_ignored"  # the book is in sync already


class OrderBook:
    """Price levels of one symbol: a dict per side plus each side's prices sorted ascending."""

    __slots__ = ("ask_prices", "asks", "bid_prices", "bids")

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.bid_prices: list[float] = []
        self.ask_prices: list[float] = []

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.bid_prices.clear()
        self.ask_prices.clear()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace every level (a snapshot); zero quantities are not levels."""
        self.bids = {p: q for p, q in bids if q > 0}
        self.asks = {p: q for p, q in asks if q > 0}
        self.bid_prices = sorted(self.bids)
        self.ask_prices = sorted(self.asks)

    def update(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        _set_levels(self.bids, self.bid_prices, bids)
        _set_levels(self.asks, self.ask_prices, asks)

    def best_bid(self) -> float | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> float | None:
        return self.ask_prices[0] if self.ask_prices else None

    def crossed(self) -> bool:
        """Best bid at or above best ask: impossible on the exchange, so the book is wrong."""
        bids, asks = self.bid_prices, self.ask_prices
        return bool(bids and asks and bids[-1] >= asks[0])

    def top_bids(self, n: int) -> list[Level]:
        """The ``n`` highest bids, best first."""
        prices = self.bid_prices[: -n - 1 : -1] if n else []
        return [(p, self.bids[p]) for p in prices]

    def top_asks(self, n: int) -> list[Level]:
        """The ``n`` lowest asks, best first."""
        return [(p, self.asks[p]) for p in self.ask_prices[:n]]


def _set_levels(levels: dict[float, float], prices: list[float], changes: Iterable[Level]) -> None:
    for price, qty in changes:
        if qty > 0:
            if price not in levels:
                bisect.insort(prices, price)
            levels[price] = qty
        elif levels.pop(price, None) is not None:
            del prices[bisect.bisect_left(prices, price)]


@dataclass(slots=True)
class BookCounters:
    syncs: int = 0  # snapshots that made the book usable (the first one included)
    gaps: int = 0  # diffs found missing (U beyond id + 1): the book was discarded
    crossed: int = 0  # times the book became crossed (best bid >= best ask)
    stale: int = 0  # diffs already contained in the book (u <= id), ignored
    overlaps: int = 0  # diffs starting before id + 1 and ending after it, applied
    applied: int = 0
    snapshots_too_old: int = 0
    buffer_dropped: int = 0  # diffs dropped from a full buffer while waiting for a snapshot

    @property
    def resyncs(self) -> int:
        """Syncs after the first: each follows a gap (or a restart without the book)."""
        return max(self.syncs - 1, 0)


@dataclass(slots=True)
class LocalBook:
    """One symbol's book and where it stands in the exchange's update-id sequence."""

    symbol: str
    keep_levels: bool = True
    max_buffer: int = DEFAULT_MAX_BUFFER
    book: OrderBook = field(default_factory=OrderBook)
    synced: bool = False
    last_update_id: int = -1
    is_crossed: bool = False
    #: A snapshot was applied and the next diff must straddle its id (U <= id + 1 <= u).
    awaiting_first: bool = False
    buffer: deque[DepthDiff] = field(default_factory=deque)
    counters: BookCounters = field(default_factory=BookCounters)

    # -- the procedure ---------------------------------------------------------------------
    def on_diff(self, diff: DepthDiff) -> Outcome:
        if not self.synced:
            self._buffer(diff)
            return Outcome.BUFFERED
        return self._apply(diff)

    def on_snapshot(self, snap: DepthSnapshot) -> Outcome:
        """A snapshot resynchronises an unsynced book; a synced book keeps its own (newer or
        equal) state, since a snapshot taken while diffs flow is never ahead of them for long."""
        if self.synced:
            return Outcome.SNAPSHOT_IGNORED
        last = snap.last_update_id
        buffer = self.buffer
        while buffer and buffer[0].final_id <= last:
            buffer.popleft()
        if buffer and buffer[0].first_id > last + 1:
            # Binance: "If the lastUpdateId from the snapshot is strictly less than the U from
            # step 2, go back to step 3": the diffs between them are not in the buffer.
            self.counters.snapshots_too_old += 1
            return Outcome.SNAPSHOT_TOO_OLD
        if self.keep_levels:
            self.book.load(snap.bids, snap.asks)
        self.last_update_id = last
        self.synced = True
        self.awaiting_first = True
        self.counters.syncs += 1
        self._check_crossed()
        pending = list(buffer)
        buffer.clear()
        for diff in pending:
            if not self.synced:
                self._buffer(diff)  # a gap inside the buffer: keep what follows it
            else:
                self._apply(diff)
        return Outcome.SYNCED if self.synced else Outcome.GAP

    def replace(self, snap: DepthSnapshot) -> None:
        """A partial-book frame: the top levels replace the book wholesale, no ids to chain."""
        if self.keep_levels:
            self.book.load(snap.bids, snap.asks)
        self.last_update_id = snap.last_update_id
        self.synced = True
        self._check_crossed()

    def reset(self) -> None:
        """Forget the book (e.g. the producer reconnected): wait for the next snapshot."""
        self.synced = False
        self.awaiting_first = False
        self.buffer.clear()

    # -- internals -------------------------------------------------------------------------
    def _buffer(self, diff: DepthDiff) -> None:
        if len(self.buffer) >= self.max_buffer:
            self.buffer.popleft()
            self.counters.buffer_dropped += 1
        self.buffer.append(diff)

    def _apply(self, diff: DepthDiff) -> Outcome:
        last = self.last_update_id
        if diff.final_id <= last:
            self.counters.stale += 1
            return Outcome.STALE
        if diff.first_id > last + 1:
            self.counters.gaps += 1
            self.synced = False
            self.awaiting_first = False
            self.book.clear()  # Binance: "discard your local order book"
            self.buffer.clear()
            self.buffer.append(diff)
            return Outcome.GAP
        if diff.first_id != last + 1 and not self.awaiting_first:
            self.counters.overlaps += 1
        self.awaiting_first = False
        if self.keep_levels:
            self.book.update(diff.bids, diff.asks)
        self.last_update_id = diff.final_id
        self.counters.applied += 1
        self._check_crossed()
        return Outcome.APPLIED

    def _check_crossed(self) -> None:
        crossed = self.keep_levels and self.book.crossed()
        if crossed and not self.is_crossed:
            self.counters.crossed += 1
        self.is_crossed = crossed

    # -- checkpoint state (JSON-ready, levels not history) ---------------------------------
    def export_state(self) -> dict[str, Any]:
        c = self.counters
        return {
            "symbol": self.symbol,
            "synced": self.synced,
            "last_update_id": self.last_update_id,
            "is_crossed": self.is_crossed,
            "awaiting_first": self.awaiting_first,
            "bids": [[p, q] for p, q in self.book.bids.items()],
            "asks": [[p, q] for p, q in self.book.asks.items()],
            "buffer": [_diff_state(d) for d in self.buffer],
            "counters": [c.syncs, c.gaps, c.crossed, c.stale, c.overlaps, c.applied,
                         c.snapshots_too_old, c.buffer_dropped],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], keep_levels: bool = True) -> LocalBook:
        book = cls(str(state["symbol"]), keep_levels=keep_levels)
        book.synced = bool(state["synced"])
        book.last_update_id = int(state["last_update_id"])
        book.is_crossed = bool(state["is_crossed"])
        book.awaiting_first = bool(state["awaiting_first"])
        book.book.load(_levels(state["bids"]), _levels(state["asks"]))
        book.buffer.extend(_diff_from_state(book.symbol, d) for d in state["buffer"])
        book.counters = BookCounters(*(int(v) for v in state["counters"]))
        return book


def _levels(pairs: Iterable[Sequence[float]]) -> list[Level]:
    return [(float(p), float(q)) for p, q in pairs]


def _diff_state(d: DepthDiff) -> list[Any]:
    return [d.first_id, d.final_id, d.event_time_ms, [list(x) for x in d.bids],
            [list(x) for x in d.asks]]


def _diff_from_state(symbol: str, s: list[Any]) -> DepthDiff:
    return DepthDiff(symbol, int(s[0]), int(s[1]), int(s[2]), _levels(s[3]), _levels(s[4]))


def padded_top(levels: list[Level], n: int) -> tuple[list[float], list[float]]:
    """Prices and quantities of ``levels`` as two lists of length ``n``, NaN-padded."""
    prices = [p for p, _ in levels] + [math.nan] * (n - len(levels))
    qtys = [q for _, q in levels] + [math.nan] * (n - len(levels))
    return prices, qtys
