"""The sentiment stage: tweets in, scored tweets + per-coin window aggregates out.

Tables: ``tweets`` (scores, coins, text and preprocessed tokens, plus transport metadata),
``sentiment_<w>`` per window size (aligned to the candle windows so a notebook can join price
and mood on ``start_ms``), ``late_tweets``, and the sink's ``gaps`` and ``dead_letters``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

import numpy as np

from core.dead_letters import DeadLetters
from processors.candles import DEFAULT_GRACE_MS, DEFAULT_WINDOWS
from processors.sentiment import (
    LATE_TWEET_DTYPE,
    SENTIMENT_DTYPE,
    TWEET_DTYPE,
    SentimentAggregator,
    SentimentState,
    TweetScorer,
    decode_tweet,
    tweet_row,
)
from processors.trade_parsing import DecodeError
from processors.window_state import restore_windows, snapshot_windows
from processors.windowing import window_label
from sinks.hdf5_schema import TWEET_TEXT_BYTES
from stages.candles import MAX_FUTURE_MS
from stages.runner import Rows, Stage
from transports import Envelope

TWEET_TOPIC = "twitter.tweet"

#: ``TWEET_DTYPE`` with its Python-string columns made fixed width (SWMR cannot grow
#: variable-length strings; values are cut at a UTF-8 boundary), plus where each tweet travelled.
_FIXED_WIDTH = {"coins": "S64", "text": f"S{TWEET_TEXT_BYTES}", "tokens": f"S{TWEET_TEXT_BYTES}"}
TWEETS_DTYPE = np.dtype(
    [(name, _FIXED_WIDTH.get(name, TWEET_DTYPE[name].str)) for name in TWEET_DTYPE.names or ()]
    + [
        ("publish_time_ns", "i8"),
        ("receive_time_ns", "i8"),
        ("producer_id", "S64"),
        ("seq", "i8"),
        ("partition", "i4"),
        ("offset", "i8"),
    ]
)


class SentimentStage(Stage):
    name = "sentiment"
    topics = (TWEET_TOPIC,)

    def __init__(
        self,
        dead_letters: DeadLetters,
        windows: Sequence[str] = DEFAULT_WINDOWS,
        grace_ms: int = DEFAULT_GRACE_MS,
        scorer: TweetScorer | None = None,
    ) -> None:
        super().__init__(dead_letters)
        self.scorer = scorer or TweetScorer()
        self.aggregator = SentimentAggregator(windows, grace_ms)
        self.labels = [window_label(size) for size in self.aggregator.sizes_ms]

    def tables(self) -> Mapping[str, np.dtype]:
        out: dict[str, np.dtype] = {"tweets": TWEETS_DTYPE, "late_tweets": LATE_TWEET_DTYPE}
        for label in self.labels:
            out[f"sentiment_{label}"] = SENTIMENT_DTYPE
        return out

    def process(self, batch: list[Envelope]) -> Mapping[str, Rows]:
        scored = []
        tweets = []
        future_limit_ms = time.time_ns() // 1_000_000 + MAX_FUTURE_MS
        for env in batch:
            if env.topic != TWEET_TOPIC:
                continue
            try:
                tweet = decode_tweet(env.value)
                if tweet.created_at_ms > future_limit_ms:
                    raise DecodeError("future_time", "created_at is over 1 h ahead")
                item = self.scorer.score(tweet)
            except DecodeError as exc:
                self.dead_letters.add(exc.kind, exc.reason, env.value, source="sentiment")
                continue
            scored.append(item)
            row = tweet_row(item)
            row.update(
                publish_time_ns=env.publish_time_ns,
                receive_time_ns=env.receive_time_ns,
                producer_id=env.producer_id,
                seq=env.seq,
                partition=env.partition,
                offset=env.offset,
            )
            tweets.append(row)
        aggregates, late = self.aggregator.add_scored(scored)
        out: dict[str, Rows] = {}
        if tweets:
            out["tweets"] = tweets
        if late:
            out["late_tweets"] = late
        self._split(out, aggregates)
        return out

    def finish(self) -> Mapping[str, Rows]:
        out: dict[str, Rows] = {}
        self._split(out, self.aggregator.rows(self.aggregator.flush(), closed=True))
        return out

    def snapshot(self) -> bytes:
        return json.dumps(snapshot_windows(self.aggregator, SentimentState)).encode()

    def restore(self, state: bytes) -> None:
        if state:
            restore_windows(self.aggregator, SentimentState, json.loads(state))

    @staticmethod
    def _split(out: dict[str, Rows], rows: list[dict]) -> None:
        for row in rows:
            table = out.setdefault(f"sentiment_{row['window']}", [])
            assert isinstance(table, list)
            table.append(row)
