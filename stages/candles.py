"""The market stage: Binance trades and tickers in, raw trades + candles + ticker aggregates out.

Tables written (one HDF5 file): ``trades`` (every trade and aggTrade received, with its
transport metadata so loss, duplicates and per-hop latency can be computed from the file, and
whether it went into the candles), ``candles_<w>`` per window size,
``tickers_<w>`` (24hrTicker) and ``book_<w>`` (bookTicker) aggregates, ``late_trades`` and
``late_tickers`` for events behind the watermark, plus the sink's ``gaps`` and ``dead_letters``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.dead_letters import DeadLetters
from processors.candles import (
    CANDLE_DTYPE,
    DEFAULT_GRACE_MS,
    DEFAULT_WINDOWS,
    LATE_TRADE_DTYPE,
    CandleAggregator,
    CandleState,
)
from processors.tickers import (
    BOOK_TICKER_SPEC,
    LATE_TICKER_DTYPE,
    TICKER_SPEC,
    TickerAggregator,
    TickerState,
)
from processors.trade_parsing import (
    DecodeError,
    Trade,
    TradeColumns,
    decode_ticker,
    decode_trade,
    decode_trade_batch,
)
from processors.window_state import restore_windows, snapshot_windows
from processors.windowing import window_label
from stages.runner import Rows, Stage
from transports import Envelope

TRADE_TOPIC = "binance.trade"
AGG_TRADE_TOPIC = "binance.aggTrade"
TRADE_TOPICS = (TRADE_TOPIC, AGG_TRADE_TOPIC)
#: A trade stamped further ahead of this processor's clock is refused ("future_time"): one such
#: record written straight to a topic would push the watermark forward and make every later
#: trade late. The past is fine (replays of old recordings).
MAX_FUTURE_MS = 3_600_000
TICKER_TOPIC = "binance.ticker"
BOOK_TOPIC = "binance.bookTicker"

#: One row per trade as received: the parsed trade plus where and when it travelled.
TRADES_DTYPE = np.dtype(
    [
        ("symbol", "S24"),
        ("time_ms", "i8"),  # exchange trade time T
        ("trade_id", "i8"),
        ("price", "f8"),
        ("qty", "f8"),
        ("buyer_is_maker", "?"),
        ("event_time_ns", "i8"),  # exchange event time E, as published
        ("publish_time_ns", "i8"),  # producer handed it to the transport
        ("receive_time_ns", "i8"),  # this processor got it
        ("producer_id", "S64"),
        ("seq", "i8"),
        ("partition", "i4"),
        ("offset", "i8"),
        ("aggregate", "?"),  # an aggTrade: trade_id is its aggregate id ``a``
        ("in_candles", "?"),  # folded into the candles (see ``TradeStreamChoice``)
    ]
)
_SYMBOL_BYTES = TRADES_DTYPE["symbol"].itemsize
_PRODUCER_BYTES = TRADES_DTYPE["producer_id"].itemsize


def _fits(values: set[str], width: int) -> bool:
    return all(v.isascii() and len(v) <= width for v in values)


class TradeStreamChoice:
    """Candles come from one trade stream per symbol, with no fill counted twice or dropped.

    Binance's ``trade`` stream has one event per fill; ``aggTrade`` merges the fills of one
    taker order at one price and says which (trade ids ``f``..``l``). With both on (the
    producer's default), folding both into the candles counted every fill twice. The rule:
    ``trade`` is the candle source for a symbol as soon as one of its trades arrives, and its
    aggTrades are then left out. Until then (a processor whose first batch holds aggTrades
    only, or a producer sending aggTrade alone) aggTrades are folded, and the highest trade id
    they covered is kept, so the trades of those same fills are skipped when the ``trade``
    stream takes over: the switch is exact by trade id, whatever order the two topics arrive
    in. The ``trades`` table keeps every row and says in ``in_candles`` which ones counted.
    """

    def __init__(self) -> None:
        #: symbol -> highest trade id folded from aggTrades (-1: none); absent: no decision yet
        self._agg_covered: dict[str, int] = {}
        self._trade_stream: set[str] = set()

    def choose(self, trades: list[Trade], aggregate: list[bool]) -> list[bool]:
        """For each trade (``aggregate``: it came from the aggTrade stream), fold it?"""
        covered, from_trades = self._agg_covered, self._trade_stream
        if not covered and not any(aggregate):  # trades only, no aggTrade ever folded: all in
            from_trades.update({trade[0] for trade in trades})
            return [True] * len(trades)
        out: list[bool] = []
        for trade, is_agg in zip(trades, aggregate, strict=True):
            symbol = trade.symbol
            if not is_agg:
                from_trades.add(symbol)
                out.append(trade.trade_id > covered.get(symbol, -1))
            elif symbol in from_trades:
                out.append(False)
            else:
                last = covered.get(symbol, -1)
                out.append(trade.last_trade_id > last)
                if trade.last_trade_id > last:
                    covered[symbol] = trade.last_trade_id
        return out

    def trades_only(self, symbols: list[str]) -> bool:
        """``choose`` for a batch of ``trade`` events that all go in: True (and noted) unless
        an aggTrade was ever folded, in which case ``choose`` decides trade by trade."""
        if self._agg_covered:
            return False
        self._trade_stream.update(symbols)
        return True

    def snapshot(self) -> dict[str, Any]:
        return {"agg_covered": self._agg_covered, "trade_stream": sorted(self._trade_stream)}

    def restore(self, data: dict[str, Any]) -> None:
        self._agg_covered = {str(k): int(v) for k, v in data.get("agg_covered", {}).items()}
        self._trade_stream = {str(s) for s in data.get("trade_stream", ())}


def trade_rows(
    trades: list[Trade], envs: list[Envelope], aggregate: list[bool] | None = None,
    in_candles: list[bool] | None = None,
) -> Rows:
    """The ``trades`` rows of one batch, built column by column (cheaper than building row tuples).

    Symbols and producer ids are few per batch: if every distinct one is ASCII and fits its
    column, numpy can fill the byte columns directly; otherwise the rows go as tuples through the
    sink, which cuts values at a UTF-8 boundary and counts the cuts.
    """
    # one list comprehension per column: ~0.15 us/row; zip(*batch) transposing is ~1 us/row
    n = len(trades)
    columns = {
        "symbol": [t[0] for t in trades], "time_ms": [t[1] for t in trades],
        "trade_id": [t[2] for t in trades], "price": [t[3] for t in trades],
        "qty": [t[4] for t in trades], "buyer_is_maker": [t[5] for t in trades],
        **_envelope_columns(envs),
        "aggregate": aggregate if aggregate is not None else [False] * n,
        "in_candles": in_candles if in_candles is not None else [True] * n,
    }  # fmt: skip
    if not _fits_bytes(columns):
        return list(zip(*(columns[name] for name in TRADES_DTYPE.names or ()), strict=True))
    return _filled(columns, n)


def trade_column_rows(cols: TradeColumns, envs: list[Envelope]) -> Rows:
    """``trade_rows`` of a batch of ``trade`` events given as columns (all in the candles)."""
    columns = {
        "symbol": cols.symbol, "time_ms": cols.time_ms, "trade_id": cols.trade_id,
        "price": cols.price, "qty": cols.qty, "buyer_is_maker": cols.buyer_is_maker,
        **_envelope_columns(envs), "aggregate": False, "in_candles": True,
    }  # fmt: skip
    if not _fits_bytes(columns):
        return trade_rows(cols.trades(), envs)
    return _filled(columns, len(envs))


def _envelope_columns(envs: list[Envelope]) -> dict[str, list[Any]]:
    """The trades table's columns that come from the transport, one list each."""
    return {
        "event_time_ns": [e.event_time_ns for e in envs],
        "publish_time_ns": [e.publish_time_ns for e in envs],
        "receive_time_ns": [e.receive_time_ns for e in envs],
        "producer_id": [e.producer_id for e in envs],
        "seq": [e.seq for e in envs],
        "partition": [e.partition for e in envs],
        "offset": [e.offset for e in envs],
    }


def _fits_bytes(columns: Mapping[str, Any]) -> bool:
    return _fits(set(columns["symbol"]), _SYMBOL_BYTES) and _fits(
        set(columns["producer_id"]), _PRODUCER_BYTES
    )


def _filled(columns: Mapping[str, Any], n: int) -> np.ndarray:
    rows = np.empty(n, TRADES_DTYPE)
    for name in TRADES_DTYPE.names or ():
        rows[name] = columns[name]
    return rows


class CandleStage(Stage):
    name = "candles"
    topics = (*TRADE_TOPICS, TICKER_TOPIC, BOOK_TOPIC)

    def __init__(
        self,
        dead_letters: DeadLetters,
        windows: Sequence[str] = DEFAULT_WINDOWS,
        grace_ms: int = DEFAULT_GRACE_MS,
        store_trades: bool = True,
    ) -> None:
        super().__init__(dead_letters)
        self.candles = CandleAggregator(windows, grace_ms)
        self.tickers = TickerAggregator(TICKER_SPEC, windows, grace_ms)
        self.books = TickerAggregator(BOOK_TICKER_SPEC, windows, grace_ms)
        self.labels = [window_label(size) for size in self.candles.sizes_ms]
        self.store_trades = store_trades
        self.trade_streams = TradeStreamChoice()

    def tables(self) -> Mapping[str, np.dtype]:
        out: dict[str, np.dtype] = {"trades": TRADES_DTYPE, "late_trades": LATE_TRADE_DTYPE}
        out["late_tickers"] = LATE_TICKER_DTYPE
        for label in self.labels:
            out[f"candles_{label}"] = CANDLE_DTYPE
            out[f"tickers_{label}"] = self.tickers.dtype
            out[f"book_{label}"] = self.books.dtype
        return out

    def process(self, batch: list[Envelope]) -> Mapping[str, Rows]:
        trades: list[Trade] = []
        trade_envs: list[Envelope] = []
        tickers = []
        books = []
        dead = self.dead_letters
        add_trade, add_env = trades.append, trade_envs.append
        future_limit_ms = time.time_ns() // 1_000_000 + MAX_FUTURE_MS
        if batch and all(env.topic == TRADE_TOPIC for env in batch):
            cols = decode_trade_batch([env.value for env in batch], future_limit_ms)
            if cols is not None:  # the common batch: trades only, every one well-formed
                if self.trade_streams.trades_only(cols.symbol):
                    return self._trade_columns(cols, batch)
                trades, trade_envs, batch = cols.trades(), batch, []
        for env in batch:
            topic = env.topic
            try:
                if topic in TRADE_TOPICS:
                    trade = decode_trade(env.value)
                    if trade.time_ms > future_limit_ms:
                        raise DecodeError(
                            "future_time", f"trade time T={trade.time_ms} is over 1 h ahead"
                        )
                    add_trade(trade)
                    add_env(env)
                elif topic == TICKER_TOPIC:
                    tickers.append(decode_ticker(env.value, env.event_time_ns // 1_000_000))
                elif topic == BOOK_TOPIC:
                    books.append(decode_ticker(env.value, env.event_time_ns // 1_000_000))
            except DecodeError as exc:
                dead.add(exc.kind, exc.reason, env.value, source=f"candles:{topic}")
        out: dict[str, Rows] = {}
        aggregate = [env.topic == AGG_TRADE_TOPIC for env in trade_envs]
        in_candles = self.trade_streams.choose(trades, aggregate)
        if trades and self.store_trades:
            out["trades"] = trade_rows(trades, trade_envs, aggregate, in_candles)
        if trades:
            if not all(in_candles):
                trades = [t for t, use in zip(trades, in_candles, strict=True) if use]
            result = self.candles.add_batch(trades)
            self._split_by_window(out, "candles", result.candles)
            if result.late:
                out["late_trades"] = result.late
        ticker_streams = ((self.tickers, tickers, "tickers"), (self.books, books, "book"))
        for agg, updates, prefix in ticker_streams:
            if updates:
                ticker_batch = agg.add_batch(updates)
                self._split_by_window(out, prefix, ticker_batch.rows)
                if ticker_batch.late:
                    late = out.setdefault("late_tickers", [])
                    assert isinstance(late, list)
                    late.extend(ticker_batch.late)
        return out

    def _trade_columns(self, cols: TradeColumns, envs: list[Envelope]) -> dict[str, Rows]:
        """``process`` of a batch of well-formed ``trade`` events, all going into the candles:
        the same rows, folded with numpy."""
        out: dict[str, Rows] = {}
        if self.store_trades:
            out["trades"] = trade_column_rows(cols, envs)
        result = self.candles.add_columns(cols)
        self._split_by_window(out, "candles", result.candles)
        if result.late:
            out["late_trades"] = result.late
        return out

    def finish(self) -> Mapping[str, Rows]:
        out: dict[str, Rows] = {}
        self._split_by_window(out, "candles", self.candles.flush().candles)
        self._split_by_window(out, "tickers", self.tickers.flush().rows)
        self._split_by_window(out, "book", self.books.flush().rows)
        return out

    def snapshot(self) -> bytes:
        return json.dumps(
            {
                "candles": snapshot_windows(self.candles, CandleState),
                "tickers": snapshot_windows(self.tickers, TickerState),
                "book": snapshot_windows(self.books, TickerState),
                "trade_streams": self.trade_streams.snapshot(),
            }
        ).encode()

    def restore(self, state: bytes) -> None:
        if not state:
            return
        data = json.loads(state)
        restore_windows(self.candles, CandleState, data["candles"])
        restore_windows(self.tickers, TickerState, data["tickers"])
        restore_windows(self.books, TickerState, data["book"])
        self.trade_streams.restore(data.get("trade_streams", {}))

    @staticmethod
    def _split_by_window(out: dict[str, Rows], prefix: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            label = row["window"]
            table = out.setdefault(f"{prefix}_{label}", [])
            assert isinstance(table, list)
            table.append(row)
