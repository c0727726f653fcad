"""Deterministic synthetic Binance market data in the real combined-stream wire format.

Why not a smooth stream: real BTCUSDT trade flow (figures.md) averages ~30 trades/s but a
single market order sweeps the book and hundreds of trades share one millisecond. So orders
arrive as a Poisson process and each order fills a heavy-tailed number of trades (P(k) ~ k^-2.2,
k <= 800) at the same E, walking the price one tick per fill in the order's direction.
Quantities are lognormal (median 0.00067 BTC, p99 ~0.32, capped at 10), buyer-is-maker 54 %,
trade time T 0-2 ms before E, trade ids strictly increasing per symbol.

The generator yields ``Frame(recv_ns, raw)`` exactly like a recording, so the producer runtime
paces it like one (``replayed_at_speed``: 1x, timestamps follow the wall clock at ``rate``
trades/s; 0, as fast as possible) and the same seed and start time give byte-identical frames.
Ticker/kline statistics are computed from the generated trades since the start (not a real
24 h window): shape-correct, values self-consistent.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from core.recording import Frame
from producers.binance.synthetic_depth import DEPTH_STREAM_TYPES, TICK_MS, SyntheticDepth
from producers.binance.topics import event_for_stream_type

MEAN_TRADES_PER_S = 30.6
MAX_FILLS = 800
_FILL_WEIGHTS = list(itertools.accumulate(k**-2.2 for k in range(1, MAX_FILLS + 1)))
MEAN_FILLS = sum(k * k**-2.2 for k in range(1, MAX_FILLS + 1)) / _FILL_WEIGHTS[-1]
_QTY_MU = math.log(0.00067)
_QTY_SIGMA = (math.log(0.324) - _QTY_MU) / 2.326  # p99 = 0.324
BUYER_MAKER_SHARE = 0.54
BOOK_TICKERS_PER_TRADE = 112 / 30.6  # figures.md: ~112 bookTicker frames/s vs ~30 trades/s
START_PRICES = {"btcusdt": 60_000.0, "ethusdt": 2_600.0, "bnbusdt": 550.0, "solusdt": 150.0}
SUPPORTED_STREAM_TYPES = (
    "trade", "aggTrade", "kline_1m", "ticker", "miniTicker", "bookTicker", *DEPTH_STREAM_TYPES
)  # fmt: skip


@dataclass(slots=True)
class _Symbol:
    name: str  # lower case, as in stream names
    upper: str
    price_ticks: int  # price in ticks of 0.01
    qty_scale: float  # notional-equivalent scaling versus BTC
    trade_id: int
    agg_id: int
    update_id: int
    open_ticks: int
    high_ticks: int = 0
    low_ticks: int = 1 << 62
    volume: float = 0.0
    quote_volume: float = 0.0
    count: int = 0
    first_trade_id: int = 0
    last_qty: float = 0.0
    kline: dict[str, float] = field(default_factory=dict)
    kline_open_ms: int = -1


def _dec(value: float, places: int = 8) -> str:
    return f"{value:.{places}f}"


class SyntheticMarket:
    """An endless, seeded stream of frames for ``symbols`` x ``stream_types``.

    ``rate`` is the mean total trade rate across symbols (trades/s of *event time*); the other
    streams scale with it (bookTicker ~3.7 per trade, ticker/miniTicker once per second per
    symbol, kline_1m every 2 s per symbol, aggTrade one per price level of an order).
    """

    def __init__(
        self,
        symbols: list[str],
        stream_types: list[str] | None = None,
        *,
        seed: int = 1,
        start_ms: int = 1_723_456_789_000,
        rate: float | None = None,
        combined: bool = True,
    ) -> None:
        types = list(stream_types or ["trade"])
        for st in types:
            event_for_stream_type(st)
            if st not in SUPPORTED_STREAM_TYPES:
                supported = ", ".join(SUPPORTED_STREAM_TYPES)
                raise ValueError(f"synthetic source has no {st!r}; it generates {supported}")
        self.types = set(types)
        self.combined = combined
        self.rng = random.Random(seed)
        self.depth = SyntheticDepth(self.types, seed, combined=combined)
        self.start_ms = start_ms
        self.rate = rate if rate and rate > 0 else MEAN_TRADES_PER_S * len(symbols)
        self.symbols: list[_Symbol] = []
        for i, name in enumerate(s.lower() for s in symbols):
            base = START_PRICES.get(name, 1.0 + self.rng.random() * 100)
            ticks = round(base * 100)
            self.symbols.append(
                _Symbol(
                    name,
                    name.upper(),
                    ticks,
                    60_000.0 / base,
                    trade_id=3_700_000_000 + i * 10_000_000,
                    agg_id=2_100_000_000 + i * 1_000_000,
                    update_id=50_000_000_000 + i * 1_000_000_000,
                    open_ticks=ticks,
                    first_trade_id=3_700_000_000 + i * 10_000_000,
                )
            )

    def frames(self) -> Iterator[Frame]:
        """Yield frames in receive-time order, forever; stop by breaking out of the loop."""
        rng = self.rng
        heap: list[tuple[float, int, str, int]] = []
        tie = itertools.count()
        order_rate_ms = self.rate / MEAN_FILLS / 1000.0
        n = len(self.symbols)
        t0 = float(self.start_ms)
        heapq.heappush(heap, (t0 + rng.expovariate(order_rate_ms), next(tie), "order", -1))
        if "bookTicker" in self.types:
            book_rate_ms = self.rate * BOOK_TICKERS_PER_TRADE / 1000.0
            heapq.heappush(heap, (t0 + rng.expovariate(book_rate_ms), next(tie), "book", -1))
        for i in range(n):
            if self.types & {"ticker", "miniTicker"}:
                heapq.heappush(heap, (t0 + 1000.0 + i, next(tie), "ticker", i))
            if "kline_1m" in self.types:
                heapq.heappush(heap, (t0 + 2000.0 + i, next(tie), "kline", i))
            if self.depth.types:
                heapq.heappush(heap, (t0 + i, next(tie), "depth", i))
        while True:
            t, _, kind, idx = heapq.heappop(heap)
            e_ms = int(t)
            if kind == "order":
                heapq.heappush(heap, (t + rng.expovariate(order_rate_ms), next(tie), kind, -1))
                yield from self._order(self.symbols[rng.randrange(n)], e_ms)
            elif kind == "book":
                heapq.heappush(heap, (t + rng.expovariate(book_rate_ms), next(tie), kind, -1))
                yield self._book(self.symbols[rng.randrange(n)], e_ms)
            elif kind == "depth":
                heapq.heappush(heap, (t + TICK_MS, next(tie), kind, idx))
                sym = self.symbols[idx]
                yield from self.depth.tick(sym.name, sym.price_ticks, e_ms, idx)
            elif kind == "ticker":
                heapq.heappush(heap, (t + 1000.0, next(tie), kind, idx))
                yield from self._tickers(self.symbols[idx], e_ms)
            else:
                heapq.heappush(heap, (t + 2000.0, next(tie), kind, idx))
                yield self._kline(self.symbols[idx], e_ms)

    # -- frame builders --------------------------------------------------------------------
    def _frame(
        self, sym: _Symbol, stream_type: str, data: dict[str, object], e_ms: int
    ) -> Frame:
        if self.combined:
            obj: dict[str, object] = {"stream": f"{sym.name}@{stream_type}", "data": data}
        else:
            obj = data
        recv_ns = e_ms * 1_000_000 + int(self.rng.uniform(0.3, 3.0) * 1_000_000)
        return Frame(recv_ns, orjson.dumps(obj).decode())

    def _order(self, sym: _Symbol, e_ms: int) -> Iterator[Frame]:
        rng = self.rng
        fills = bisect.bisect_left(_FILL_WEIGHTS, rng.random() * _FILL_WEIGHTS[-1]) + 1
        buyer_maker = rng.random() < BUYER_MAKER_SHARE  # seller-initiated: sweeps bids down
        step = -1 if buyer_maker else 1
        drift = round(rng.gauss(0.0, sym.price_ticks * 2e-5))
        sym.price_ticks = max(1, sym.price_ticks + drift)
        t_ms = e_ms - rng.randint(0, 2)
        agg_first, agg_qty, agg_price = sym.trade_id + 1, 0.0, sym.price_ticks
        emit_trade, emit_agg = "trade" in self.types, "aggTrade" in self.types
        for i in range(fills):
            if i and rng.random() < 0.3:
                if emit_agg:
                    yield self._agg(sym, e_ms, t_ms, agg_first, agg_qty, agg_price, buyer_maker)
                sym.price_ticks = max(1, sym.price_ticks + step)
                agg_first, agg_qty, agg_price = sym.trade_id + 1, 0.0, sym.price_ticks
            qty = min(10.0, rng.lognormvariate(_QTY_MU, _QTY_SIGMA)) * sym.qty_scale
            qty = max(0.00001, round(qty, 5))
            sym.trade_id += 1
            agg_qty += qty
            self._account(sym, qty, e_ms)
            if emit_trade:
                data = {
                    "e": "trade",
                    "E": e_ms,
                    "s": sym.upper,
                    "t": sym.trade_id,
                    "p": _dec(sym.price_ticks / 100),
                    "q": _dec(qty),
                    "T": t_ms,
                    "m": buyer_maker,
                    "M": True,
                }
                yield self._frame(sym, "trade", data, e_ms)
        if emit_agg:
            yield self._agg(sym, e_ms, t_ms, agg_first, agg_qty, agg_price, buyer_maker)

    def _agg(
        self, sym: _Symbol, e_ms: int, t_ms: int, first: int, qty: float, ticks: int, m: bool
    ) -> Frame:
        sym.agg_id += 1
        data = {
            "e": "aggTrade",
            "E": e_ms,
            "s": sym.upper,
            "a": sym.agg_id,
            "p": _dec(ticks / 100),
            "q": _dec(qty),
            "f": first,
            "l": sym.trade_id,
            "T": t_ms,
            "m": m,
            "M": True,
        }
        return self._frame(sym, "aggTrade", data, e_ms)

    def _account(self, sym: _Symbol, qty: float, e_ms: int) -> None:
        price = sym.price_ticks / 100
        sym.high_ticks = max(sym.high_ticks, sym.price_ticks)
        sym.low_ticks = min(sym.low_ticks, sym.price_ticks)
        sym.volume += qty
        sym.quote_volume += qty * price
        sym.count += 1
        sym.last_qty = qty
        open_ms = e_ms - e_ms % 60_000
        k = sym.kline
        if sym.kline_open_ms != open_ms:
            sym.kline_open_ms = open_ms
            k.clear()
            k.update(o=price, h=price, l=price, v=0.0, q=0.0, n=0, f=sym.trade_id, V=0.0, Q=0.0)
        k["h"], k["l"], k["c"] = max(k["h"], price), min(k["l"], price), price
        k["v"] += qty
        k["q"] += qty * price
        k["n"] += 1
        k["L"] = sym.trade_id

    def _book(self, sym: _Symbol, e_ms: int) -> Frame:
        rng = self.rng
        sym.update_id += rng.randint(1, 40)
        bid = sym.price_ticks - rng.randint(0, 1)
        data = {
            "u": sym.update_id,
            "s": sym.upper,
            "b": _dec(bid / 100),
            "B": _dec(round(rng.lognormvariate(0.0, 1.5), 5)),
            "a": _dec((bid + 1) / 100),
            "A": _dec(round(rng.lognormvariate(0.0, 1.5), 5)),
        }
        return self._frame(sym, "bookTicker", data, e_ms)

    def _tickers(self, sym: _Symbol, e_ms: int) -> Iterator[Frame]:
        last = sym.price_ticks / 100
        open_ = sym.open_ticks / 100
        high = max(sym.high_ticks, sym.price_ticks) / 100
        low = min(sym.low_ticks, sym.price_ticks) / 100
        if "ticker" in self.types:
            change = last - open_
            data = {
                "e": "24hrTicker",
                "E": e_ms,
                "s": sym.upper,
                "p": _dec(change),
                "P": _dec(100 * change / open_, 3),
                "w": _dec(sym.quote_volume / sym.volume if sym.volume else last),
                "x": _dec(open_),
                "c": _dec(last),
                "Q": _dec(sym.last_qty),
                "b": _dec(last - 0.01),
                "B": _dec(1.5),
                "a": _dec(last),
                "A": _dec(0.8),
                "o": _dec(open_),
                "h": _dec(high),
                "l": _dec(low),
                "v": _dec(sym.volume),
                "q": _dec(sym.quote_volume),
                "O": e_ms - 86_400_000,
                "C": e_ms,
                "F": sym.first_trade_id if sym.count else -1,
                "L": sym.trade_id if sym.count else -1,
                "n": sym.count,
            }
            yield self._frame(sym, "ticker", data, e_ms)
        if "miniTicker" in self.types:
            data = {
                "e": "24hrMiniTicker",
                "E": e_ms,
                "s": sym.upper,
                "c": _dec(last),
                "o": _dec(open_),
                "h": _dec(high),
                "l": _dec(low),
                "v": _dec(sym.volume),
                "q": _dec(sym.quote_volume),
            }
            yield self._frame(sym, "miniTicker", data, e_ms)

    def _kline(self, sym: _Symbol, e_ms: int) -> Frame:
        open_ms = e_ms - e_ms % 60_000
        k = sym.kline if sym.kline_open_ms == open_ms else {}
        last = sym.price_ticks / 100
        data = {
            "e": "kline",
            "E": e_ms,
            "s": sym.upper,
            "k": {
                "t": open_ms,
                "T": open_ms + 59_999,
                "s": sym.upper,
                "i": "1m",
                "f": int(k.get("f", -1)),
                "L": int(k.get("L", -1)),
                "o": _dec(k.get("o", last)),
                "c": _dec(k.get("c", last)),
                "h": _dec(k.get("h", last)),
                "l": _dec(k.get("l", last)),
                "v": _dec(k.get("v", 0.0)),
                "n": int(k.get("n", 0)),
                "x": e_ms % 60_000 >= 58_000,
                "q": _dec(k.get("q", 0.0)),
                "V": _dec(k.get("V", 0.0)),
                "Q": _dec(k.get("Q", 0.0)),
                "B": "0",
            },
        }
        return self._frame(sym, "kline_1m", data, e_ms)
