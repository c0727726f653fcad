"""Synthetic tweets in the exact Twitter API v2 shape, deterministic under a seed.

Needs no network and no recording, so the offline demo and the API emulator have a tweet flow
whose sentiment is known: each tweet comes from a positive, negative or neutral template, with
the wording that trips naive scorers (negations like "not bullish", cashtags, emoji, URLs).
Ids are snowflakes (ms since the Twitter epoch << 22 | worker << 12 | sequence), so they grow
with ``created_at`` exactly like real ids and ``since_id`` paging works on them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from core.recording import Frame

TWITTER_EPOCH_MS = 1_288_834_974_657

#: tweet.fields a v2 response always carries, whatever was requested.
ALWAYS_FIELDS = ("id", "text", "edit_history_tweet_ids")
DEFAULT_TWEET_FIELDS = ("created_at", "lang", "public_metrics", "entities", "author_id")
DEFAULT_USER_FIELDS = ("created_at", "public_metrics", "verified")

COINS = (
    ("BTC", "bitcoin", "Bitcoin"),
    ("ETH", "ethereum", "Ethereum"),
    ("SOL", "solana", "Solana"),
    ("BNB", "bnb", "BNB"),
    ("XRP", "xrp", "XRP"),
    ("DOGE", "dogecoin", "Dogecoin"),
    ("ADA", "cardano", "Cardano"),
)

POSITIVE = (
    "${tag} looking strong, breaking out above {price} {up}",
    "Just bought more {coin}. Long term this is going to the moon {up}",
    "{coin} is so bullish right now, up {pct}% today! #{hashtag} {url}",
    "Never selling my ${tag}. Best decision ever {up}",
    "Great news for {coin} holders, adoption keeps growing #{hashtag} {url}",
    "{mention} called it, ${tag} up {pct}% and still climbing {up}",
    "Not worried at all about ${tag}, fundamentals are excellent",
)
NEGATIVE = (
    "${tag} is crashing hard, down {pct}% {down} #{hashtag}",
    "Not bullish on {coin} anymore. This looks like a rug {down}",
    "Sold all my ${tag}, terrible week and it keeps dumping {down} {url}",
    "{coin} fees are awful and the network is down again {down}",
    "{mention} this is a scam, ${tag} holders got wrecked {down}",
    "Can't believe {coin} lost {price} support. Ugly, ugly chart {down}",
    "${tag} is not going to recover this year, worst trade of my life",
)
NEUTRAL = (
    "${tag} trading at {price} right now #{hashtag}",
    "What is everyone's view on {coin} this week? {mention}",
    "{coin} network upgrade scheduled for next month {url}",
    "Daily ${tag} volume update: {pct}% change over 24h #{hashtag}",
    "Reading about {coin} staking and custody options {url}",
    "${tag} and $ETH moving sideways today",
)
TEMPLATES = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
SENTIMENT_WEIGHTS = {"positive": 0.4, "negative": 0.3, "neutral": 0.3}
_SENTIMENTS = list(SENTIMENT_WEIGHTS)
_WEIGHTS = list(SENTIMENT_WEIGHTS.values())
_TCO_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
UP_EMOJI = ("🚀", "📈", "🔥", "💎🙌", "🤑")
DOWN_EMOJI = ("📉", "😭", "💀", "🩸", "😡")
USERNAMES = (
    "satoshi_fan", "hodl_queen", "chart_wizard", "degen_dan", "moon_boy_42", "defi_dora",
    "cryptonews_bot", "whale_alerts", "tax_loss_tom", "ledger_lisa", "altcoin_ana", "gm_gary",
)


@dataclass(frozen=True, slots=True)
class SyntheticTweet:
    """One generated tweet, its author (an ``includes.users`` entry) and its intended sentiment."""

    tweet: dict[str, Any]
    user: dict[str, Any]
    sentiment: str


def snowflake(ms: int, worker: int, sequence: int) -> int:
    return ((ms - TWITTER_EPOCH_MS) << 22) | ((worker & 0x3FF) << 12) | (sequence & 0xFFF)


def snowflake_ms(tweet_id: int) -> int:
    return (tweet_id >> 22) + TWITTER_EPOCH_MS


def iso_ms(ms: int) -> str:
    """``2024-08-01T12:00:00.123Z``: the v2 ``created_at`` format (millisecond precision)."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def select_fields(
    obj: dict[str, Any], fields: Iterable[str], always: Iterable[str] = ALWAYS_FIELDS
) -> dict[str, Any]:
    """Keep only what a v2 request asked for (``tweet.fields``/``user.fields``), API order."""
    wanted = set(fields) | set(always)
    return {k: v for k, v in obj.items() if k in wanted}


class TweetGenerator:
    """Seeded stream of tweets; ``rate`` (tweets/s) spaces ``created_at`` with Poisson gaps."""

    def __init__(
        self, seed: int = 0, start_ms: int | None = None, rate: float = 5.0, users: int = 12
    ) -> None:
        self._rng = random.Random(seed)
        self._ms = start_ms if start_ms is not None else 1_722_513_600_000  # 2024-08-01 12:00Z
        self._fraction_ms = 0.0  # gaps are drawn in fractions of a ms: the mean rate stays exact
        self._rate = rate
        self._seq = 0
        self._worker = self._rng.randrange(1024)
        self._users = [self._make_user(i) for i in range(users)]

    def _make_user(self, index: int) -> dict[str, Any]:
        rng = self._rng
        joined = 1_293_840_000_000 + rng.randrange(360_000_000_000)  # 2011..2022: snowflake era
        name = USERNAMES[index % len(USERNAMES)] + ("" if index < len(USERNAMES) else str(index))
        return {
            "id": str(snowflake(joined, rng.randrange(1024), rng.randrange(4096))),
            "name": name.replace("_", " ").title(),
            "username": name,
            "created_at": iso_ms(joined),
            "verified": rng.random() < 0.1,
            "public_metrics": {
                "followers_count": int(rng.paretovariate(1.2) * 50),
                "following_count": rng.randrange(2000),
                "tweet_count": rng.randrange(50_000),
                "listed_count": rng.randrange(100),
            },
        }

    def _text(self, sentiment: str) -> str:
        rng = self._rng
        tag, coin_word, coin_name = rng.choice(COINS)
        slots = {
            "tag": tag,
            "coin": rng.choice((coin_name, coin_word, "$" + tag)),
            "hashtag": rng.choice((coin_name, "crypto", tag, "HODL")),
            "price": f"${rng.uniform(0.1, 70_000):,.2f}",
            "pct": f"{rng.uniform(0.5, 25):.1f}",
            "up": rng.choice(UP_EMOJI),
            "down": rng.choice(DOWN_EMOJI),
            "url": "https://t.co/" + "".join(rng.choices(_TCO_ALPHABET, k=10)),
            "mention": "@" + rng.choice(USERNAMES),
        }
        return rng.choice(TEMPLATES[sentiment]).format(**slots)

    def __iter__(self) -> Iterator[SyntheticTweet]:
        return self

    def __next__(self) -> SyntheticTweet:
        rng = self._rng
        if self._rate > 0:
            gap = rng.expovariate(self._rate) * 1000 + self._fraction_ms
            self._fraction_ms = gap % 1.0
            self._ms += int(gap)
        sentiment = rng.choices(_SENTIMENTS, weights=_WEIGHTS)[0]
        text = self._text(sentiment)
        user = rng.choice(self._users)
        self._seq = (self._seq + 1) % 4096
        if self._seq == 0:
            self._ms += 1  # 4096 ids used in this millisecond: the next id must still be larger
        tweet_id = str(snowflake(self._ms, self._worker, self._seq))
        tweet = {
            "id": tweet_id,
            "text": text,
            "edit_history_tweet_ids": [tweet_id],
            "created_at": iso_ms(self._ms),
            "lang": "en",
            "author_id": user["id"],
            "public_metrics": {
                "retweet_count": int(rng.paretovariate(1.5)) - 1,
                "reply_count": int(rng.paretovariate(1.8)) - 1,
                "like_count": int(rng.paretovariate(1.1) * 2) - 2,
                "quote_count": int(rng.paretovariate(2.5)) - 1,
                "bookmark_count": int(rng.paretovariate(2.0)) - 1,
                "impression_count": int(rng.paretovariate(1.0) * 40),
            },
            "entities": entities_of(text, self._users),
        }
        if not tweet["entities"]:
            del tweet["entities"]
        return SyntheticTweet(tweet, user, sentiment)

    def advance_to(self, ms: int) -> None:
        """Move the clock forward to ``ms`` (never back: ids must keep increasing)."""
        self._ms = max(self._ms, ms)

    def take(self, n: int) -> list[SyntheticTweet]:
        return [next(self) for _ in range(n)]


def entities_of(text: str, users: list[dict[str, Any]]) -> dict[str, Any]:
    """v2 ``entities`` with code-point ``start``/``end`` like the API (Python str indices)."""
    out: dict[str, list[dict[str, Any]]] = {}
    by_name = {u["username"]: u["id"] for u in users}
    for start, word in _words(text):
        end = start + len(word)
        if word.startswith("$") and word[1:].isalpha() and word[1:].isupper():
            out.setdefault("cashtags", []).append({"start": start, "end": end, "tag": word[1:]})
        elif word.startswith("#") and len(word) > 1:
            out.setdefault("hashtags", []).append({"start": start, "end": end, "tag": word[1:]})
        elif word.startswith("@") and len(word) > 1:
            mention: dict[str, Any] = {"start": start, "end": end, "username": word[1:]}
            if word[1:] in by_name:
                mention["id"] = by_name[word[1:]]
            out.setdefault("mentions", []).append(mention)
        elif word.startswith("https://t.co/"):
            out.setdefault("urls", []).append(
                {
                    "start": start,
                    "end": end,
                    "url": word,
                    "expanded_url": "https://example.com/crypto/" + word[-10:],
                    "display_url": "example.com/crypto/" + word[-10:],
                }
            )
    return out


def _words(text: str) -> Iterator[tuple[int, str]]:
    start = 0
    for part in text.split(" "):
        stripped = part.rstrip(".,!?:")
        if stripped:
            yield start, stripped
        start += len(part) + 1


def response_page(
    items: list[SyntheticTweet],
    tweet_fields: Iterable[str] = DEFAULT_TWEET_FIELDS,
    user_fields: Iterable[str] | None = DEFAULT_USER_FIELDS,
) -> dict[str, Any]:
    """A ``{"data": [...], "includes": {"users": [...]}}`` body as recent search returns it."""
    tweet_fields = tuple(tweet_fields)
    body: dict[str, Any] = {"data": [select_fields(i.tweet, tweet_fields) for i in items]}
    if user_fields is not None:
        users: dict[str, dict[str, Any]] = {}
        for i in items:
            users.setdefault(
                i.user["id"], select_fields(i.user, user_fields, ("id", "name", "username"))
            )
        body["includes"] = {"users": list(users.values())}
    return body


def synthetic_frames(
    generator: Iterable[SyntheticTweet],
    tweet_fields: Iterable[str] = DEFAULT_TWEET_FIELDS,
    user_fields: Iterable[str] | None = DEFAULT_USER_FIELDS,
) -> Iterator[Frame]:
    """One filtered-stream-shaped body per tweet, received the instant it was created (the
    generator's ``rate`` spaces them; the producer runtime paces them like a recording)."""
    tweet_fields = tuple(tweet_fields)
    user_fields = tuple(user_fields) if user_fields is not None else None
    for item in generator:
        body: dict[str, Any] = {"data": select_fields(item.tweet, tweet_fields)}
        if user_fields is not None:
            body["includes"] = {
                "users": [select_fields(item.user, user_fields, ("id", "name", "username"))]
            }
        yield Frame(snowflake_ms(int(item.tweet["id"])) * 1_000_000, orjson.dumps(body))
