"""Frame validation: every real event type passes; every kind of bad frame gets its kind."""

from __future__ import annotations

import itertools

import orjson
import pytest

from producers.binance.schema import (
    ControlReply,
    MarketEvent,
    ServerShutdown,
    ValidationError,
    parse_frame,
)
from producers.binance.synthetic import SUPPORTED_STREAM_TYPES, SyntheticMarket

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
