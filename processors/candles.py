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

Call ``add_batch`` per transport batch (or ``add_columns`` for a batch of ``trade`` events as
columns: the same result, bit for bit, folded with numpy); it returns the candles that closed and
the late rows. Call ``flush`` once at shutdown: it closes every open window (the last ones are
usually incomplete) and the aggregator refuses trades afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from processors.trade_parsing import Trade, TradeColumns
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
        return self._closed_batch(late)

    def add_columns(self, cols: TradeColumns) -> CandleBatch:
        """``add_batch`` of ``trade`` events given as columns, folded with numpy: the same
        candles, late rows and state, bit for bit. Each (pane, symbol) group's sums are
        accumulated in arrival order, as ``add_batch`` adds them, because numpy's ``sum`` pairs
        numbers up and would round differently (a resumed run must match an unbroken one)."""
        self.check_open()
        t = cols.time_ms
        n = len(t)
        if n == 0:
            return self._closed_batch([])
        pane, newest_before, wm_before = self.pane_ms, self.max_event_ms, self.watermark_ms
        # The watermark in force when each trade arrives: from the trades before it.
        seen = np.empty(n, np.int64)
        seen[0] = newest_before
        seen[1:] = t[:-1]
        np.maximum.accumulate(seen, out=seen)
        wm = np.where(seen > newest_before, seen - self.grace_ms, wm_before)
        start = t - t % pane
        late_mask = start + pane <= wm
        late: list[LateEvent[Trade]] = []
        symbols, tid, price, qty, maker = (cols.symbol, cols.trade_id, cols.price, cols.qty,
                                           cols.buyer_is_maker)  # fmt: skip
        if late_mask.any():
            trades = cols.trades()
            for i in np.flatnonzero(late_mask).tolist():
                self.watermark_ms = int(wm[i])
                self.fold_late(symbols[i], int(t[i]), trades[i], late)
            on_time = np.flatnonzero(~late_mask)
            symbols = [symbols[i] for i in on_time.tolist()]
            t, start, tid, price, qty, maker = (a[on_time] for a in (t, start, tid, price, qty,
                                                                     maker))  # fmt: skip
        if len(t):
            self._fold_groups(symbols, t, start, tid, price, qty, maker)
        newest = max(newest_before, int(cols.time_ms.max()))
        self.max_event_ms = newest
        self.watermark_ms = newest - self.grace_ms if newest > newest_before else wm_before
        self.trades_in += n
        return self._closed_batch(late)

    def _fold_groups(
        self, symbols: list[str], t: np.ndarray, start: np.ndarray, tid: np.ndarray,
        price: np.ndarray, qty: np.ndarray, maker: np.ndarray,
    ) -> None:
        """Fold on-time trades into their panes, one (pane, symbol) group at a time."""
        codes: dict[str, int] = {}
        code = np.array([codes.setdefault(s, len(codes)) for s in symbols], np.int64)
        names = list(codes)
        first_start = int(start.min())
        group = (start - first_start) // self.pane_ms * len(codes) + code
        m = len(t)
        arrival = np.arange(m)
        by_arrival = np.argsort(group, kind="stable")
        sorted_groups = group[by_arrival]
        new_group = np.empty(m, np.bool_)
        new_group[0] = True
        np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=new_group[1:])
        firsts = np.flatnonzero(new_group)
        ends = np.append(firsts[1:], m)
        # open: the smallest (T, id), the earliest arrival among equals; close: the largest.
        opens = np.lexsort((arrival, tid, t, group))[firsts]
        closes = np.lexsort((-arrival, tid, t, group))[ends - 1]
        p, q = price[by_arrival], qty[by_arrival]
        pq = p * q
        taker = ~maker[by_arrival]
        sums = np.stack((q, pq, np.where(taker, q, 0.0), np.where(taker, pq, 0.0)))
        high = np.maximum.reduceat(p, firsts).tolist()
        low = np.minimum.reduceat(p, firsts).tolist()
        low_id = np.minimum.reduceat(tid[by_arrival], firsts).tolist()
        high_id = np.maximum.reduceat(tid[by_arrival], firsts).tolist()
        t_l, tid_l, price_l = t.tolist(), tid.tolist(), price.tolist()
        panes = self.panes
        starts, stops, keys = firsts.tolist(), ends.tolist(), sorted_groups[firsts].tolist()
        # Groups in the order of their first trade: panes and symbols enter their dicts in the
        # order the trade loop adds them, so even the state's snapshot is the same.
        for g in np.argsort(by_arrival[firsts]).tolist():
            a, b, key = starts[g], stops[g], keys[g]
            pane_start = first_start + key // len(codes) * self.pane_ms
            bucket = panes.get(pane_start)
            if bucket is None:
                bucket = panes[pane_start] = {}
            symbol = names[key % len(codes)]
            st = bucket.get(symbol)
            o, c = opens[g], closes[g]
            running = np.empty((4, b - a + 1))
            running[:, 1:] = sums[:, a:b]
            if st is None:
                st = bucket[symbol] = CandleState.__new__(CandleState)
                st.open_t, st.open_id, st.open = t_l[o], tid_l[o], price_l[o]
                st.close_t, st.close_id, st.close = t_l[c], tid_l[c], price_l[c]
                st.high, st.low = high[g], low[g]
                st.count, st.first_id, st.last_id = 0, low_id[g], high_id[g]
                running[:, 0] = 0.0
            else:
                if (t_l[o], tid_l[o]) < (st.open_t, st.open_id):
                    st.open_t, st.open_id, st.open = t_l[o], tid_l[o], price_l[o]
                if (t_l[c], tid_l[c]) > (st.close_t, st.close_id):
                    st.close_t, st.close_id, st.close = t_l[c], tid_l[c], price_l[c]
                st.high = max(st.high, high[g])
                st.low = min(st.low, low[g])
                st.first_id = min(st.first_id, low_id[g])
                st.last_id = max(st.last_id, high_id[g])
                running[:, 0] = (st.volume, st.quote, st.taker_base, st.taker_quote)
            st.count += b - a  # trades only: one fill each
            np.add.accumulate(running, axis=1, out=running)
            st.volume, st.quote, st.taker_base, st.taker_quote = running[:, -1].tolist()

    def _closed_batch(self, late: list[LateEvent[Trade]]) -> CandleBatch:
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
