"""The decoder's fast path (typed msgspec structs, the exchange's bytes forwarded) publishes
exactly what the checked path (``parse_frame``) accepts, and refuses nothing it would accept."""

from __future__ import annotations

import itertools

import orjson
import pytest

from producers.binance.schema import (
    TOPIC_BY_EVENT,
    BinanceDecoder,
    MarketEvent,
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
    assert info.value.kind == kind


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
