"""Topic names and stream naming for Binance data; the one place downstream stages import them.

Processors subscribe by these constants, so renaming a topic is a one-line change here.
"""

from __future__ import annotations

import re

#: Binance Spot's market-data websocket, where these streams are read from.
STREAM_ENDPOINT = "wss://stream.binance.com:9443"

TRADE = "binance.trade"
AGG_TRADE = "binance.aggTrade"
KLINE = "binance.kline"
TICKER = "binance.ticker"
MINI_TICKER = "binance.miniTicker"
BOOK_TICKER = "binance.bookTicker"
#: Diff depth updates and the REST snapshots the live producer interleaves with them (one topic,
#: keyed by symbol, so a snapshot keeps its place among the diffs it is synchronised with).
DEPTH = "binance.depth"
DEPTH_PARTIAL = "binance.depthPartial"

#: Binance's event type (``e``; bookTicker has none, we name it "bookTicker") -> topic.
TOPIC_BY_EVENT: dict[str, str] = {
    "trade": TRADE,
    "aggTrade": AGG_TRADE,
    "kline": KLINE,
    "24hrTicker": TICKER,
    "24hrMiniTicker": MINI_TICKER,
    "bookTicker": BOOK_TICKER,
    "depthUpdate": DEPTH,
    "depthSnapshot": DEPTH,  # ours: a REST snapshot, published as a message (no Binance event)
    "depthPartial": DEPTH_PARTIAL,  # ours: partial-book payloads carry no event type
}
ALL_TOPICS: tuple[str, ...] = tuple(dict.fromkeys(TOPIC_BY_EVENT.values()))

#: Stream-name suffix (after ``<symbol>@``) -> event type the stream carries.
EVENT_BY_STREAM_TYPE: dict[str, str] = {
    "trade": "trade",
    "aggTrade": "aggTrade",
    "ticker": "24hrTicker",
    "miniTicker": "24hrMiniTicker",
    "bookTicker": "bookTicker",
    "depth": "depthUpdate",
    "depth@100ms": "depthUpdate",
    "depth@1000ms": "depthUpdate",
    **{
        f"depth{levels}{speed}": "depthPartial"
        for levels in (5, 10, 20)
        for speed in ("", "@100ms", "@1000ms")
    },
}
KLINE_INTERVALS: tuple[str, ...] = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)
#: Binance symbols are upper-case alphanumerics; stream names use them lower-cased.
SYMBOL_RE = re.compile(r"^[a-z0-9]{2,20}$")


def event_for_stream_type(stream_type: str) -> str:
    """The event type of a stream suffix like ``trade`` or ``kline_1m``; ValueError if unknown."""
    if stream_type.startswith("kline_"):
        if stream_type[6:] in KLINE_INTERVALS:
            return "kline"
        raise ValueError(
            f"unknown kline interval {stream_type[6:]!r}; accepted: {', '.join(KLINE_INTERVALS)}"
        )
    try:
        return EVENT_BY_STREAM_TYPE[stream_type]
    except KeyError:
        accepted = ", ".join([*EVENT_BY_STREAM_TYPE, "kline_<interval>"])
        raise ValueError(f"unknown stream type {stream_type!r}; accepted: {accepted}") from None


def is_diff_depth_stream(stream: str) -> bool:
    """``<symbol>@depth``, ``@depth@100ms`` or ``@depth@1000ms``: diffs that need a snapshot."""
    return stream.partition("@")[2] in ("depth", "depth@100ms", "depth@1000ms")


def stream_names(symbols: list[str], stream_types: list[str]) -> list[str]:
    """Every ``<symbol>@<type>`` combination, validated; ValueError names the bad part."""
    out = []
    for sym in symbols:
        low = sym.lower()
        if not SYMBOL_RE.match(low):
            raise ValueError(f"bad symbol {sym!r}: expected 2-20 letters/digits like btcusdt")
        for st in stream_types:
            event_for_stream_type(st)
            out.append(f"{low}@{st}")
    return out
