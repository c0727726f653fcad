"""Decode what the Binance producer publishes (each event's ``data`` object: the exchange's own
bytes for trades, orjson's for the rest) into tuples the aggregators consume, or columns for a
batch of well-formed trades, turning anything unusable into a counted, kept dead letter.

Prices and quantities arrive as decimal strings and become float64 here: float64 keeps 15-16
significant digits, more than any Binance price or quantity has (at most ~8 decimals on values
below 1e9), and sums over a day of trades lose ~1e-12 relative, far below a tick. The exact
strings stay in the raw trades table, which a sink writes from the envelope itself.

The producer already validates frames; we check again, with the same rules
(``core.binance_limits``), because a processor must not trust a topic anyone can write to:
a ``NaN`` or negative price would silently poison a whole candle, and an id of 2**63 would stop
the processor at its int64 column, on Kafka at every restart. Decimals must be the plain
strings Binance sends (``float`` alone would take ``"1_000"``, ``" 1 "`` or ``"1e3"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import numpy as np
import orjson

from core.binance_limits import (
    INT64_MAX,
    MAX_TIME_MS,
    POSITIVE_DECIMAL,
    SIGNED_DECIMAL,
    SymbolCheck,
    all_positive_decimals,
)
from core.dead_letters import DeadLetters

_SYMBOLS = SymbolCheck()

_Id = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


class _TradeFields(msgspec.Struct, gc=False):
    """The fields of a trade or aggTrade the candles use, typed and range-checked in C while
    parsing (unknown fields are skipped, as the checked path ignores them). The decimal strings
    are matched in Python: msgspec's ``pattern`` constraint calls the same regex, slower. No
    cycles are possible, so the garbage collector skips them (~15 % of the decode's cost)."""

    e: str
    s: str
    p: str
    q: str
    T: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]
    m: bool
    t: _Id | None = None
    a: _Id | None = None
    f: _Id | None = None
    l: _Id | None = None  # noqa: E741 (Binance's name)


_decode_trade_fields = msgspec.json.Decoder(_TradeFields).decode


class _TradeOnly(msgspec.Struct, gc=False):
    """``_TradeFields`` of a ``trade`` event alone, for the batch path: msgspec checks the
    event name and the trade id's presence while parsing, and no aggTrade field is looked for
    (~10 % of the batch decode). An aggTrade, or a trade without ``t``, fails the parse and
    the batch takes the per-value path."""

    e: Literal["trade"]
    s: str
    p: str
    q: str
    T: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]
    m: bool
    t: _Id


_decode_trade_only = msgspec.json.Decoder(_TradeOnly).decode


class Trade(NamedTuple):
    """One trade or aggTrade, numbers parsed; a plain tuple so hot loops can unpack it.

    ``trade_id`` orders trades within a millisecond (``t``, or the aggregate id ``a``);
    ``first_trade_id``/``last_trade_id`` are ``t``/``t`` for a trade and ``f``/``l`` for an
    aggTrade, so candles report the exchange's trade ids in both cases.
    """

    symbol: str
    time_ms: int  # T: trade (exchange) time
    trade_id: int
    price: float
    qty: float
    buyer_is_maker: bool  # m; False means the taker bought
    first_trade_id: int
    last_trade_id: int


_new_tuple = tuple.__new__


class TickerUpdate(NamedTuple):
    """One 24hrTicker or bookTicker update with the numeric fields as floats.

    bookTicker carries no event time: the caller passes the envelope's ``event_time_ns``
    (the producer's receive time for that stream) as ``fallback_time_ms``.
    """

    event: str  # "24hrTicker" or "bookTicker"
    symbol: str
    time_ms: int
    update_id: int  # bookTicker ``u``; the ticker's last trade id ``L`` otherwise
    values: dict[str, float]


class DecodeError(ValueError):
    """A payload we cannot aggregate; ``kind`` is the dead-letter counter."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def load_object(value: bytes) -> dict[str, Any]:
    """One JSON object from ``value``; ``DecodeError`` (malformed_json, bad_type) otherwise."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise DecodeError("bad_type", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _decimal(obj: dict[str, Any], name: str, positive: bool) -> float:
    raw = obj[name]
    if type(raw) is not str:
        raise DecodeError("bad_type", f"{name} must be a decimal string, got {_short(raw)}")
    if not POSITIVE_DECIMAL(raw):
        raise DecodeError("bad_value", f"{name}={_short(raw)} is not a plain decimal")
    value = float(raw)
    if positive and not value > 0.0:
        raise DecodeError("bad_value", f"{name}={_short(raw)} is not positive")
    return value


def _signed(obj: dict[str, Any], name: str) -> float:
    raw = obj[name]
    if type(raw) is not str:
        raise DecodeError("bad_type", f"{name} must be a decimal string, got {_short(raw)}")
    if not SIGNED_DECIMAL(raw):
        raise DecodeError("bad_value", f"{name}={_short(raw)} is not a plain decimal")
    return float(raw)


def _int(obj: dict[str, Any], name: str, low: int = 0, high: int = INT64_MAX) -> int:
    raw = obj[name]
    if type(raw) is not int:
        raise DecodeError("bad_type", f"{name} must be an integer, got {_short(raw)}")
    if not low <= raw <= high:
        raise DecodeError("bad_value", f"{name}={raw} is outside {low}..{high}")
    return raw


def _symbol(obj: dict[str, Any]) -> str:
    symbol = obj["s"]
    problem = _SYMBOLS.problem(symbol)
    if problem is not None:
        raise DecodeError("bad_symbol" if type(symbol) is str else "bad_type", problem)
    return str(symbol)


def _short(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_trade(value: bytes) -> Trade:
    """A ``trade`` or ``aggTrade`` payload -> ``Trade``; ``DecodeError`` otherwise.

    A fast path parses, type-checks and range-checks a well-formed payload in one msgspec call
    and leaves Python the symbol, the decimal strings, the event and positivity;
    anything it does not accept goes through the checked path, which names the exact problem
    for the dead-letter store.
    """
    try:
        fields = _decode_trade_fields(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_trade_checked(load_object(value))
    symbol, p_raw, q_raw = fields.s, fields.p, fields.q
    if symbol in _SYMBOLS.good and POSITIVE_DECIMAL(p_raw) and POSITIVE_DECIMAL(q_raw):
        price, qty = float(p_raw), float(q_raw)
        if price > 0.0 and qty > 0.0:
            event, tid = fields.e, fields.t
            if event == "trade" and tid is not None:  # a tuple built in C: Trade() is Python
                return _new_tuple(Trade, (symbol, fields.T, tid, price, qty, fields.m, tid, tid))
            first, last, aid = fields.f, fields.l, fields.a
            if (event == "aggTrade" and aid is not None and first is not None
                    and last is not None and first <= last):  # fmt: skip
                return _new_tuple(Trade, (symbol, fields.T, aid, price, qty, fields.m, first, last))
    return _decode_trade_checked(load_object(value))


class TradeColumns(NamedTuple):
    """A batch of ``trade`` events (no aggTrades) as columns, in arrival order: what the candle
    stage's fast path folds with numpy and fills the trades table from. A trade's first and
    last trade ids are its ``trade_id``."""

    symbol: list[str]
    time_ms: np.ndarray  # int64, T
    trade_id: np.ndarray  # int64, t
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    buyer_is_maker: np.ndarray  # bool, m

    def trades(self) -> list[Trade]:
        """The same trades as tuples (the general path's form)."""
        ids = self.trade_id.tolist()
        return [
            Trade(s, t, i, p, q, m, i, i)
            for s, t, i, p, q, m in zip(self.symbol, self.time_ms.tolist(), ids,
                                        self.price.tolist(), self.qty.tolist(),
                                        self.buyer_is_maker.tolist(), strict=True)
        ]  # fmt: skip


def decode_trade_batch(values: Sequence[bytes], max_time_ms: int) -> TradeColumns | None:
    """The whole batch through ``decode_trade``'s fast path at once, as columns, or None when
    any value (an aggTrade, a new symbol, anything to refuse or a trade time above
    ``max_time_ms``) needs the per-value path, or there is none. Each accepted value gets
    exactly what ``decode_trade`` gives it (``TradeColumns.trades``); what is shared are the
    per-value calls: one msgspec loop (``_TradeOnly``), one regex for every decimal, the checks
    as set and min/max operations."""
    try:
        fields = [_decode_trade_only(v) for v in values]
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if not fields:
        return None
    times = [f.T for f in fields]
    if max(times) > max_time_ms:
        return None
    symbols = [f.s for f in fields]
    if not _SYMBOLS.good.issuperset(symbols):
        return None
    if not all_positive_decimals([f.p for f in fields] + [f.q for f in fields]):
        return None
    prices = [float(f.p) for f in fields]
    qtys = [float(f.q) for f in fields]
    if not (min(prices) > 0.0 and min(qtys) > 0.0):
        return None
    return TradeColumns(symbols, np.array(times, np.int64),
                        np.array([f.t for f in fields], np.int64),
                        np.array(prices, np.float64), np.array(qtys, np.float64),
                        np.array([f.m for f in fields], np.bool_))  # fmt: skip


def _decode_trade_checked(obj: dict[str, Any]) -> Trade:
    try:
        event = obj["e"]
        symbol = _symbol(obj)
        maker = obj["m"]
        if type(maker) is not bool:
            raise DecodeError("bad_type", f"m must be a boolean, got {_short(maker)}")
        price = _decimal(obj, "p", positive=True)
        qty = _decimal(obj, "q", positive=True)
        time_ms = _int(obj, "T", high=MAX_TIME_MS)
        if event == "trade":
            tid = _int(obj, "t")
            return Trade(symbol, time_ms, tid, price, qty, maker, tid, tid)
        if event == "aggTrade":
            aid, first, last = _int(obj, "a"), _int(obj, "f"), _int(obj, "l")
            if first > last:
                raise DecodeError("bad_value", f"aggTrade f={first} is above l={last}")
            return Trade(symbol, time_ms, aid, price, qty, maker, first, last)
    except KeyError as exc:
        raise DecodeError("missing_field", f"field {exc.args[0]!r} missing") from None
    raise DecodeError("unknown_event", f"expected trade or aggTrade, got e={_short(event)}")


_TICKER_FIELDS = ("c", "b", "B", "a", "A", "v", "q", "w", "o", "h", "l", "Q")
_BOOK_FIELDS = ("b", "B", "a", "A")


def decode_ticker(value: bytes, fallback_time_ms: int = 0) -> TickerUpdate:
    """A ``24hrTicker`` or ``bookTicker`` payload -> ``TickerUpdate``; ``DecodeError`` otherwise.

    Derived values the aggregates need (``spread`` = ask - bid, ``mid``) are added here once.
    """
    obj = load_object(value)
    try:
        symbol = _symbol(obj)
        event = obj.get("e", "bookTicker" if "u" in obj else None)
        if event == "24hrTicker":
            values = {name: _decimal(obj, name, positive=False) for name in _TICKER_FIELDS}
            values["p"] = _signed(obj, "p")
            values["P"] = _signed(obj, "P")
            values["n"] = float(_int(obj, "n"))
            time_ms, update_id = _int(obj, "E", high=MAX_TIME_MS), _int(obj, "L", low=-1)
        elif event == "bookTicker":
            values = {name: _decimal(obj, name, positive=False) for name in _BOOK_FIELDS}
            has_time = obj.get("E") is not None
            time_ms = _int(obj, "E", high=MAX_TIME_MS) if has_time else fallback_time_ms
            update_id = _int(obj, "u")
        else:
            raise DecodeError(
                "unknown_event", f"expected 24hrTicker or bookTicker, got {_short(event)}"
            )
    except KeyError as exc:
        raise DecodeError("missing_field", f"field {exc.args[0]!r} missing") from None
    bid, ask = values["b"], values["a"]
    values["spread"] = ask - bid
    values["mid"] = (ask + bid) / 2.0
    return TickerUpdate(event, symbol, time_ms, update_id, values)


def decode_trades(values: Iterable[bytes], dead_letters: DeadLetters) -> list[Trade]:
    """Decode a batch; bad payloads go to ``dead_letters`` (counted, kept, logged once)."""
    out: list[Trade] = []
    append = out.append
    for value in values:
        try:
            append(decode_trade(value))
        except DecodeError as exc:
            dead_letters.add(exc.kind, exc.reason, value)
    return out


def decode_tickers(
    items: Iterable[tuple[bytes, int]], dead_letters: DeadLetters
) -> list[TickerUpdate]:
    """Decode ``(value, fallback_time_ms)`` pairs; bad payloads go to ``dead_letters``."""
    out: list[TickerUpdate] = []
    for value, fallback in items:
        try:
            out.append(decode_ticker(value, fallback))
        except DecodeError as exc:
            dead_letters.add(exc.kind, exc.reason, value)
    return out
