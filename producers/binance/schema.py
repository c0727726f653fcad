"""Parse and validate one Binance websocket frame against the real field names and types.

Why this strictness: a processor downstream aggregates prices into candles; one ``"NaN"`` or a
negative quantity would silently poison a whole candle. So every frame is checked here, at the
edge, and anything wrong becomes a ``ValidationError`` with a ``kind`` the dead-letter store
counts (``malformed_json``, ``invalid_utf8``, ``oversize``, ``unknown_event``, ``missing_field``,
``bad_type``, ``bad_value``, ``stale_timestamp``, ``stream_mismatch``).

Prices and quantities stay *strings* in what we publish (lossless: ``"0.00067000"`` keeps the
exchange's exact decimal and tick size). We only check here that they are finite, non-negative
plain decimals (no exponent, NaN, inf, sign). Processors convert them to float64 when they
aggregate: float64 carries 15-17 significant digits, more than any Binance price/quantity
(at most ~8 decimals on values below 1e9), and a candle's OHLC/volume need speed, not decimal
arithmetic; sums of many float quantities lose at most ~1e-12 relative, far below tick size.

What is published is the exchange's own bytes of the event object, not a re-serialization: a
combined-stream trade or aggTrade frame with exactly the known fields is decoded once by typed
msgspec structs (types, int ranges, UTF-8 checked in C; ``msgspec.Raw`` keeps the event's bytes)
and its value is those bytes. Any other frame, or one the structs refuse, takes the checked path
(``parse_frame``), which names every problem for the dead letters and accepts exactly what it
accepted before; the fast path accepts a subset of it, with the same topic, key and event time.

Unknown extra fields are *allowed* (Binance adds fields over time and a producer must not stop
on that) and counted per frame in ``MarketEvent.unknown_fields`` so a schema change is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import orjson

from core.binance_limits import (
    INT64_MAX,
    MAX_TIME_MS,
    POSITIVE_DECIMAL,
    SIGNED_DECIMAL,
    SymbolCheck,
)
from core.recording import Frame
from producers.binance.topics import TOPIC_BY_EVENT
from producers.runtime.frames import Outgoing, Rejected
from producers.runtime.progress import nonzero_counts

#: A trade frame is ~170 B, a ticker ~500 B; 64 KiB leaves room for any market-data event.
DEFAULT_MAX_FRAME_BYTES = 65_536
#: How far E may be from the receive time; replays compare against the *recorded* receive time.
DEFAULT_MAX_SKEW_MS = 3_600_000
#: Other timestamps (trade time, kline open/close) may lie this far from E (a 1M kline: 31 d).
_RELATED_MS = 40 * 86_400_000

_POS_DECIMAL = POSITIVE_DECIMAL
_SIGNED_DECIMAL = SIGNED_DECIMAL
_SYMBOLS = SymbolCheck()

# Field check codes (small ints: an if-chain on ints is the cheapest dispatch in CPython).
STR, UINT, INT, BOOL, POS_DEC, DEC, TIME, KLINE = range(8)

FIELDS: dict[str, tuple[tuple[str, int], ...]] = {
    "trade": (
        ("e", STR),
        ("E", UINT),
        ("s", STR),
        ("t", UINT),
        ("p", POS_DEC),
        ("q", POS_DEC),
        ("T", TIME),
        ("m", BOOL),
        ("M", BOOL),
    ),
    "aggTrade": (
        ("e", STR),
        ("E", UINT),
        ("s", STR),
        ("a", UINT),
        ("p", POS_DEC),
        ("q", POS_DEC),
        ("f", UINT),
        ("l", UINT),
        ("T", TIME),
        ("m", BOOL),
        ("M", BOOL),
    ),
    "kline": (("e", STR), ("E", UINT), ("s", STR), ("k", KLINE)),
    "24hrTicker": (
        ("e", STR),
        ("E", UINT),
        ("s", STR),
        ("p", DEC),
        ("P", DEC),
        ("w", POS_DEC),
        ("x", POS_DEC),
        ("c", POS_DEC),
        ("Q", POS_DEC),
        ("b", POS_DEC),
        ("B", POS_DEC),
        ("a", POS_DEC),
        ("A", POS_DEC),
        ("o", POS_DEC),
        ("h", POS_DEC),
        ("l", POS_DEC),
        ("v", POS_DEC),
        ("q", POS_DEC),
        ("O", TIME),
        ("C", TIME),
        ("F", INT),
        ("L", INT),
        ("n", UINT),
    ),
    "24hrMiniTicker": (
        ("e", STR),
        ("E", UINT),
        ("s", STR),
        ("c", POS_DEC),
        ("o", POS_DEC),
        ("h", POS_DEC),
        ("l", POS_DEC),
        ("v", POS_DEC),
        ("q", POS_DEC),
    ),
    "bookTicker": (
        ("u", UINT),
        ("s", STR),
        ("b", POS_DEC),
        ("B", POS_DEC),
        ("a", POS_DEC),
        ("A", POS_DEC),
    ),
}
KLINE_FIELDS: tuple[tuple[str, int], ...] = (
    ("t", TIME),
    ("T", TIME),
    ("s", STR),
    ("i", STR),
    ("f", INT),
    ("L", INT),
    ("o", POS_DEC),
    ("c", POS_DEC),
    ("h", POS_DEC),
    ("l", POS_DEC),
    ("v", POS_DEC),
    ("n", UINT),
    ("x", BOOL),
    ("q", POS_DEC),
    ("V", POS_DEC),
    ("Q", POS_DEC),
    ("B", STR),
)
#: The per-event id that makes a frame unique within its symbol (None: use E).
ID_FIELD: dict[str, str | None] = {
    "trade": "t",
    "aggTrade": "a",
    "bookTicker": "u",
    "kline": None,
    "24hrTicker": None,
    "24hrMiniTicker": None,
    "depthUpdate": "u",
    "depthPartial": "lastUpdateId",
    "depthSnapshot": "lastUpdateId",
}


class ValidationError(Rejected):
    """A frame we cannot publish; ``kind`` is the dead-letter counter it goes to."""


@dataclass(slots=True)
class MarketEvent:
    """A validated market-data event, ready to publish."""

    stream: str | None  # "btcusdt@trade" for combined streams, None for raw /ws payloads
    event: str  # Binance event type; "bookTicker" for the book ticker (it has no ``e``)
    topic: str
    symbol: str  # as Binance sends it, upper case
    data: dict[str, Any]
    event_time_ms: int | None  # E; None where the stream has none (spot bookTicker)
    unknown_fields: int

    def dedup_key(self) -> tuple[str, str, Any]:
        """(topic, symbol, id): the same event seen twice (reconnect overlap) has the same key."""
        id_field = ID_FIELD[self.event]
        if id_field is not None:
            return (self.topic, self.symbol, self.data[id_field])
        if self.event == "kline":
            return (self.topic, self.symbol, (self.data["k"]["i"], self.event_time_ms))
        return (self.topic, self.symbol, self.event_time_ms)


@dataclass(frozen=True, slots=True)
class ControlReply:
    """Answer to SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS: ``result`` or an error code/msg."""

    id: Any
    result: Any = None
    error_code: int | None = None
    error_msg: str | None = None

    @property
    def is_error(self) -> bool:
        return self.error_code is not None


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The server announced it will close this connection soon: reconnect now."""

    event_time_ms: int | None


Parsed = MarketEvent | ControlReply | ServerShutdown


def parse_frame(
    raw: bytes | str,
    recv_ms: int,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
) -> Parsed:
    """Validate one frame received at ``recv_ms``; raise ``ValidationError`` if unusable."""
    size = len(raw)
    if size > max_frame_bytes or (
        type(raw) is str and size * 4 > max_frame_bytes and len(raw.encode()) > max_frame_bytes
    ):
        limit = _depth_schema().MAX_SNAPSHOT_FRAME_BYTES  # REST depth snapshots are larger
        if not (size <= limit and _depth_schema().is_snapshot_frame(raw)):
            raise ValidationError("oversize", f"frame of {size} bytes > {max_frame_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if type(raw) is bytes and "UTF-8" in str(exc):
            raise ValidationError("invalid_utf8", str(exc)) from None
        raise ValidationError("malformed_json", str(exc)) from None
    if type(obj) is not dict:
        raise ValidationError("bad_type", f"top level is {type(obj).__name__}, not an object")
    stream = obj.get("stream")
    if stream is not None:
        data = obj.get("data")
        if type(stream) is not str or type(data) is not dict:
            raise ValidationError("bad_type", "combined frame needs 'stream' str and 'data' object")
    else:
        if "id" in obj and ("result" in obj or "code" in obj):
            return _control(obj)
        data = obj
    event = data.get("e")
    if event is None:
        if "u" in data and "b" in data and "a" in data:
            event = "bookTicker"  # spot bookTicker carries no event type
        elif "lastUpdateId" in data:  # partial book depth or a recorded REST snapshot
            return _depth_schema().parse_depth_book(stream, data)
        else:
            raise ValidationError("missing_field", "no event type 'e'")
    elif event == "serverShutdown":
        e_time = data.get("E")
        return ServerShutdown(e_time if type(e_time) is int else None)
    elif event == "depthUpdate":
        return _depth_schema().parse_depth_update(stream, data, recv_ms, max_skew_ms)
    spec = FIELDS.get(event) if type(event) is str else None
    if spec is None:
        raise ValidationError("unknown_event", f"unknown event type {event!r}")
    fast = _FAST_CHECKS.get(event)
    unknown = fast(data) if fast is not None else -1
    if unknown < 0:  # no fast path, or it failed: the generic check finds and names the error
        unknown = _check(data, spec, event)
    e_time = data.get("E")
    if e_time is not None:
        if type(e_time) is not int:  # bookTicker has no E in its spec (futures adds one)
            raise ValidationError("bad_type", f"{event}.E must be an integer")
        if not 0 <= e_time <= MAX_TIME_MS:
            raise ValidationError("bad_value", f"{event}.E={e_time} is out of range")
        if abs(e_time - recv_ms) > max_skew_ms:
            raise ValidationError(
                "stale_timestamp", f"E={e_time} is {e_time - recv_ms} ms from receive time"
            )
        if fast is None:
            _check_times(data, spec, e_time)
            if event == "kline":
                _check_times(data["k"], KLINE_FIELDS, e_time)
        elif event == "trade" and abs(data["T"] - e_time) > _RELATED_MS:
            raise ValidationError("bad_value", f"T={data['T']} is implausibly far from E")
    symbol = data["s"]
    if stream is not None and not stream.startswith(symbol.lower() + "@"):
        raise ValidationError("stream_mismatch", f"stream {stream!r} carries symbol {symbol!r}")
    return MarketEvent(stream, event, TOPIC_BY_EVENT[event], symbol, data, e_time, unknown)


def _depth_schema() -> Any:
    """Depth frames are checked in their own module (imported on first use: it imports this)."""
    from producers.binance import depth_schema

    return depth_schema


def _check(data: dict[str, Any], spec: tuple[tuple[str, int], ...], event: str) -> int:
    """Check required fields; return how many extra (unknown) fields the object has."""
    nested = 0
    for name, code in spec:
        value = data.get(name)
        if value is None:
            raise ValidationError("missing_field", f"{event}: missing {name!r}")
        vt = type(value)
        if code in (POS_DEC, DEC):
            if vt is not str:
                raise ValidationError("bad_type", f"{event}.{name} must be a decimal string")
            if not (_POS_DECIMAL if code == POS_DEC else _SIGNED_DECIMAL)(value):
                raise ValidationError("bad_value", f"{event}.{name}={value[:40]!r} not a decimal")
        elif code in (UINT, TIME):
            if vt is not int:
                raise ValidationError("bad_type", f"{event}.{name} must be an integer")
            if value < 0:
                raise ValidationError("bad_value", f"{event}.{name}={value} is negative")
            if value > (MAX_TIME_MS if code == TIME else INT64_MAX):
                raise ValidationError("bad_value", f"{event}.{name}={value} is out of range")
        elif code == STR:
            if vt is not str:
                raise ValidationError("bad_type", f"{event}.{name} must be a string")
            if name == "s" and (problem := _SYMBOLS.problem(value)) is not None:
                raise ValidationError("bad_value", f"{event}.s: {problem}")
        elif code == BOOL:
            if vt is not bool:
                raise ValidationError("bad_type", f"{event}.{name} must be a boolean")
        elif code == INT:
            if vt is not int:
                raise ValidationError("bad_type", f"{event}.{name} must be an integer")
            if not -1 <= value <= INT64_MAX:
                raise ValidationError("bad_value", f"{event}.{name}={value} is out of range")
        elif code == KLINE:
            if vt is not dict:
                raise ValidationError("bad_type", "kline.k must be an object")
            nested = _check(value, KLINE_FIELDS, "kline.k")  # extras inside k count too
    extra = len(data) - len(spec)
    return nested + extra if extra > 0 else nested


def _fast_trade(d: dict[str, Any]) -> int:
    """The hot path (trades are most of the volume): same rules as ``_check``, inlined.

    Returns the unknown-field count, or -1 if anything is off (``_check`` then names it).
    """
    try:
        e_time, s, t, p, q, t_time, m, mm = (
            d["E"], d["s"], d["t"], d["p"], d["q"], d["T"], d["m"], d["M"]
        )  # fmt: skip
    except KeyError:
        return -1
    if (
        type(e_time) is int
        and 0 <= e_time <= MAX_TIME_MS
        and type(s) is str
        and s in _SYMBOLS.good
        and type(t) is int
        and 0 <= t <= INT64_MAX
        and type(p) is str
        and type(q) is str
        and type(t_time) is int
        and 0 <= t_time <= MAX_TIME_MS
        and type(m) is bool
        and type(mm) is bool
        and _POS_DECIMAL(p)
        and _POS_DECIMAL(q)
    ):
        return len(d) - 9
    return -1


def _fast_book_ticker(d: dict[str, Any]) -> int:
    try:
        u, s, b, bq, a, aq = d["u"], d["s"], d["b"], d["B"], d["a"], d["A"]
    except KeyError:
        return -1
    if (
        type(u) is int
        and 0 <= u <= INT64_MAX
        and type(s) is str
        and s in _SYMBOLS.good
        and type(b) is str
        and type(bq) is str
        and type(a) is str
        and type(aq) is str
        and _POS_DECIMAL(b)
        and _POS_DECIMAL(bq)
        and _POS_DECIMAL(a)
        and _POS_DECIMAL(aq)
    ):
        return len(d) - 6
    return -1


_FAST_CHECKS = {"trade": _fast_trade, "bookTicker": _fast_book_ticker}


def _check_times(data: dict[str, Any], spec: tuple[tuple[str, int], ...], e_time: int) -> None:
    for name, code in spec:
        if code == TIME and abs(data[name] - e_time) > _RELATED_MS:
            raise ValidationError("bad_value", f"{name}={data[name]} is implausibly far from E")


def _control(obj: dict[str, Any]) -> ControlReply:
    if "code" in obj:
        code = obj.get("code")
        return ControlReply(
            obj.get("id"), None, code if type(code) is int else -1, str(obj.get("msg", ""))
        )
    return ControlReply(obj.get("id"), obj.get("result"))


_Id = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]


class _Combined(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``{"stream": .., "data": ..}`` with nothing else; ``data`` kept as its raw bytes. These
    structs hold only strings and numbers (no cycles), so they skip the garbage collector."""

    stream: str
    data: msgspec.Raw


class _TradeEvent(
    msgspec.Struct, tag_field="e", tag="trade", forbid_unknown_fields=True, gc=False
):
    """A trade with exactly ``FIELDS["trade"]`` (an extra field takes the counting path)."""

    E: _Time
    s: str
    t: _Id
    p: str
    q: str
    T: _Time
    m: bool
    M: bool


class _AggTradeEvent(
    msgspec.Struct, tag_field="e", tag="aggTrade", forbid_unknown_fields=True, gc=False
):
    """An aggTrade with exactly ``FIELDS["aggTrade"]``."""

    E: _Time
    s: str
    a: _Id
    p: str
    q: str
    f: _Id
    l: _Id  # noqa: E741 (Binance's name)
    T: _Time
    m: bool
    M: bool


_decode_combined = msgspec.json.Decoder(_Combined).decode
_decode_trade_event = msgspec.json.Decoder(_TradeEvent | _AggTradeEvent).decode
_FAST_TOPICS = {_TradeEvent: TOPIC_BY_EVENT["trade"], _AggTradeEvent: TOPIC_BY_EVENT["aggTrade"]}
#: Cached per-symbol keys and stream prefixes: bounded like ``SymbolCheck`` (hostile streams of
#: ever-new symbols only refill them).
_CACHE_ENTRIES = 4096


class BinanceDecoder:
    """The Binance schema as the producer runtime uses it: a frame in, its message out.

    Wire format (what processors consume): topic from ``topics.TOPIC_BY_EVENT``; value = the
    bare event object (the stream's ``data``, never the combined-stream wrapper) with Binance's
    own field names, prices and quantities still decimal strings: for trades and aggTrades the
    exchange's own bytes (``_fast_trade_message``), for anything else ``orjson.dumps`` of the
    checked object; key = the symbol (``BTCUSDT``), so per-symbol order holds
    on Kafka; event time = ``E`` ms * 1e6, or the receive time for bookTicker, whose spot
    stream carries no event time. Control replies and ``serverShutdown`` are counted, not
    published (the live client acts on them).
    """

    def __init__(
        self,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_skew_ms = max_skew_ms
        self.unknown_fields = 0
        self.control_replies = 0
        self.control_errors = 0
        self.server_shutdowns = 0
        self._keys: dict[str, bytes] = {}
        self._prefixes: dict[str, str] = {}
        #: A frame this short cannot be oversize even as 4-byte UTF-8 characters.
        self._fast_limit = max_frame_bytes // 4

    def decode(self, frame: Frame) -> tuple[Outgoing, ...]:
        recv_ns = frame.recv_ns
        raw = frame.raw
        if len(raw) <= self._fast_limit:
            message = self._fast_trade_message(raw, recv_ns)
            if message is not None:
                return (message,)
        parsed = parse_frame(frame.raw, recv_ns // 1_000_000,
                             max_frame_bytes=self.max_frame_bytes, max_skew_ms=self.max_skew_ms)
        if type(parsed) is MarketEvent:
            if parsed.unknown_fields:
                self.unknown_fields += parsed.unknown_fields
            key = self._keys.get(parsed.symbol)
            if key is None:
                key = self._keys[parsed.symbol] = parsed.symbol.encode()
            e_ms = parsed.event_time_ms
            event_ns = recv_ns if e_ms is None else e_ms * 1_000_000
            return ((parsed.topic, key, orjson.dumps(parsed.data), event_ns),)
        if type(parsed) is ControlReply:
            self.control_replies += 1
            if parsed.is_error:
                self.control_errors += 1
        else:
            self.server_shutdowns += 1
        return ()

    def _fast_trade_message(self, raw: bytes | str, recv_ns: int) -> Outgoing | None:
        """A combined-stream trade/aggTrade that passes every rule of ``parse_frame`` with no
        unknown field, as its message with the event's bytes as value; None for anything else
        (``parse_frame`` then accepts it or names its problem)."""
        try:
            combined = _decode_combined(raw)
            event = _decode_trade_event(combined.data)
        except (msgspec.DecodeError, ValueError):  # ValueError: a lone surrogate in a str
            return None
        symbol, e_time = event.s, event.E
        prefix = self._prefixes.get(symbol)
        if (
            prefix is None
            or abs(e_time - recv_ns // 1_000_000) > self.max_skew_ms
            or abs(event.T - e_time) > _RELATED_MS
            or not combined.stream.startswith(prefix)
            or not _POS_DECIMAL(event.p)
            or not _POS_DECIMAL(event.q)
        ):
            if prefix is None and _SYMBOLS.problem(symbol) is None:
                if len(self._prefixes) >= _CACHE_ENTRIES:
                    self._prefixes.clear()
                self._prefixes[symbol] = symbol.lower() + "@"
            return None
        key = self._keys.get(symbol)
        if key is None:
            if len(self._keys) >= _CACHE_ENTRIES:
                self._keys.clear()
            key = self._keys[symbol] = symbol.encode()
        return (_FAST_TOPICS[type(event)], key, bytes(combined.data), e_time * 1_000_000)

    def counters(self) -> dict[str, object]:
        return nonzero_counts({"unknown_field": self.unknown_fields,
                               "control_replies": self.control_replies,
                               "control_errors": self.control_errors,
                               "server_shutdowns": self.server_shutdowns})
