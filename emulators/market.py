"""The market the Binance emulator streams: its own model of Spot market data, not the producer's.

The emulator stands in for Binance when tests check the producer; generating frames with the
producer's own synthetic market would let a shape both got wrong pass unnoticed. This model is
written from Binance's websocket documentation alone: a random-walk price per symbol, trades
with Poisson arrivals at ``rate`` across symbols, each trade also an aggTrade (one fill per
order), the best bid/ask moving around the last price (bookTicker, a few per trade), 24 h
ticker and mini ticker once a second per symbol and the 1 m kline every two seconds, all as
combined-stream frames (``{"stream": "btcusdt@trade", "data": {...}}``). Depth streams come
from ``emulators.binance_depth``.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

#: The stream types this model serves.
STREAM_TYPES = ("trade", "aggTrade", "kline_1m", "ticker", "miniTicker", "bookTicker")
BOOK_UPDATES_PER_TRADE = 3
FIRST_PRICE = {"btcusdt": 60_000.0, "ethusdt": 2_600.0, "solusdt": 150.0}


def _decimal(value: float) -> str:
    return f"{value:.8f}"


@dataclass(slots=True)
class _Tally:
    """Trades summed over a window (the day since the start, or one kline minute)."""

    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    last: float = 0.0
    last_qty: float = 0.0
    volume: float = 0.0
    quote: float = 0.0
    first_id: int = -1
    last_id: int = -1
    count: int = 0

    def add(self, price: float, qty: float, trade_id: int) -> None:
        if self.count == 0:
            self.open = self.high = self.low = price
            self.first_id = trade_id
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.last, self.last_qty, self.last_id = price, qty, trade_id
        self.volume += qty
        self.quote += price * qty
        self.count += 1


@dataclass(slots=True)
class _Book:
    """One symbol's state: last price, best quotes, ids, and its day and kline tallies."""

    symbol: str
    price: float
    trade_id: int = 1_000_000
    update_id: int = 5_000_000
    day: _Tally = field(default_factory=_Tally)
    minute: _Tally = field(default_factory=_Tally)
    minute_open_ms: int = -1

    def quotes(self, rng: random.Random) -> tuple[float, float]:
        spread = self.price * rng.uniform(0.00001, 0.0001)
        return self.price - spread / 2, self.price + spread / 2


class EmulatedMarket:
    """Seeded combined-stream frames in time order: ``(event time ns, frame text)``."""

    def __init__(self, symbols: tuple[str, ...] | list[str], seed: int, start_ms: int,
                 rate: float) -> None:
        self._rng = random.Random(f"emulated-market-{seed}")
        self._books = [_Book(s, FIRST_PRICE.get(s, 100.0)) for s in symbols]
        self._start_ms = start_ms
        self._rate = rate

    def frames(self) -> Iterator[tuple[int, str]]:
        rng = self._rng
        order = itertools.count()
        due: list[tuple[float, int, str, int]] = []
        # One chain of trades across all symbols (``rate`` in all), each picking its symbol.
        heapq.heappush(due, (self._start_ms + rng.expovariate(self._rate) * 1000, next(order),
                             "trade", rng.randrange(len(self._books))))
        for i in range(len(self._books)):
            heapq.heappush(due, (self._start_ms + 1000 + i, next(order), "tickers", i))
            heapq.heappush(due, (self._start_ms + 2000 + i, next(order), "kline", i))
        while True:
            at, _, kind, i = heapq.heappop(due)
            book, ms = self._books[i], int(at)
            if kind == "trade":
                yield from self._trade(book, ms)
                other = rng.randrange(len(self._books))
                heapq.heappush(due, (at + rng.expovariate(self._rate) * 1000, next(order),
                                     "trade", other))
            elif kind == "tickers":
                yield self._frame(book, "ticker", self._ticker(book, ms), ms)
                yield self._frame(book, "miniTicker", self._mini_ticker(book, ms), ms)
                heapq.heappush(due, (at + 1000, next(order), "tickers", i))
            else:
                yield self._frame(book, "kline_1m", self._kline(book, ms), ms)
                heapq.heappush(due, (at + 2000, next(order), "kline", i))

    def _frame(self, book: _Book, stream_type: str, data: dict[str, object],
               ms: int) -> tuple[int, str]:
        text = orjson.dumps({"stream": f"{book.symbol}@{stream_type}", "data": data}).decode()
        return ms * 1_000_000, text

    def _trade(self, book: _Book, ms: int) -> Iterator[tuple[int, str]]:
        rng = self._rng
        book.price *= 1 + rng.gauss(0, 0.0002)
        qty = round(rng.lognormvariate(-4, 1.2), 5) or 0.00001
        book.trade_id += 1
        buyer_maker = rng.random() < 0.5
        book.day.add(book.price, qty, book.trade_id)
        if ms - ms % 60_000 != book.minute_open_ms:
            book.minute_open_ms, book.minute = ms - ms % 60_000, _Tally()
        book.minute.add(book.price, qty, book.trade_id)
        upper = book.symbol.upper()
        yield self._frame(book, "trade", {
            "e": "trade", "E": ms, "s": upper, "t": book.trade_id, "p": _decimal(book.price),
            "q": _decimal(qty), "T": ms, "m": buyer_maker, "M": True,
        }, ms)
        yield self._frame(book, "aggTrade", {
            "e": "aggTrade", "E": ms, "s": upper, "a": book.trade_id - 600_000,
            "p": _decimal(book.price), "q": _decimal(qty), "f": book.trade_id,
            "l": book.trade_id, "T": ms, "m": buyer_maker, "M": True,
        }, ms)
        for _ in range(BOOK_UPDATES_PER_TRADE):
            book.update_id += 1
            bid, ask = book.quotes(rng)
            yield self._frame(book, "bookTicker", {
                "u": book.update_id, "s": upper, "b": _decimal(bid),
                "B": _decimal(rng.uniform(0.01, 5)), "a": _decimal(ask),
                "A": _decimal(rng.uniform(0.01, 5)),
            }, ms)

    def _ticker(self, book: _Book, ms: int) -> dict[str, object]:
        """The day's statistics, counted from the start (a fresh exchange has no older day)."""
        day = book.day
        last = day.last if day.count else book.price
        first = day.open if day.count else book.price
        bid, ask = book.quotes(self._rng)
        return {
            "e": "24hrTicker", "E": ms, "s": book.symbol.upper(),
            "p": f"{last - first:.8f}", "P": f"{(last / first - 1) * 100:.3f}",
            "w": _decimal(day.quote / day.volume if day.volume else last), "x": _decimal(first),
            "c": _decimal(last), "Q": _decimal(day.last_qty or 0.00001),
            "b": _decimal(bid), "B": "1.00000000", "a": _decimal(ask), "A": "1.00000000",
            "o": _decimal(first), "h": _decimal(day.high or last), "l": _decimal(day.low or last),
            "v": _decimal(day.volume or 0.00001), "q": _decimal(day.quote or 0.00001),
            "O": ms - 86_400_000, "C": ms, "F": day.first_id, "L": day.last_id, "n": day.count,
        }

    def _mini_ticker(self, book: _Book, ms: int) -> dict[str, object]:
        full = self._ticker(book, ms)
        return {"e": "24hrMiniTicker", **{k: full[k] for k in ("E", "s", "c", "o", "h", "l",
                                                                  "v", "q")}}

    def _kline(self, book: _Book, ms: int) -> dict[str, object]:
        open_ms = ms - ms % 60_000
        k = book.minute if book.minute_open_ms == open_ms else _Tally()
        price = book.price
        return {"e": "kline", "E": ms, "s": book.symbol.upper(), "k": {
            "t": open_ms, "T": open_ms + 59_999, "s": book.symbol.upper(), "i": "1m",
            "f": k.first_id, "L": k.last_id, "o": _decimal(k.open or price),
            "c": _decimal(k.last or price), "h": _decimal(k.high or price),
            "l": _decimal(k.low or price), "v": _decimal(k.volume or 0.00001), "n": k.count,
            "x": False, "q": _decimal(k.quote or 0.00001), "V": _decimal(k.volume / 2 or 0.00001),
            "Q": _decimal(k.quote / 2 or 0.00001), "B": "0",
        }}
