"""Per-symbol, per-window aggregates of 24hrTicker and bookTicker updates, aligned with candles.

The original design "calculates either a mean, a sum or takes the first and last value
recorded" for ticker fields; here each field names the aggregates that mean something for it
(a table, so changing them is a one-line edit): prices and spreads get first/last/mean/min/max,
the rolling 24 h volumes and trade count only first/last (summing or averaging a rolling 24 h
figure is meaningless), book quantities their mean. ``first``/``last`` follow event time with
the update id as tie-break, so arrival order does not matter. Windows, watermark, grace and
late rows are the shared ``processors.windowing`` core: a ticker window starts at exactly the
same millisecond as the candle it sits beside.

Ticker updates are ~1-100 per second per symbol, so this uses the generic (non-inlined) path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from processors.candles import DEFAULT_GRACE_MS, DEFAULT_WINDOWS
from processors.trade_parsing import TickerUpdate
from processors.windowing import LateEvent, PanedWindows

AGGREGATES = ("first", "last", "mean", "min", "max", "sum")

#: (input field, output name, aggregates) for 24hrTicker (``spread``/``mid`` are derived).
TICKER_SPEC: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("c", "last_price", ("first", "last", "mean", "min", "max")),
    ("b", "bid", ("first", "last", "mean")),
    ("a", "ask", ("first", "last", "mean")),
    ("B", "bid_qty", ("mean",)),
    ("A", "ask_qty", ("mean",)),
    ("spread", "spread", ("mean", "min", "max")),
    ("mid", "mid", ("mean",)),
    ("P", "price_change_pct", ("first", "last", "mean")),
    ("p", "price_change", ("first", "last")),
    ("w", "weighted_avg_price_24h", ("last",)),
    ("v", "volume_24h", ("first", "last")),
    ("q", "quote_volume_24h", ("first", "last")),
    ("n", "trade_count_24h", ("first", "last")),
)

#: The same for bookTicker (best bid/ask only).
BOOK_TICKER_SPEC: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("b", "bid", ("first", "last", "mean")),
    ("a", "ask", ("first", "last", "mean")),
    ("B", "bid_qty", ("mean", "sum")),
    ("A", "ask_qty", ("mean", "sum")),
    ("spread", "spread", ("first", "last", "mean", "min", "max")),
    ("mid", "mid", ("first", "last", "mean")),
)

LATE_TICKER_DTYPE = np.dtype(
    [
        ("symbol", "S24"),
        ("window", "S8"),
        ("window_ms", "i8"),
        ("window_start_ms", "i8"),
        ("time_ms", "i8"),
        ("update_id", "i8"),
        ("watermark_ms", "i8"),
        ("lateness_ms", "i8"),
    ]
)


def ticker_dtype(spec: Sequence[tuple[str, str, tuple[str, ...]]]) -> np.dtype:
    """Row layout for ``spec``: window columns, ``updates``, then ``<name>_<aggregate>``."""
    columns: list[tuple[str, str]] = [
        ("symbol", "S24"),
        ("window", "S8"),
        ("window_ms", "i8"),
        ("start_ms", "i8"),
        ("end_ms", "i8"),
        ("updates", "i8"),
        ("first_time_ms", "i8"),
        ("last_time_ms", "i8"),
    ]
    for _src, name, aggs in spec:
        for agg in aggs:
            if agg not in AGGREGATES:
                raise ValueError(f"unknown aggregate {agg!r} for {name}; use {AGGREGATES}")
            columns.append((f"{name}_{agg}", "f8"))
    columns.append(("closed", "?"))
    return np.dtype(columns)


class TickerState:
    """first/last (by time, update id), sum, min and max of every field, plus a count."""

    __slots__ = ("count", "first", "first_key", "last", "last_key", "maxs", "mins", "sums")

    def __init__(self, fields: Sequence[str], update: TickerUpdate) -> None:
        values = [update.values[f] for f in fields]
        key = (update.time_ms, update.update_id)
        self.count = 1
        self.first_key = self.last_key = key
        self.first = values
        self.last = values
        self.sums = list(values)
        self.mins = list(values)
        self.maxs = list(values)

    def copy(self) -> TickerState:
        clone = TickerState.__new__(TickerState)
        clone.count = self.count
        clone.first_key, clone.last_key = self.first_key, self.last_key
        clone.first, clone.last = self.first, self.last  # never mutated in place
        clone.sums, clone.mins, clone.maxs = list(self.sums), list(self.mins), list(self.maxs)
        return clone


@dataclass(slots=True)
class TickerBatch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)


class TickerAggregator(PanedWindows[TickerState, TickerUpdate]):
    """Window aggregates of one ticker stream; pass ``BOOK_TICKER_SPEC`` for bookTicker."""

    def __init__(
        self,
        spec: Sequence[tuple[str, str, tuple[str, ...]]] = TICKER_SPEC,
        windows: Sequence[str | int] = DEFAULT_WINDOWS,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> None:
        super().__init__(windows, grace_ms)
        self.spec = tuple(spec)
        self.dtype = ticker_dtype(self.spec)
        self._fields = [src for src, _name, _aggs in self.spec]

    def new_state(self, event: TickerUpdate) -> TickerState:
        return TickerState(self._fields, event)

    def fold(self, state: TickerState, event: TickerUpdate) -> None:
        self.merge(state, TickerState(self._fields, event))

    def merge(self, into: TickerState, other: TickerState) -> None:
        into.count += other.count
        if other.first_key < into.first_key:
            into.first_key, into.first = other.first_key, other.first
        if other.last_key > into.last_key:
            into.last_key, into.last = other.last_key, other.last
        for i, value in enumerate(other.sums):
            into.sums[i] += value
            if other.mins[i] < into.mins[i]:
                into.mins[i] = other.mins[i]
            if other.maxs[i] > into.maxs[i]:
                into.maxs[i] = other.maxs[i]

    def copy_state(self, state: TickerState) -> TickerState:
        return state.copy()

    def add_batch(self, updates: Iterable[TickerUpdate]) -> TickerBatch:
        """Fold ``updates`` (any order); return closed window rows and late rows."""
        self.check_open()
        late: list[LateEvent[TickerUpdate]] = []
        for update in updates:
            self.add(update.symbol, update.time_ms, update, late)
        return TickerBatch(
            rows=self._rows(self.close_ready(), closed=True),
            late=[self._late_row(ev) for ev in late],
        )

    def flush(self) -> TickerBatch:  # type: ignore[override]
        """Close every open window at shutdown; terminal, like ``CandleAggregator.flush``."""
        return TickerBatch(rows=self._rows(super().flush(), closed=True))

    def open_rows(self) -> list[dict[str, Any]]:
        """Live snapshots (``closed=False``) of the still-open windows."""
        return self._rows(self.open_snapshot(), closed=False)

    def _rows(
        self, items: list[tuple[str, int, int, TickerState]], closed: bool
    ) -> list[dict[str, Any]]:
        rows = []
        for sym, size, start, st in items:
            row: dict[str, Any] = {
                "symbol": sym,
                "window": self.labels[size],
                "window_ms": size,
                "start_ms": start,
                "end_ms": start + size,
                "updates": st.count,
                "first_time_ms": st.first_key[0],
                "last_time_ms": st.last_key[0],
                "closed": closed,
            }
            for i, (_src, name, aggs) in enumerate(self.spec):
                for agg in aggs:
                    row[f"{name}_{agg}"] = _aggregate(st, i, agg)
            rows.append(row)
        return rows

    def _late_row(self, ev: LateEvent[TickerUpdate]) -> dict[str, Any]:
        return {
            "symbol": ev.key,
            "window": self.labels[ev.window_ms],
            "window_ms": ev.window_ms,
            "window_start_ms": ev.window_start_ms,
            "time_ms": ev.event_time_ms,
            "update_id": ev.event.update_id,
            "watermark_ms": ev.watermark_ms,
            "lateness_ms": ev.lateness_ms,
        }


def _aggregate(state: TickerState, i: int, agg: str) -> float:
    if agg == "first":
        return state.first[i]
    if agg == "last":
        return state.last[i]
    if agg == "mean":
        return state.sums[i] / state.count if state.count else math.nan
    if agg == "min":
        return state.mins[i]
    if agg == "max":
        return state.maxs[i]
    return state.sums[i]
