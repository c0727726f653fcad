"""Decode what the Binance producer publishes on the depth topics into order-book inputs.

The producer validated every frame already; we check again because a processor must not trust a
topic anyone can write to (a ``NaN`` price or an unsorted snapshot would corrupt a whole book).
Anything unusable raises ``DecodeError`` with the dead-letter kind it counts under.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson

from processors.order_book import DepthDiff, DepthSnapshot, Level
from processors.trade_parsing import DecodeError

_INF = math.inf


def decode_depth(value: bytes, fallback_time_ms: int) -> DepthDiff | DepthSnapshot:
    """A ``depthUpdate`` becomes a diff; a ``depthSnapshot`` or ``depthPartial`` a snapshot.

    Snapshots and partial books carry no event time: ``fallback_time_ms`` (the envelope's event
    time, the producer's receive time) stands in.
    """
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed_json", str(exc)) from None
    if type(obj) is not dict:
        raise DecodeError("bad_type", "depth payload is not an object")
    event = obj.get("e")
    symbol = obj.get("s")
    if type(symbol) is not str or not symbol:
        raise DecodeError("missing_field", "depth payload has no symbol 's'")
    if event == "depthUpdate":
        first, final, e_time = obj.get("U"), obj.get("u"), obj.get("E")
        if type(first) is not int or type(final) is not int or type(e_time) is not int:
            raise DecodeError("bad_type", "depthUpdate needs integer U, u and E")
        if not 0 <= first <= final:
            raise DecodeError("bad_value", f"depthUpdate U={first} u={final}")
        return DepthDiff(
            symbol, first, final, e_time, _levels(obj.get("b"), True), _levels(obj.get("a"), True)
        )
    if event in ("depthSnapshot", "depthPartial"):
        last = obj.get("lastUpdateId")
        if type(last) is not int or last < 0:
            raise DecodeError("bad_type", f"{event} needs a non-negative integer lastUpdateId")
        bids = _levels(obj.get("bids"), False)
        asks = _levels(obj.get("asks"), False)
        if any(a[0] <= b[0] for a, b in itertools.pairwise(bids)) or any(
            b[0] <= a[0] for a, b in itertools.pairwise(asks)
        ):
            raise DecodeError("bad_value", f"{event} levels are not sorted best first")
        return DepthSnapshot(
            symbol, last, fallback_time_ms, bids, asks, partial=event == "depthPartial"
        )
    raise DecodeError("unknown_event", f"unknown depth event {str(event)[:40]!r}")


def _levels(raw: Any, zero_ok: bool) -> list[Level]:
    if type(raw) is not list:
        raise DecodeError("bad_type", "depth levels must be an array of [price, quantity]")
    out: list[Level] = []
    for level in raw:
        try:
            if type(level) is not list or type(level[0]) is not str or type(level[1]) is not str:
                raise TypeError
            price, qty = float(level[0]), float(level[1])
        except (TypeError, ValueError, IndexError):
            raise DecodeError("bad_value", f"level {str(level)[:60]} is not [price, qty]") from None
        if not (0 < price < _INF and 0 <= qty < _INF) or (qty == 0 and not zero_ok):
            raise DecodeError("bad_value", f"level {str(level)[:60]} out of range")
        out.append((price, qty))
    return out
