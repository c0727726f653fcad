"""Envelope framing cost: the per-message overhead the harness adds on top of each transport.

Micro benchmarks, not tests: run ``pytest benchmarks/``.
"""

from __future__ import annotations

from typing import Any

import pytest

from transports.framing import decode_frame, decode_meta, encode_frame, encode_meta

VALUE = b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723456789176,"s":"BTCUSDT",' \
    b'"t":3700000001,"p":"59998.85000000","q":"0.00996000","T":1723456789176,"m":false}}'
PRODUCER = "p-benchhost-12345-abcdef"


@pytest.mark.parametrize("headers", [(), (("trace", b"abc123"),)], ids=["plain", "header"])
def test_zmq_frame_encode(benchmark: Any, headers: Any) -> None:
    frame = benchmark(encode_frame, "binance.trade.btcusdt", VALUE, b"BTCUSDT", headers,
                      PRODUCER, 42, 1, 2)
    assert frame.endswith(VALUE)


def test_zmq_frame_decode(benchmark: Any) -> None:
    frame = encode_frame("binance.trade.btcusdt", VALUE, b"BTCUSDT", (), PRODUCER, 42, 1, 2)
    env = benchmark(decode_frame, frame, 3)
    assert env.seq == 42 and env.value == VALUE


def test_kafka_meta_round_trip(benchmark: Any) -> None:
    result = benchmark(lambda: decode_meta(encode_meta(PRODUCER, 42, 1, 2)))
    assert result == (PRODUCER, 42, 1, 2)
