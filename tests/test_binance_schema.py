"""Frame validation: every real event type passes; every kind of bad frame gets its kind. The
decoder's fast path (typed msgspec structs, the exchange's bytes forwarded) publishes exactly
what the checked path (``parse_frame``) accepts, and refuses nothing it would accept."""

from __future__ import annotations

import itertools

import orjson
import pytest

from producers.binance.schema import (
    TOPIC_BY_EVENT,
    BinanceDecoder,
    ControlReply,
    MarketEvent,
    ServerShutdown,
    ValidationError,
    parse_frame,
)
from producers.binance.synthetic import SUPPORTED_STREAM_TYPES, SyntheticMarket
from producers.runtime.frames import Frame

E = 1_723_456_789_012
TRADE = {
    "e": "trade", "E": E, "s": "BTCUSDT", "t": 12345, "p": "60000.01000000",
    "q": "0.00067000", "T": E - 1, "m": True, "M": True,
}  # fmt: skip


def frame(data: dict[str, object], stream: str | None = "btcusdt@trade") -> bytes:
    return orjson.dumps({"stream": stream, "data": data} if stream else data)


def kind_of(raw: bytes | str, recv_ms: int = E) -> str:
    with pytest.raises(ValidationError) as info:
        parse_frame(raw, recv_ms)
    return info.value.kind


def test_every_synthetic_event_type_validates() -> None:
    market = SyntheticMarket(["btcusdt", "ethusdt"], list(SUPPORTED_STREAM_TYPES), seed=3)
    seen = set()
    for f in itertools.islice(market.frames(), 5000):
        ev = parse_frame(f.raw, f.recv_ns // 1_000_000)
        assert isinstance(ev, MarketEvent)
        assert ev.unknown_fields == 0
        seen.add(ev.event)
    assert seen == {"trade", "aggTrade", "kline", "24hrTicker", "24hrMiniTicker", "bookTicker",
                    "depthUpdate", "depthPartial", "depthSnapshot"}


def test_trade_fields_and_raw_payload() -> None:
    ev = parse_frame(frame(TRADE), E)
    assert isinstance(ev, MarketEvent)
    assert (ev.topic, ev.symbol, ev.event_time_ms, ev.stream) == (
        "binance.trade", "BTCUSDT", E, "btcusdt@trade"
    )  # fmt: skip
    assert ev.data["p"] == "60000.01000000"  # kept as the exchange's exact string
    raw_ev = parse_frame(frame(TRADE, stream=None).decode(), E)  # /ws payload, str input
    assert isinstance(raw_ev, MarketEvent) and raw_ev.stream is None


def test_book_ticker_has_no_event_time() -> None:
    book = {"u": 400900217, "s": "BNBUSDT", "b": "25.35", "B": "31.2", "a": "25.36", "A": "40.6"}
    ev = parse_frame(frame(book, "bnbusdt@bookTicker"), E)
    assert isinstance(ev, MarketEvent)
    assert ev.event == "bookTicker" and ev.event_time_ms is None


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"stream":"btcusdt@trade","data":{"e":', "malformed_json"),
        (b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"\xff"}}', "invalid_utf8"),
        (frame({**TRADE, "pad": "x" * 70_000}), "oversize"),
        (frame({**TRADE, "e": "avgPrice"}), "unknown_event"),
        (frame({k: v for k, v in TRADE.items() if k != "q"}), "missing_field"),
        (frame({k: v for k, v in TRADE.items() if k != "e"}), "missing_field"),
        (frame({**TRADE, "p": 60000.0}), "bad_type"),
        (frame({**TRADE, "t": "12345"}), "bad_type"),
        (frame({**TRADE, "m": 1}), "bad_type"),
        (frame({**TRADE, "p": "NaN"}), "bad_value"),
        (frame({**TRADE, "p": "inf"}), "bad_value"),
        (frame({**TRADE, "q": "-0.1"}), "bad_value"),
        (frame({**TRADE, "p": "1e5"}), "bad_value"),
        (frame({**TRADE, "E": E + 7_200_000}), "stale_timestamp"),
        (frame({**TRADE, "T": E - 90 * 86_400_000}), "bad_value"),
        (frame(TRADE, "ethusdt@trade"), "stream_mismatch"),
        (b"[1,2]", "bad_type"),
        (b'{"stream":"btcusdt@trade","data":[1]}', "bad_type"),
    ],
)
def test_bad_frames_get_their_kind(raw: bytes, kind: str) -> None:
    assert kind_of(raw) == kind


def test_oversize_counts_bytes_of_str_frames() -> None:
    text = frame({**TRADE, "pad": "é" * 20_000}).decode()  # 20k chars, 40k bytes
    assert len(text) < 65_536 < len(text.encode()) * 2
    with pytest.raises(ValidationError) as info:
        parse_frame(text, E, max_frame_bytes=30_000)
    assert info.value.kind == "oversize"


def test_skew_bound_is_configurable() -> None:
    ev = parse_frame(frame({**TRADE, "E": E + 7_200_000}), E, max_skew_ms=8_000_000)
    assert isinstance(ev, MarketEvent)


def test_unknown_fields_are_counted_not_rejected() -> None:
    ev = parse_frame(frame({**TRADE, "b": 88, "a": 50}), E)
    assert isinstance(ev, MarketEvent) and ev.unknown_fields == 2


def test_control_replies_and_server_shutdown() -> None:
    ok = parse_frame(b'{"result":null,"id":1}', E)
    assert ok == ControlReply(1, None)
    err = parse_frame(b'{"code":2,"msg":"Invalid request: bad","id":7}', E)
    assert isinstance(err, ControlReply) and err.is_error and err.error_code == 2
    listing = parse_frame(b'{"result":["btcusdt@trade"],"id":3}', E)
    assert isinstance(listing, ControlReply) and listing.result == ["btcusdt@trade"]
    assert parse_frame(b'{"e":"serverShutdown","E":1}', E) == ServerShutdown(1)


def test_dedup_keys_identify_events() -> None:
    a = parse_frame(frame(TRADE), E)
    b = parse_frame(frame(TRADE).decode(), E)
    c = parse_frame(frame({**TRADE, "t": 12346}), E)
    assert isinstance(a, MarketEvent) and isinstance(b, MarketEvent) and isinstance(c, MarketEvent)
    assert a.dedup_key() == b.dedup_key() != c.dedup_key()


AGG = {
    "e": "aggTrade", "E": E, "s": "BTCUSDT", "a": 7, "p": "60000.01", "q": "0.5",
    "f": 100, "l": 105, "T": E - 1, "m": False, "M": True,
}  # fmt: skip


def checked(raw: bytes | str, recv_ns: int) -> tuple[str, bytes, dict[str, object], int]:
    """What the checked path publishes for ``raw``: topic, key, event object, event time."""
    event = parse_frame(raw, recv_ns // 1_000_000)
    assert isinstance(event, MarketEvent)
    e_ns = recv_ns if event.event_time_ms is None else event.event_time_ms * 1_000_000
    return event.topic, event.symbol.encode(), event.data, e_ns


def published(decoder: BinanceDecoder, raw: bytes | str, recv_ns: int) -> tuple:
    ((topic, key, value, e_ns),) = decoder.decode(Frame(recv_ns, raw))
    return topic, key, orjson.loads(value), e_ns


@pytest.mark.parametrize("text", [False, True], ids=["bytes", "str"])
def test_every_synthetic_frame_publishes_what_the_checked_path_accepts(text: bool) -> None:
    market = SyntheticMarket(["btcusdt", "ethusdt"], list(SUPPORTED_STREAM_TYPES), seed=5)
    decoder = BinanceDecoder()
    topics = set()
    for f in itertools.islice(market.frames(), 3000):
        raw = f.raw if text else (f.raw.encode() if isinstance(f.raw, str) else f.raw)
        ref = checked(raw, f.recv_ns)
        if ref[0] not in TOPIC_BY_EVENT.values():
            continue
        assert published(decoder, raw, f.recv_ns) == ref
        topics.add(ref[0])
    assert {TOPIC_BY_EVENT["trade"], TOPIC_BY_EVENT["aggTrade"]} <= topics


@pytest.mark.parametrize("data", [TRADE, AGG], ids=["trade", "aggTrade"])
def test_value_is_the_exchanges_bytes_of_the_event(data: dict[str, object]) -> None:
    stream = f"btcusdt@{data['e']}"
    event = orjson.dumps(data, option=orjson.OPT_INDENT_2)  # not how orjson would write it
    raw = b'{"stream": "' + stream.encode() + b'", "data": ' + event + b"}"
    decoder = BinanceDecoder()
    for _ in range(2):  # the first frame of a symbol takes the checked path, the next the fast
        ((topic, key, value, e_ns),) = decoder.decode(Frame(E * 1_000_000, raw))
        assert (topic, key, orjson.loads(value), e_ns) == checked(raw, E * 1_000_000)
    assert value == event


BAD = [
    ("t", 2**63, "bad_value"),
    ("t", -1, "bad_value"),
    ("t", 1.0, "bad_type"),
    ("E", E + 10**13, "bad_value"),
    ("T", E - 41 * 86_400_000, "bad_value"),
    ("p", "NaN", "bad_value"),
    ("p", "1_000", "bad_value"),
    ("p", " 1 ", "bad_value"),
    ("p", "1e3", "bad_value"),
    ("q", 1.5, "bad_type"),
    ("s", "BTC\x00USDT", "bad_value"),
    ("s", "ETHUSDT", "stream_mismatch"),
    ("m", 1, "bad_type"),
    ("M", None, "missing_field"),
]


@pytest.mark.parametrize(("field", "value", "kind"), BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_trades_warmed_up_still_get_the_checked_paths_kind(
    field: str, value: object, kind: str
) -> None:
    decoder = BinanceDecoder()
    good = orjson.dumps({"stream": "btcusdt@trade", "data": TRADE})
    for _ in range(2):  # the symbol is known: the fast path is live for this stream
        decoder.decode(Frame(E * 1_000_000, good))
    bad = orjson.dumps({"stream": "btcusdt@trade", "data": {**TRADE, field: value}})
    with pytest.raises(ValidationError) as info:
        decoder.decode(Frame(E * 1_000_000, bad))
    assert info.value.kind == kind == kind_of(bad)


def test_unknown_fields_and_skew_take_the_checked_path() -> None:
    decoder = BinanceDecoder(max_skew_ms=1000)
    for _ in range(2):
        decoder.decode(Frame(E * 1_000_000, orjson.dumps({"stream": "btcusdt@trade",
                                                          "data": TRADE})))  # fmt: skip
    extra = orjson.dumps({"stream": "btcusdt@trade", "data": {**TRADE, "X": 1}})
    assert len(decoder.decode(Frame(E * 1_000_000, extra))) == 1
    assert decoder.counters()["unknown_field"] == 1
    late = orjson.dumps({"stream": "btcusdt@trade", "data": TRADE})
    with pytest.raises(ValidationError) as info:
        decoder.decode(Frame((E + 5000) * 1_000_000, late))
    assert info.value.kind == "stale_timestamp"
    lone_surrogate = orjson.dumps({"stream": "btcusdt@trade", "data": TRADE}).decode().replace(
        "BTCUSDT", "BTC\ud800")
    for raw, kind in (
        (b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"\xff"}}', "invalid_utf8"),
        (lone_surrogate, "malformed_json"),
    ):
        with pytest.raises(ValidationError) as info:
            decoder.decode(Frame(E * 1_000_000, raw))
        assert info.value.kind == kind
