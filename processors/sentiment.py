"""Tweets -> VADER scores, analysis tokens, coin tags, and per-coin window aggregates.

VADER scores the RAW text: it reads capitalisation ("GREAT" > "great"), punctuation ("!!!"),
degree words, negations and emoji, all of which preprocessing would destroy. The preprocessed
tokens (``processors.text``) are kept beside the scores for analysis (word counts, features),
never fed to VADER.

The analyzer is nltk's ``SentimentIntensityAnalyzer`` with the lexicon file shipped inside the
``vaderSentiment`` package (nltk's downloader cannot run here; nltk 3.10 refuses absolute
lexicon paths, so the file's folder goes first on ``nltk.data.path`` and the file is named
relatively). nltk's port skips vaderSentiment's emoji step, so emoji are first replaced by
their descriptions from the package's ``emoji_utf8_lexicon.txt``, as vaderSentiment does; with
that, compound scores equal vaderSentiment's (tests/test_sentiment.py measures it) except
where "no" precedes a rated word: nltk's port predates vaderSentiment 3.3's "no" rules, so
"no good news" scores +0.18 in nltk and -0.34 in vaderSentiment, "No problem at all" -0.60 vs
+0.31. vaderSentiment is right on those; ``engine="vadersentiment"`` selects it (both
engines' speed: README, "Stages", from benchmarks/test_bench_sentiment.py).
neg/neu/pos differ by up to ~0.06 between the two (different normalisation).

Aggregates per coin per window (count, mean compound, share positive ``compound >= 0.05``,
share negative ``<= -0.05``, VADER's own thresholds) use the same windowing core as candles:
same window starts, watermark, grace and late rows, by the tweet's ``created_at``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal, NamedTuple

import nltk
import numpy as np
import vaderSentiment
from nltk.sentiment.vader import SentimentIntensityAnalyzer
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer as VaderSentimentAnalyzer

from core.binance_limits import INT64_MAX
from core.dead_letters import DeadLetters
from processors.candles import DEFAULT_GRACE_MS, DEFAULT_WINDOWS
from processors.coins import CoinTagger
from processors.text import TweetPreprocessor
from processors.trade_parsing import DecodeError, load_object
from processors.windowing import LateEvent, PanedWindows

POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05
#: Aggregate key that receives every tweet, tagged or not (the market-wide mood).
ALL_COINS = "ALL"
_LEXICON_DIR = os.path.dirname(vaderSentiment.__file__)
_LEXICON_NAME = "vader_lexicon.txt"

#: Scored tweets. Object columns hold ``str``: a sink stores them as variable-length UTF-8.
#: ``tokens`` is the space-joined preprocessed token list, ``coins`` comma-joined codes.
TWEET_DTYPE = np.dtype(
    [
        ("tweet_id", "i8"),
        ("created_at_ms", "i8"),
        ("author_id", "i8"),
        ("lang", "S8"),
        ("neg", "f8"),
        ("neu", "f8"),
        ("pos", "f8"),
        ("compound", "f8"),
        ("coins", "O"),
        ("text", "O"),
        ("tokens", "O"),
    ]
)

SENTIMENT_DTYPE = np.dtype(
    [
        ("coin", "S24"),
        ("window", "S8"),
        ("window_ms", "i8"),
        ("start_ms", "i8"),
        ("end_ms", "i8"),
        ("tweets", "i8"),
        ("mean_compound", "f8"),
        ("share_positive", "f8"),
        ("share_negative", "f8"),
        ("closed", "?"),
    ]
)

LATE_TWEET_DTYPE = np.dtype(
    [
        ("coin", "S24"),
        ("window", "S8"),
        ("window_ms", "i8"),
        ("window_start_ms", "i8"),
        ("created_at_ms", "i8"),
        ("tweet_id", "i8"),
        ("compound", "f8"),
        ("watermark_ms", "i8"),
        ("lateness_ms", "i8"),
    ]
)


@cache
def _emoji_descriptions() -> dict[str, str]:
    table: dict[str, str] = {}
    with open(os.path.join(_LEXICON_DIR, "emoji_utf8_lexicon.txt"), encoding="utf-8") as fh:
        for line in fh:
            emoji, _, description = line.rstrip("\n").partition("\t")
            if emoji and description:
                table[emoji] = description
    return table


def describe_emoji(text: str) -> str:
    """Replace each emoji by its words ("😂" -> "face with tears of joy"), like vaderSentiment."""
    table = _emoji_descriptions()
    if all(ch not in table for ch in text):
        return text
    parts: list[str] = []
    after_space = True
    for ch in text:
        description = table.get(ch)
        if description is None:
            parts.append(ch)
            after_space = ch == " "
        else:
            if not after_space:
                parts.append(" ")
            parts.append(description)
            after_space = False
    return "".join(parts).strip()


def vader_analyzer() -> SentimentIntensityAnalyzer:
    """nltk's VADER with vaderSentiment's lexicon file (see the module docstring)."""
    if _LEXICON_DIR not in nltk.data.path:
        nltk.data.path.insert(0, _LEXICON_DIR)
    return SentimentIntensityAnalyzer(lexicon_file=_LEXICON_NAME)


class Tweet(NamedTuple):
    tweet_id: int
    created_at_ms: int
    text: str
    lang: str
    author_id: int
    entities: dict[str, Any]


def parse_created_at(value: Any) -> int:
    """ISO 8601 with a zone (``2024-08-01T12:34:56.000Z``) -> epoch ms; naive times refused."""
    if not isinstance(value, str):
        raise DecodeError("bad_created_at", f"created_at must be a string, got {value!r:.60}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise DecodeError("bad_created_at", f"created_at={value!r:.60} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise DecodeError("bad_created_at", f"created_at={value!r:.60} has no time zone")
    return math.floor(moment.timestamp() * 1000 + 0.5)


def _is_int64_text(value: object) -> bool:
    """ASCII decimal digits that fit the int64 id columns (``"١٢".isdigit()`` is True too)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 19
        and value.isascii()
        and value.isdigit()
        and int(value) <= INT64_MAX
    )


def decode_tweet(value: bytes) -> Tweet:
    """orjson bytes of one v2 tweet object -> ``Tweet``; ``DecodeError`` otherwise."""
    obj = load_object(value)
    try:
        raw_id, text, created = obj["id"], obj["text"], obj["created_at"]
    except KeyError as exc:
        raise DecodeError("missing_field", f"field {exc.args[0]!r} missing") from None
    if not _is_int64_text(raw_id):
        raise DecodeError("bad_id", f"id must be a decimal string below 2**63, got {raw_id!r:.40}")
    if not isinstance(text, str):
        raise DecodeError("bad_type", f"text must be a string, got {type(text).__name__}")
    author = obj.get("author_id", "")
    entities = obj.get("entities")
    return Tweet(
        int(raw_id),
        parse_created_at(created),
        text,
        str(obj.get("lang", "")),
        int(author) if _is_int64_text(author) else -1,
        entities if isinstance(entities, dict) else {},
    )


class ScoredTweet(NamedTuple):
    tweet: Tweet
    neg: float
    neu: float
    pos: float
    compound: float
    coins: list[str]
    tokens: list[str]


class TweetScorer:
    """VADER on the raw text + preprocessing + coin tags for one tweet.

    ``engine``: ``"nltk"`` (the issue's choice, default) or ``"vadersentiment"`` (see the
    module docstring for how they differ).
    """

    def __init__(
        self,
        preprocess: TweetPreprocessor | None = None,
        tagger: CoinTagger | None = None,
        engine: Literal["nltk", "vadersentiment"] = "nltk",
    ) -> None:
        self.preprocess = preprocess or TweetPreprocessor()
        self.tagger = tagger or CoinTagger()
        self.engine = engine
        if engine == "nltk":
            analyzer = vader_analyzer()
            self._score = lambda text: analyzer.polarity_scores(describe_emoji(text))
        elif engine == "vadersentiment":
            self._score = VaderSentimentAnalyzer().polarity_scores  # does its own emoji step
        else:
            raise ValueError(f"unknown VADER engine {engine!r}; use 'nltk' or 'vadersentiment'")

    def polarity(self, text: str) -> dict[str, float]:
        return self._score(text)

    def score(self, tweet: Tweet) -> ScoredTweet:
        s = self.polarity(tweet.text)
        return ScoredTweet(
            tweet,
            s["neg"],
            s["neu"],
            s["pos"],
            s["compound"],
            self.tagger.tag(tweet.text, tweet.entities),
            self.preprocess(tweet.text),
        )


class SentimentState:
    __slots__ = ("count", "negative", "positive", "sum_compound")

    def __init__(self, count: int, sum_compound: float, positive: int, negative: int) -> None:
        self.count = count
        self.sum_compound = sum_compound
        self.positive = positive
        self.negative = negative


@dataclass(slots=True)
class SentimentBatch:
    """Rows following ``TWEET_DTYPE``, ``SENTIMENT_DTYPE`` and ``LATE_TWEET_DTYPE``."""

    tweets: list[dict[str, Any]] = field(default_factory=list)
    aggregates: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)


class SentimentAggregator(PanedWindows[SentimentState, ScoredTweet]):
    """Per-coin window aggregates by ``created_at``; windows identical to the candles'."""

    def __init__(
        self,
        windows: Sequence[str | int] = DEFAULT_WINDOWS,
        grace_ms: int = DEFAULT_GRACE_MS,
        all_key: str | None = ALL_COINS,
    ) -> None:
        super().__init__(windows, grace_ms)
        self.all_key = all_key

    def new_state(self, event: ScoredTweet) -> SentimentState:
        c = event.compound
        return SentimentState(1, c, int(c >= POSITIVE_THRESHOLD), int(c <= NEGATIVE_THRESHOLD))

    def fold(self, state: SentimentState, event: ScoredTweet) -> None:
        c = event.compound
        state.count += 1
        state.sum_compound += c
        state.positive += c >= POSITIVE_THRESHOLD
        state.negative += c <= NEGATIVE_THRESHOLD

    def merge(self, into: SentimentState, other: SentimentState) -> None:
        into.count += other.count
        into.sum_compound += other.sum_compound
        into.positive += other.positive
        into.negative += other.negative

    def copy_state(self, state: SentimentState) -> SentimentState:
        return SentimentState(state.count, state.sum_compound, state.positive, state.negative)

    def add_scored(self, scored: Iterable[ScoredTweet]) -> tuple[list[dict], list[dict]]:
        """Fold scored tweets under each of their coins (and ``all_key``); closed rows, late."""
        self.check_open()
        late: list[LateEvent[ScoredTweet]] = []
        for item in scored:
            keys = list(item.coins)
            if self.all_key is not None:
                keys.append(self.all_key)
            for key in keys:
                self.add(key, item.tweet.created_at_ms, item, late)
        return self.rows(self.close_ready(), closed=True), [self._late_row(ev) for ev in late]

    def rows(
        self, items: list[tuple[str, int, int, SentimentState]], closed: bool
    ) -> list[dict[str, Any]]:
        return [
            {
                "coin": coin,
                "window": self.labels[size],
                "window_ms": size,
                "start_ms": start,
                "end_ms": start + size,
                "tweets": st.count,
                "mean_compound": st.sum_compound / st.count,
                "share_positive": st.positive / st.count,
                "share_negative": st.negative / st.count,
                "closed": closed,
            }
            for coin, size, start, st in items
        ]

    def _late_row(self, ev: LateEvent[ScoredTweet]) -> dict[str, Any]:
        return {
            "coin": ev.key,
            "window": self.labels[ev.window_ms],
            "window_ms": ev.window_ms,
            "window_start_ms": ev.window_start_ms,
            "created_at_ms": ev.event_time_ms,
            "tweet_id": ev.event.tweet.tweet_id,
            "compound": ev.event.compound,
            "watermark_ms": ev.watermark_ms,
            "lateness_ms": ev.lateness_ms,
        }


class SentimentProcessor:
    """Decode, score, tag and aggregate batches of tweet payloads (no I/O: the service loop
    subscribes and writes the returned rows)."""

    def __init__(
        self,
        dead_letters: DeadLetters,
        windows: Sequence[str | int] = DEFAULT_WINDOWS,
        grace_ms: int = DEFAULT_GRACE_MS,
        scorer: TweetScorer | None = None,
        all_key: str | None = ALL_COINS,
    ) -> None:
        self.dead_letters = dead_letters
        self.scorer = scorer or TweetScorer()
        self.aggregator = SentimentAggregator(windows, grace_ms, all_key)

    def process_batch(self, values: Iterable[bytes]) -> SentimentBatch:
        scored: list[ScoredTweet] = []
        for value in values:
            try:
                tweet = decode_tweet(value)
            except DecodeError as exc:
                self.dead_letters.add(exc.kind, exc.reason, value)
                continue
            scored.append(self.scorer.score(tweet))
        aggregates, late = self.aggregator.add_scored(scored)
        return SentimentBatch([tweet_row(s) for s in scored], aggregates, late)

    def flush(self) -> SentimentBatch:
        """Close every open window at shutdown; terminal."""
        return SentimentBatch(
            aggregates=self.aggregator.rows(self.aggregator.flush(), closed=True)
        )


def tweet_row(scored: ScoredTweet) -> dict[str, Any]:
    tweet = scored.tweet
    return {
        "tweet_id": tweet.tweet_id,
        "created_at_ms": tweet.created_at_ms,
        "author_id": tweet.author_id,
        "lang": tweet.lang[:8],
        "neg": scored.neg,
        "neu": scored.neu,
        "pos": scored.pos,
        "compound": scored.compound,
        "coins": ",".join(scored.coins),
        "text": tweet.text,
        "tokens": " ".join(scored.tokens),
    }
