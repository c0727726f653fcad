"""Validate Binance depth frames: diff updates, partial books and REST snapshots.

Three shapes share one topic family:

- ``<symbol>@depth[@100ms|@1000ms]``: ``{"e":"depthUpdate","E","s","U","u","b","a"}``;
- ``<symbol>@depth<5|10|20>[@100ms|@1000ms]``: ``{"lastUpdateId","bids","asks"}``, no event type,
  no symbol, no event time: the symbol comes from the combined-stream name (a raw ``/ws``
  payload cannot say which symbol it is for and is refused);
- ``<symbol>@depthSnapshot``: not a Binance stream but how the live producer records and
  replays the REST answer of ``/api/v3/depth`` (same payload as a partial book), so a snapshot
  takes the one path every frame takes (record, validate, publish).

Levels are ``[price, quantity]`` pairs of plain decimal strings, checked like every other price:
a price must be positive, a quantity non-negative (zero removes a level in a diff). Partial books
and snapshots must be sorted (bids descending, asks ascending), as the exchange sends them, since
a book consumer relies on it. What is published keeps Binance's field names; the two payloads
without an event type get ``e`` (``depthPartial`` / ``depthSnapshot``) and ``s`` from the stream
name, so every message on the depth topics says what and whose it is.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from producers.binance.schema import MarketEvent, ValidationError
from producers.binance.topics import TOPIC_BY_EVENT

#: Stream-name suffix under which the live producer records a REST depth snapshot.
SNAPSHOT_STREAM = "depthSnapshot"
#: REST snapshots carry up to 5000 levels a side (~320 KB); diff frames stay under 64 KiB.
MAX_SNAPSHOT_FRAME_BYTES = 1 << 20
MAX_SNAPSHOT_LEVELS = 5000

_POS_DECIMAL = re.compile(r"\d{1,30}(?:\.\d{1,30})?").fullmatch
_PARTIAL = re.compile(r"depth(5|10|20)(?:@100ms|@1000ms)?").fullmatch
_DIFF_STREAMS = ("depth", "depth@100ms", "depth@1000ms")


def is_snapshot_frame(raw: bytes | str) -> bool:
    """Cheap look at the stream name, before parsing: may this frame use the snapshot limit?"""
    head = raw[:80]
    if isinstance(head, str):
        return '@depthSnapshot"' in head and head.startswith('{"stream":"')
    return b'@depthSnapshot"' in head and head.startswith(b'{"stream":"')


def parse_depth_update(
    stream: str | None, data: dict[str, Any], recv_ms: int, max_skew_ms: int
) -> MarketEvent:
    """A ``depthUpdate`` diff, checked field by field; raises ``ValidationError``."""
    for name in ("E", "s", "U", "u", "b", "a"):
        if data.get(name) is None:
            raise ValidationError("missing_field", f"depthUpdate: missing {name!r}")
    e_time, symbol, first, final = data["E"], data["s"], data["U"], data["u"]
    for name, value in (("E", e_time), ("U", first), ("u", final)):
        if type(value) is not int:
            raise ValidationError("bad_type", f"depthUpdate.{name} must be an integer")
        if value < 0:
            raise ValidationError("bad_value", f"depthUpdate.{name}={value} is negative")
    if type(symbol) is not str:
        raise ValidationError("bad_type", "depthUpdate.s must be a string")
    if first > final:
        raise ValidationError("bad_value", f"depthUpdate: U={first} is after u={final}")
    if abs(e_time - recv_ms) > max_skew_ms:
        raise ValidationError(
            "stale_timestamp", f"E={e_time} is {e_time - recv_ms} ms from receive time"
        )
    unknown = check_levels(data["b"], "depthUpdate.b", allow_zero_qty=True)
    unknown += check_levels(data["a"], "depthUpdate.a", allow_zero_qty=True)
    if stream is not None:
        symbol_part, _, kind = stream.partition("@")
        if symbol_part != symbol.lower():
            raise ValidationError("stream_mismatch", f"stream {stream!r} carries symbol {symbol!r}")
        if kind not in _DIFF_STREAMS:
            raise ValidationError("stream_mismatch", f"stream {stream!r} carries depthUpdate")
    unknown += len(data) - 7
    return MarketEvent(
        stream, "depthUpdate", TOPIC_BY_EVENT["depthUpdate"], symbol, data, e_time, unknown
    )


def parse_depth_book(stream: str | None, data: dict[str, Any]) -> MarketEvent:
    """A partial-book frame or a recorded REST snapshot (``lastUpdateId``, ``bids``, ``asks``)."""
    if stream is None:
        raise ValidationError(
            "missing_field", "partial book depth without a combined-stream name has no symbol"
        )
    symbol_part, _, kind = stream.partition("@")
    if kind == SNAPSHOT_STREAM:
        event, max_levels = "depthSnapshot", MAX_SNAPSHOT_LEVELS
    else:
        match = _PARTIAL(kind)
        if match is None:
            raise ValidationError("stream_mismatch", f"stream {stream!r} carries a partial book")
        event, max_levels = "depthPartial", int(match.group(1))
    if not symbol_part or not symbol_part.isascii() or not symbol_part.isalnum():
        raise ValidationError("bad_value", f"stream {stream!r} names no symbol")
    last = data.get("lastUpdateId")
    if type(last) is not int:
        raise ValidationError("bad_type", f"{event}.lastUpdateId must be an integer")
    if last < 0:
        raise ValidationError("bad_value", f"{event}.lastUpdateId={last} is negative")
    unknown = 0
    for side, descending in (("bids", True), ("asks", False)):
        levels = data.get(side)
        if levels is None:
            raise ValidationError("missing_field", f"{event}: missing {side!r}")
        where = f"{event}.{side}"
        unknown += check_levels(levels, where, allow_zero_qty=False)
        if len(levels) > max_levels:
            raise ValidationError("bad_value", f"{where} has {len(levels)} levels > {max_levels}")
        _check_sorted(levels, where, descending)
    symbol = symbol_part.upper()
    unknown += len(data) - 3
    published = {"e": event, "s": symbol, **data}
    return MarketEvent(stream, event, TOPIC_BY_EVENT[event], symbol, published, None, unknown)


def check_levels(levels: Any, where: str, *, allow_zero_qty: bool) -> int:
    """Every level a ``[price, qty]`` pair of decimal strings; returns extra elements seen."""
    if type(levels) is not list:
        raise ValidationError("bad_type", f"{where} must be an array of [price, quantity]")
    extra = 0
    pos_decimal = _POS_DECIMAL
    for level in levels:
        if type(level) is not list or len(level) < 2:
            raise ValidationError("bad_type", f"{where}: level {level!r:.60} is not [price, qty]")
        price, qty = level[0], level[1]
        if type(price) is not str or type(qty) is not str:
            raise ValidationError("bad_type", f"{where}: price and quantity must be strings")
        if not pos_decimal(price) or not pos_decimal(qty):
            raise ValidationError(
                "bad_value", f"{where}: level [{price[:40]!r}, {qty[:40]!r}] not decimals"
            )
        if not price.strip("0.") or (not allow_zero_qty and not qty.strip("0.")):
            raise ValidationError("bad_value", f"{where}: zero in level [{price!r}, {qty!r}]")
        if len(level) > 2:
            extra += 1  # Binance once sent a third, ignored element
    return extra


def _check_sorted(levels: list[list[str]], where: str, descending: bool) -> None:
    prices = [float(level[0]) for level in levels]
    for a, b in itertools.pairwise(prices):
        if (a <= b) if descending else (a >= b):
            order = "descending" if descending else "ascending"
            raise ValidationError("bad_value", f"{where} prices are not strictly {order}")
