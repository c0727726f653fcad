"""The exchange side of Binance depth for the emulator: books, diff and partial streams, REST.

Written apart from the producer's order-book code on purpose: a test double that shared the
code under test could not catch its bugs. Each symbol's book is a dict of price ticks to
quantities; every 100 ms it changes a heavy-tailed number of levels around a drifting mid price
(never crossing), and the wire frames are built from those changes as Binance builds them:

- ``<s>@depth@100ms``: the tick's changes, ``U`` = first update id, ``u`` = last;
- ``<s>@depth`` / ``<s>@depth@1000ms``: ten ticks merged, last quantity per price wins;
- ``<s>@depth<N>[@100ms|@1000ms]``: the top N levels and ``lastUpdateId`` (no ``e``/``E``/``s``);
- ``GET /api/v3/depth?symbol=S&limit=N``: the book as of now (``lastUpdateId``, ``bids``,
  ``asks``), limit 1..5000 (default 100), Binance's error shapes for a bad symbol or limit.

The same book can instead be driven by a recording (``apply_recorded``): recorded diffs are
applied as they are replayed, a recorded REST snapshot resets the levels (and the diffs replayed
since its ``lastUpdateId`` are applied again), so REST answers match what was replayed.

Faults: ``lose_diffs`` (the next diff frames of a symbol are not sent while the book moves on:
clients see ``U`` jump past ``u + 1``), ``freeze`` (the books stop changing, so a test can
compare a client's book with this one).
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

TICKS_PER_SLOW_FRAME = 10  # 100 ms ticks in a 1000 ms frame
MAX_LEVELS = 400  # per side: a REST snapshot of limit 1000 holds a whole emulated book
DEFAULT_LIMIT = 100
MAX_LIMIT = 5000
_PARTIAL = re.compile(r"depth(5|10|20)(@100ms|@1000ms)?").fullmatch
DIFF_STREAMS = ("depth", "depth@100ms", "depth@1000ms")


def is_depth_stream(kind: str) -> bool:
    return kind in DIFF_STREAMS or _PARTIAL(kind) is not None


@dataclass(slots=True)
class _Book:
    symbol: str  # upper case
    tick_size: float
    mid: int
    update_id: int
    #: price -> quantity, both as the exchange writes them (one format per symbol)
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    merged: dict[tuple[str, str], str] = field(default_factory=dict)  # the 1000 ms frame
    merged_first: int = 0
    merged_lost: bool = False
    ticks: int = 0
    lose: int = 0  # diff frames still to lose (fault)
    recent: deque[tuple[int, int, list[Any], list[Any]]] = field(
        default_factory=lambda: deque(maxlen=2000)
    )  # recorded diffs (U, u, b, a), re-applied after a recorded snapshot

    def price(self, ticks: int) -> str:
        return f"{ticks * self.tick_size:.8f}"


class EmulatedDepth:
    """Books for ``symbols`` (lower case); frames come back as (stream, raw bytes) pairs."""

    def __init__(self, symbols: tuple[str, ...], seed: int = 1, synthetic: bool = True) -> None:
        self.rng = random.Random(seed * 31 + 5)
        self.books: dict[str, _Book] = {}
        self.frozen = False
        self.rest_requests = 0
        self.diffs_lost = 0
        #: symbols whose whole book is known: synthetic ones, or a recorded snapshot was replayed
        self.known: set[str] = set(symbols) if synthetic else set()
        for i, name in enumerate(symbols):
            start = {"btcusdt": 6_000_000, "ethusdt": 260_000}.get(name, 10_000 + 997 * i)
            book = _Book(name.upper(), 0.01, start, 40_000_000_000 + i * 1_000_000_000)
            self.books[name] = book
            if not synthetic:  # a recording fills it
                book.update_id = 0
                continue
            for k in range(150):
                book.bids[book.price(start - k)] = self._qty()
                book.asks[book.price(start + 1 + k)] = self._qty()

    # -- faults ----------------------------------------------------------------------------
    def lose_diffs(self, symbol: str | None = None, frames: int = 1) -> None:
        for name, book in self.books.items():
            if symbol is None or symbol.lower() == name:
                book.lose += frames

    def freeze(self, frozen: bool = True) -> None:
        self.frozen = frozen

    # -- synthetic market ------------------------------------------------------------------
    def tick(self, now_ms: int, wanted: set[str]) -> list[tuple[str, bytes]]:
        """Move every book by one 100 ms step; frames for the ``wanted`` streams."""
        if self.frozen:
            return []
        out: list[tuple[str, bytes]] = []
        for name, book in self.books.items():
            first = book.update_id + 1
            changes = self._move(book)
            book.update_id += len(changes) + self.rng.randrange(3)
            book.ticks += 1
            lost = book.lose > 0
            if lost:
                book.lose -= 1
                self.diffs_lost += 1
            stream = f"{name}@depth@100ms"
            if stream in wanted and not lost:
                out.append((stream, self._diff(book, first, changes, now_ms, stream)))
            if not book.merged:
                book.merged_first = first
            book.merged.update(changes)
            book.merged_lost = book.merged_lost or lost
            slow = book.ticks % TICKS_PER_SLOW_FRAME == 0
            if slow:
                merged = sorted(book.merged.items())
                for kind in ("depth", "depth@1000ms"):
                    stream = f"{name}@{kind}"
                    if stream in wanted and not book.merged_lost:
                        out.append(
                            (stream, self._diff(book, book.merged_first, merged, now_ms, stream))
                        )
                book.merged.clear()
                book.merged_lost = False
            for levels in (5, 10, 20):
                for speed in ("", "@100ms", "@1000ms"):
                    stream = f"{name}@depth{levels}{speed}"
                    if stream in wanted and (slow or speed == "@100ms"):
                        body = orjson.dumps(self.snapshot(name, levels))
                        out.append((stream, b'{"stream":"%s","data":%s}' % (stream.encode(), body)))
        return out

    def _qty(self) -> str:
        return f"{max(round(self.rng.lognormvariate(-1.2, 1.5), 5), 0.00001):.8f}"

    def _move(self, book: _Book) -> list[tuple[tuple[str, str], str]]:
        rng = self.rng
        changes: dict[tuple[str, str], str] = {}
        step = round(rng.gauss(0, 2))
        book.mid += step
        mid = book.mid
        mid_price = mid * book.tick_size
        if step < 0:  # the market moved through levels: they go, the book never crosses
            for p in [p for p in book.bids if float(p) > mid_price + book.tick_size / 2]:
                changes[("b", p)] = "0.00000000"
        if step > 0:
            for p in [p for p in book.asks if float(p) < mid_price + book.tick_size / 2]:
                changes[("a", p)] = "0.00000000"
        changes[("b", book.price(mid))] = self._qty()
        changes[("a", book.price(mid + 1))] = self._qty()
        n = min(1000, max(1, round(rng.lognormvariate(math.log(12), 1.0))))
        for _ in range(n):
            side = "b" if rng.random() < 0.5 else "a"
            levels = book.bids if side == "b" else book.asks
            depth = int(rng.expovariate(1 / max(20.0, n / 3)))
            price = book.price(mid - depth if side == "b" else mid + 1 + depth)
            drop = price in levels and rng.random() < (0.6 if len(levels) > MAX_LEVELS else 0.25)
            changes[(side, price)] = "0.00000000" if drop else self._qty()
        for (side, price), qty in changes.items():
            levels = book.bids if side == "b" else book.asks
            if qty == "0.00000000":
                levels.pop(price, None)
            else:
                levels[price] = qty
        return list(changes.items())

    def _diff(
        self,
        book: _Book,
        first: int,
        changes: list[tuple[tuple[str, str], str]],
        now_ms: int,
        stream: str,
    ) -> bytes:
        data = {
            "e": "depthUpdate", "E": now_ms, "s": book.symbol, "U": first, "u": book.update_id,
            "b": [[p, q] for (side, p), q in changes if side == "b"],
            "a": [[p, q] for (side, p), q in changes if side == "a"],
        }  # fmt: skip
        return orjson.dumps({"stream": stream, "data": data})

    # -- REST ------------------------------------------------------------------------------
    def snapshot(self, name: str, limit: int) -> dict[str, Any]:
        book = self.books[name]
        bids = sorted(book.bids, key=float, reverse=True)[:limit]
        asks = sorted(book.asks, key=float)[:limit]
        return {
            "lastUpdateId": book.update_id,
            "bids": [[p, book.bids[p]] for p in bids],
            "asks": [[p, book.asks[p]] for p in asks],
        }

    def rest_depth(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for ``GET /api/v3/depth`` with Binance's error codes."""
        self.rest_requests += 1
        symbol = (query.get("symbol") or [""])[0]
        if not symbol:
            return 400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was "
                         "empty/null, or malformed."}
        if symbol.lower() not in self.books or symbol != symbol.upper():
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        raw_limit = (query.get("limit") or [str(DEFAULT_LIMIT)])[0]
        try:
            limit = int(raw_limit)
        except ValueError:
            return 400, {"code": -1100, "msg": "Illegal characters found in parameter 'limit'; "
                         "legal range is '^[0-9]{1,20}$'."}
        if limit < 1:
            return 400, {"code": -1128, "msg": "Combination of optional parameters invalid."}
        return 200, self.snapshot(symbol.lower(), min(limit, MAX_LIMIT))

    # -- recordings ------------------------------------------------------------------------
    def apply_recorded(self, stream: str, data: dict[str, Any]) -> bool:
        """Keep the book in step with a recorded frame; False if it is not a depth frame to send
        (a recorded REST snapshot: it resets the book and is not a websocket frame)."""
        name, _, kind = stream.partition("@")
        book = self.books.get(name)
        if book is None:
            return True
        if kind == "depthSnapshot":
            last = data.get("lastUpdateId")
            if type(last) is int:
                book.bids = {p: q for p, q, *_ in data.get("bids", [])}
                book.asks = {p: q for p, q, *_ in data.get("asks", [])}
                book.update_id = last
                self.known.add(name)
                for first, final, bids, asks in list(book.recent):
                    if final > last:
                        self._set(book, first, final, bids, asks)
            return False
        if kind in DIFF_STREAMS and data.get("e") == "depthUpdate":
            first, final = data.get("U"), data.get("u")
            if type(first) is int and type(final) is int and final > book.update_id:
                bids, asks = data.get("b", []), data.get("a", [])
                book.recent.append((first, final, bids, asks))
                self._set(book, first, final, bids, asks)
        return True

    @staticmethod
    def _set(book: _Book, first: int, final: int, bids: list[Any], asks: list[Any]) -> None:
        for levels, changes in ((book.bids, bids), (book.asks, asks)):
            for price, qty, *_ in changes:
                if float(qty) == 0:
                    levels.pop(price, None)
                else:
                    levels[price] = qty
        book.update_id = max(book.update_id, final)

    # -- for tests: the book as numbers ----------------------------------------------------
    def levels(self, name: str) -> tuple[int, dict[float, float], dict[float, float]]:
        book = self.books[name.lower()]
        return (
            book.update_id,
            {float(p): float(q) for p, q in book.bids.items()},
            {float(p): float(q) for p, q in book.asks.items()},
        )
