"""Depth frames are validated as strictly as trades: every bad one gets a named kind."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from producers.binance.schema import MarketEvent, ValidationError, parse_frame

E = 1_723_456_789_000
DIFF = {
    "e": "depthUpdate", "E": E, "s": "BTCUSDT", "U": 157, "u": 160,
    "b": [["60000.01000000", "10.00000000"], ["59999.00000000", "0.00000000"]],
    "a": [["60000.02000000", "100.00000000"]],
}  # fmt: skip
PARTIAL = {
    "lastUpdateId": 160,
    "bids": [["60000.01000000", "1.00000000"], ["60000.00000000", "2.00000000"]],
    "asks": [["60000.02000000", "3.00000000"]],
}


def frame(data: dict[str, Any], stream: str | None = "btcusdt@depth@100ms") -> bytes:
    return orjson.dumps(data if stream is None else {"stream": stream, "data": data})


def kind_of(raw: bytes) -> str:
    with pytest.raises(ValidationError) as info:
        parse_frame(raw, E)
    return info.value.kind


def test_diff_is_published_as_binance_sent_it() -> None:
    ev = parse_frame(frame(DIFF), E)
    assert isinstance(ev, MarketEvent)
    assert (ev.event, ev.topic, ev.symbol, ev.event_time_ms) == (
        "depthUpdate", "binance.depth", "BTCUSDT", E
    )  # fmt: skip
    assert ev.data == DIFF and ev.dedup_key() == ("binance.depth", "BTCUSDT", 160)
    raw_ws = parse_frame(frame(DIFF, stream=None), E)  # /ws payloads carry their symbol
    assert isinstance(raw_ws, MarketEvent) and raw_ws.symbol == "BTCUSDT"


@pytest.mark.parametrize("stream", ["btcusdt@depth5", "btcusdt@depth10@100ms", "btcusdt@depth20"])
def test_partial_book_takes_its_symbol_from_the_stream(stream: str) -> None:
    ev = parse_frame(frame(PARTIAL, stream), E)
    assert isinstance(ev, MarketEvent)
    assert (ev.event, ev.topic, ev.symbol, ev.event_time_ms) == (
        "depthPartial", "binance.depthPartial", "BTCUSDT", None
    )  # fmt: skip
    assert ev.data == {"e": "depthPartial", "s": "BTCUSDT", **PARTIAL}


def test_recorded_rest_snapshot_may_exceed_the_frame_limit() -> None:
    levels = [[f"{60000 - i / 100:.8f}", "1.00000000"] for i in range(2500)]
    asks = [[f"{60001 + i / 100:.8f}", "1.00000000"] for i in range(2500)]
    snap = {"lastUpdateId": 99, "bids": levels, "asks": asks}
    raw = frame(snap, "btcusdt@depthSnapshot")
    assert len(raw) > 65_536
    ev = parse_frame(raw, E)
    assert isinstance(ev, MarketEvent)
    assert ev.event == "depthSnapshot" and ev.topic == "binance.depth"
    assert kind_of(frame({**DIFF, "pad": "x" * 70_000})) == "oversize"  # diffs keep the limit
    too_big = frame({**snap, "pad": "x" * (1 << 20)}, "btcusdt@depthSnapshot")
    assert kind_of(too_big) == "oversize"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (frame({k: v for k, v in DIFF.items() if k != "U"}), "missing_field"),
        (frame({**DIFF, "U": "157"}), "bad_type"),
        (frame({**DIFF, "U": 161}), "bad_value"),  # U after u
        (frame({**DIFF, "u": -1}), "bad_value"),
        (frame({**DIFF, "E": E - 7_200_000}), "stale_timestamp"),
        (frame({**DIFF, "b": [[60000.01, "1.0"]]}), "bad_type"),
        (frame({**DIFF, "b": [["NaN", "1.0"]]}), "bad_value"),
        (frame({**DIFF, "b": [["60000", "-1"]]}), "bad_value"),
        (frame({**DIFF, "b": [["1e5", "1"]]}), "bad_value"),
        (frame({**DIFF, "b": [["0.00000000", "1"]]}), "bad_value"),  # no level at price zero
        (frame({**DIFF, "b": [["60000"]]}), "bad_type"),
        (frame({**DIFF, "b": {"60000": "1"}}), "bad_type"),
        (frame(DIFF, "ethusdt@depth"), "stream_mismatch"),
        (frame(DIFF, "btcusdt@trade"), "stream_mismatch"),
        (frame(PARTIAL, None), "missing_field"),  # a raw /ws partial book has no symbol
        (frame(PARTIAL, "btcusdt@trade"), "stream_mismatch"),
        (frame({**PARTIAL, "lastUpdateId": "160"}, "btcusdt@depth5"), "bad_type"),
        (frame({k: v for k, v in PARTIAL.items() if k != "asks"}, "btcusdt@depth5"),
         "missing_field"),
        (frame({**PARTIAL, "bids": PARTIAL["bids"][::-1]}, "btcusdt@depth5"), "bad_value"),
        (frame({**PARTIAL, "bids": [["1.0", "1"]] * 6}, "btcusdt@depth5"), "bad_value"),
        (frame({**PARTIAL, "asks": [["60000.02", "0"]]}, "btcusdt@depth5"), "bad_value"),
    ],
)
def test_bad_depth_frames_have_a_named_kind(raw: bytes, kind: str) -> None:
    assert kind_of(raw) == kind
