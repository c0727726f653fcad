"""OHLCV candles per symbol over event-time tumbling windows, updated incrementally per trade.

Why this shape: a DataFrame per message costs far more than folding a trade into a small slots
object (the candle benchmarks' figures are in the README, "Stages"), and thanks to panes (see
``processors.windowing``) a trade is folded once however many window sizes are configured.
Event time is the trade time ``T`` (exchange clock), never arrival time, so a replay or a slow
transport gives the same candles as the live run.

Out-of-order trades within the grace period are folded in correctly: ``open`` is the trade
with the earliest ``(T, trade_id)``, ``close`` the latest, so the result does not depend on
arrival order. Trades arriving after their window closed are returned as late rows (one per
window size they missed) and counted; a trade late for the 1 s candle may still be on time for
the 1 min candle and is folded into that one.

Call ``add_batch`` per transport batch; it returns the candles that closed and the late rows.
Call ``flush`` once at shutdown: it closes every open window (the last ones are usually
incomplete) and the aggregator refuses trades afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from processors.trade_parsing import Trade
from processors.windowing import LateEvent, PanedWindows

DEFAULT_WINDOWS = ("1s", "1m", "1h", "1d")
#: Binance stamps T 0-2 ms before E and one symbol's trades arrive in order; 1 s also covers
#: the reordering of several Kafka partitions merged by one consumer.
DEFAULT_GRACE_MS = 1_000

#: Row layout of the candle tables (one table per window size in the sink). ``end_ms`` is
#: exclusive. ``vwap`` = quote_volume / volume (NaN if volume is 0). ``closed`` is False only
#: for live snapshots of a still-open window (``emit_open``).
CANDLE_DTYPE = np.dtype(
    [
        ("symbol", "S24"),
        ("window", "S8"),
        ("window_ms", "i8"),
        ("start_ms", "i8"),
        ("end_ms", "i8"),
        ("open", "f8"),
        ("high", "f8"),
        ("low", "f8"),
        ("close", "f8"),
        ("volume", "f8"),
        ("quote_volume", "f8"),
        ("vwap", "f8"),
        ("trade_count", "i8"),
        ("taker_buy_volume", "f8"),
        ("taker_buy_quote_volume", "f8"),
        ("first_trade_id", "i8"),
        ("last_trade_id", "i8"),
        ("open_time_ms", "i8"),
        ("close_time_ms", "i8"),
        ("closed", "?"),
    ]
)

#: Row layout of the late-trades table: the trade plus the window it missed and the watermark
#: in force when it arrived (``lateness_ms`` = watermark - window end, >= 0).
LATE_TRADE_DTYPE = np.dtype(
    [
        ("symbol", "S24"),
        ("window", "S8"),
        ("window_ms", "i8"),
        ("window_start_ms", "i8"),
        ("time_ms", "i8"),
        ("trade_id", "i8"),
        ("price", "f8"),
        ("qty", "f8"),
        ("buyer_is_maker", "?"),
        ("watermark_ms", "i8"),
        ("lateness_ms", "i8"),
    ]
)


def rows_to_array(rows: Sequence[dict[str, Any]], dtype: np.dtype) -> np.ndarray:
    """Row dicts -> a numpy structured array an HDF5 sink appends in one call.

    Strings are encoded as UTF-8 and must fit the dtype's width (symbols and coin names do).
    """
    names = dtype.names or ()
    out = np.empty(len(rows), dtype=dtype)
    for name in names:
        column = [row[name] for row in rows]
        if dtype[name].kind == "S":
            column = [v.encode() if isinstance(v, str) else v for v in column]
        out[name] = column
    return out


class CandleState:
    """Running aggregates of one (symbol, window); slots keep a fold at ~15 attribute writes."""

    __slots__ = (
        "close",
        "close_id",
        "close_t",
        "count",
        "first_id",
        "high",
        "last_id",
        "low",
        "open",
        "open_id",
        "open_t",
        "quote",
        "taker_base",
        "taker_quote",
        "volume",
    )

    def __init__(self, trade: Trade) -> None:
        _sym, t, tid, p, q, maker, f, last = trade
        self.open_t = self.close_t = t
        self.open_id = self.close_id = tid
        self.open = self.high = self.low = self.close = p
        self.volume = q
        self.quote = p * q
        self.count = last - f + 1  # fills: 1 for a trade, l - f + 1 for an aggTrade
        self.taker_base = 0.0 if maker else q
        self.taker_quote = 0.0 if maker else p * q
        self.first_id = f
        self.last_id = last


@dataclass(slots=True)
class CandleBatch:
    """What one ``add_batch``/``flush`` produced; rows follow ``CANDLE_DTYPE``/``LATE_TRADE_DTYPE``.

    ``candles`` are closed windows in (window size, start, symbol) order; ``open`` holds live
    snapshots of every still-open window after this batch (only with ``emit_open``).
    """

    candles: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    open: list[dict[str, Any]] = field(default_factory=list)


class CandleAggregator(PanedWindows[CandleState, Trade]):
    """Candles for ``windows`` (e.g. ``("1s", "1m", "1h", "1d")``) with a watermark of
    ``max trade time - grace_ms``."""

    def __init__(
        self,
        windows: Sequence[str | int] = DEFAULT_WINDOWS,
        grace_ms: int = DEFAULT_GRACE_MS,
        emit_open: bool = False,
    ) -> None:
        super().__init__(windows, grace_ms)
        self.emit_open = emit_open
        self.trades_in = 0

    # -- PanedWindows hooks ------------------------------------------------------------------
    def new_state(self, event: Trade) -> CandleState:
        return CandleState(event)

    def fold(self, state: CandleState, event: Trade) -> None:
        _sym, t, tid, p, q, maker, f, last = event
        if t < state.open_t or (t == state.open_t and tid < state.open_id):
            state.open_t, state.open_id, state.open = t, tid, p
        if t > state.close_t or (t == state.close_t and tid > state.close_id):
            state.close_t, state.close_id, state.close = t, tid, p
        if p > state.high:
            state.high = p
        elif p < state.low:
            state.low = p
        state.volume += q
        state.quote += p * q
        state.count += last - f + 1
        if not maker:
            state.taker_base += q
            state.taker_quote += p * q
        if f < state.first_id:
            state.first_id = f
        if last > state.last_id:
            state.last_id = last

    def merge(self, into: CandleState, other: CandleState) -> None:
        if (other.open_t, other.open_id) < (into.open_t, into.open_id):
            into.open_t, into.open_id, into.open = other.open_t, other.open_id, other.open
        if (other.close_t, other.close_id) > (into.close_t, into.close_id):
            into.close_t, into.close_id, into.close = other.close_t, other.close_id, other.close
        into.high = max(into.high, other.high)
        into.low = min(into.low, other.low)
        into.volume += other.volume
        into.quote += other.quote
        into.count += other.count
        into.taker_base += other.taker_base
        into.taker_quote += other.taker_quote
        into.first_id = min(into.first_id, other.first_id)
        into.last_id = max(into.last_id, other.last_id)

    def copy_state(self, state: CandleState) -> CandleState:
        clone = CandleState.__new__(CandleState)
        for name in CandleState.__slots__:
            setattr(clone, name, getattr(state, name))
        return clone

    # -- public API ----------------------------------------------------------------------------
    def add_batch(self, trades: Iterable[Trade]) -> CandleBatch:
        """Fold ``trades`` (any order) and return the candles that closed plus late rows."""
        self.check_open()
        late: list[LateEvent[Trade]] = []
        pane = self.pane_ms
        grace = self.grace_ms
        wm = self.watermark_ms
        newest = self.max_event_ms
        panes = self.panes
        bucket_start = None
        bucket: dict[str, CandleState] = {}
        n = 0
        # The body of fold() is inlined: a method call per trade would cost ~30 % throughput.
        for trade in trades:
            n += 1
            sym, t, tid, p, q, maker, f, last = trade
            start = t - t % pane
            if start + pane <= wm:
                self.watermark_ms = wm
                self.fold_late(sym, t, trade, late)
                continue
            if start != bucket_start:
                found = panes.get(start)
                if found is None:
                    found = panes[start] = {}
                bucket = found
                bucket_start = start
            st = bucket.get(sym)
            if st is None:
                bucket[sym] = CandleState(trade)
            else:
                if t < st.open_t or (t == st.open_t and tid < st.open_id):
                    st.open_t = t
                    st.open_id = tid
                    st.open = p
                if t > st.close_t or (t == st.close_t and tid > st.close_id):
                    st.close_t = t
                    st.close_id = tid
                    st.close = p
                if p > st.high:
                    st.high = p
                elif p < st.low:
                    st.low = p
                pq = p * q
                st.volume += q
                st.quote += pq
                st.count += last - f + 1
                if not maker:
                    st.taker_base += q
                    st.taker_quote += pq
                if f < st.first_id:
                    st.first_id = f
                if last > st.last_id:
                    st.last_id = last
            if t > newest:
                newest = t
                wm = t - grace
        self.max_event_ms = newest
        self.watermark_ms = wm
        self.trades_in += n
        out = CandleBatch(
            candles=self._rows(self.close_ready(), closed=True),
            late=[self._late_row(ev) for ev in late],
        )
        if self.emit_open:
            out.open = self._rows(self.open_snapshot(), closed=False)
        return out

    def flush(self) -> CandleBatch:  # type: ignore[override]
        """Close every open window at shutdown (see the module docstring); terminal."""
        return CandleBatch(candles=self._rows(super().flush(), closed=True))

    def open_candles(self, symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Live snapshots of the open windows (``closed=False``), without closing anything."""
        return self._rows(self.open_snapshot(symbols), closed=False)

    # -- rows ------------------------------------------------------------------------------------
    def _rows(
        self, items: list[tuple[str, int, int, CandleState]], closed: bool
    ) -> list[dict[str, Any]]:
        labels = self.labels
        rows = []
        for sym, size, start, st in items:
            rows.append(
                {
                    "symbol": sym,
                    "window": labels[size],
                    "window_ms": size,
                    "start_ms": start,
                    "end_ms": start + size,
                    "open": st.open,
                    "high": st.high,
                    "low": st.low,
                    "close": st.close,
                    "volume": st.volume,
                    "quote_volume": st.quote,
                    "vwap": st.quote / st.volume if st.volume > 0 else math.nan,
                    "trade_count": st.count,
                    "taker_buy_volume": st.taker_base,
                    "taker_buy_quote_volume": st.taker_quote,
                    "first_trade_id": st.first_id,
                    "last_trade_id": st.last_id,
                    "open_time_ms": st.open_t,
                    "close_time_ms": st.close_t,
                    "closed": closed,
                }
            )
        return rows

    def _late_row(self, ev: LateEvent[Trade]) -> dict[str, Any]:
        trade = ev.event
        return {
            "symbol": ev.key,
            "window": self.labels[ev.window_ms],
            "window_ms": ev.window_ms,
            "window_start_ms": ev.window_start_ms,
            "time_ms": ev.event_time_ms,
            "trade_id": trade[2],
            "price": trade[3],
            "qty": trade[4],
            "buyer_is_maker": trade[5],
            "watermark_ms": ev.watermark_ms,
            "lateness_ms": ev.lateness_ms,
        }
