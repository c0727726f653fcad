"""The sentiment stage on real envelopes: scored tweets, per-coin window rows, late tweets and dead
letters each land in their table; scores equal VADER's on the raw text."""

from __future__ import annotations

import orjson

from core.dead_letters import DeadLetters
from processors.sentiment import vader_analyzer
from sinks.hdf5 import Hdf5Sink
from stages.sentiment import TWEET_TOPIC, SentimentStage
from transports import Envelope

T0 = 1_700_000_000_000


def iso(ms: int) -> str:
    import datetime as dt

    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def tweet_env(seq: int, ms: int, text: str) -> Envelope:
    value = orjson.dumps({"id": str(1000 + seq), "text": text, "created_at": iso(ms),
                          "lang": "en", "author_id": "42"})  # fmt: skip
    return Envelope(TWEET_TOPIC, value, producer_id="tw-1", seq=seq, partition=0, offset=seq)


def test_tweets_windows_late_and_dead_letters(tmp_path) -> None:
    texts = ["$BTC to the moon, love it!", "$ETH is terrible, I hate this dump", "$BTC meh"]
    batch = [tweet_env(i, T0 + i * 700, texts[i % 3]) for i in range(9)]  # 0 .. 5.6 s
    batch += [tweet_env(9, T0 + 100, "$BTC late and happy")]  # behind the 1 s watermark
    batch += [Envelope(TWEET_TOPIC, b"\xff", seq=10),
              Envelope(TWEET_TOPIC, orjson.dumps({"id": "x", "text": "", "created_at": 1}))]
    dead = DeadLetters("sentiment")
    stage = SentimentStage(dead, ("1s", "1m"), 1000)
    out = {k: v for k, v in stage.process(batch).items()}
    for table, rows in stage.finish().items():
        out[table] = [*out.get(table, []), *rows]

    assert dead.counts == {"malformed_json": 1, "bad_id": 1}
    assert set(out) <= set(stage.tables())
    tweets = out["tweets"]
    assert [t["seq"] for t in tweets] == list(range(10))
    vader = vader_analyzer()
    for row in tweets:
        text = texts[row["seq"] % 3] if row["seq"] < 9 else "$BTC late and happy"
        assert row["compound"] == vader.polarity_scores(text)["compound"]
    late = out["late_tweets"]
    assert {r["window"] for r in late} == {"1s"} and late[0]["created_at_ms"] == T0 + 100
    per_minute = {r["coin"]: r for r in out["sentiment_1m"]}
    assert per_minute["BTC"]["tweets"] == 7  # 6 on time + the late one (its minute is open)
    assert per_minute["ETH"]["tweets"] == 3
    assert 0 < per_minute["BTC"]["share_positive"] <= 1

    with Hdf5Sink(tmp_path / "s.h5", stage.tables(), {}) as sink:
        for table, rows in out.items():
            sink.append(table, rows)
        assert sink.flush() is not None
