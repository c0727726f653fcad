"""Serialization round trips (encode + decode) for the two message shapes of the pipeline.

Micro benchmarks, not tests: run ``pytest benchmarks/`` (figures.md has reference numbers).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest

TRADE = {
    "e": "trade", "E": 1_723_456_789_176, "s": "BTCUSDT", "t": 3_700_000_001,
    "p": "59998.85000000", "q": "0.00996000", "T": 1_723_456_789_175, "m": False, "M": True,
}
TWEET = {
    "id": "1823456789012345678",
    "created_at": "2024-08-12T10:13:09.000Z",
    "author_id": "987654321",
    "lang": "en",
    "text": ("$BTC breaking out above 60k again, funding still negative and shorts piling in. "
             "Not financial advice but this looks like the squeeze everyone said would never "
             "come. Watching 61.2k resistance; below 58k I'm out. #bitcoin #crypto 🚀📈 "
             "what do you all think?"),
    "public_metrics": {"retweet_count": 12, "reply_count": 3, "like_count": 87,
                       "quote_count": 1},
    "entities": {"cashtags": [{"tag": "BTC"}], "hashtags": [{"tag": "bitcoin"},
                                                            {"tag": "crypto"}]},
}

CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "json": (lambda o: json.dumps(o, separators=(",", ":")).encode(), json.loads),
    "orjson": (orjson.dumps, orjson.loads),
    "msgpack": (msgpack.packb, msgpack.unpackb),
}


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("doc_name", ["trade", "tweet"])
def test_round_trip(benchmark: Any, codec: str, doc_name: str) -> None:
    encode, decode = CODECS[codec]
    doc = TRADE if doc_name == "trade" else TWEET
    benchmark.extra_info["encoded_bytes"] = len(encode(doc))
    result = benchmark(lambda: decode(encode(doc)))
    assert result == doc
