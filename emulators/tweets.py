"""The tweets the Twitter emulator serves: its own model of API v2 data, not the producer's.

The emulator stands in for Twitter when tests check the producer; if it generated tweets with
the producer's own generator, a shape both got wrong would pass unnoticed. So this model is
written from the API documentation alone: snowflake ids that encode ``created_at`` (``since_id``
paging works on them), v2 field names, ``entities`` with code-point offsets, authors for the
``includes.users`` expansion.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Twitter's snowflake epoch (2010-11-04T01:42:54.657Z), ms.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
#: Fields every v2 tweet or user object carries whatever ``tweet.fields`` asked for.
BASE_FIELDS = ("id", "text", "edit_history_tweet_ids")
COINS = ("BTC", "ETH", "SOL", "ADA", "XRP", "DOGE")
PHRASES = (
    "{coin} breaking out, next stop the moon",
    "Bought more {coin} on the dip today",
    "{coin} looks weak, selling before it dumps further",
    "Terrible day for {coin} holders",
    "What do you think about {coin} this week {mention}",
    "{coin} volume up {pct}% in 24h {tag}",
    "{coin} and $ETH flat again {link}",
)
HANDLES = ("alice_trades", "bob_hodls", "carol_charts", "dave_defi", "erin_onchain", "frank_fx")


def snowflake(ms: int, worker: int, sequence: int) -> int:
    """A v2 id: ms since the epoch in the top bits, then worker (10 bits) and sequence (12)."""
    return ((ms - SNOWFLAKE_EPOCH_MS) << 22) | ((worker % 1024) << 12) | (sequence % 4096)


def created_at(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def select_fields(
    obj: dict[str, Any], fields: Iterable[str], always: Iterable[str] = BASE_FIELDS
) -> dict[str, Any]:
    """The object as a request for ``fields`` (``tweet.fields``/``user.fields``) sees it."""
    keep = {*fields, *always}
    return {name: value for name, value in obj.items() if name in keep}


@dataclass(frozen=True, slots=True)
class EmulatedTweet:
    """A tweet as the API stores it, and its author (an ``includes.users`` object)."""

    tweet: dict[str, Any]
    user: dict[str, Any]


class TweetSource:
    """Seeded tweets with increasing ids, about ``rate`` per second of ``created_at`` time."""

    def __init__(self, seed: int = 0, start_ms: int | None = None, rate: float = 5.0) -> None:
        self._rng = random.Random(f"emulated-tweets-{seed}")
        self._now_ms = start_ms if start_ms is not None else 1_700_000_000_000
        self._rate = rate
        self._sequence = 0
        self._worker = self._rng.randrange(1024)
        self._users = [self._user(handle) for handle in HANDLES]

    def _user(self, handle: str) -> dict[str, Any]:
        rng = self._rng
        joined_ms = rng.randrange(1_300_000_000_000, 1_650_000_000_000)
        return {
            "id": str(snowflake(joined_ms, rng.randrange(1024), rng.randrange(4096))),
            "name": handle.split("_")[0].capitalize(),
            "username": handle,
            "created_at": created_at(joined_ms),
            "verified": rng.random() < 0.2,
            "public_metrics": {"followers_count": rng.randrange(10, 100_000),
                               "following_count": rng.randrange(1_000),
                               "tweet_count": rng.randrange(20_000),
                               "listed_count": rng.randrange(50)},
        }

    def advance_to(self, ms: int) -> None:
        """Move the clock to ``ms`` if that is later (ids never go back)."""
        self._now_ms = max(self._now_ms, ms)

    def take(self, n: int) -> list[EmulatedTweet]:
        return [self._next() for _ in range(n)]

    def _next(self) -> EmulatedTweet:
        rng = self._rng
        self._now_ms += round(rng.expovariate(self._rate) * 1000) if self._rate > 0 else 0
        self._sequence += 1
        if self._sequence % 4096 == 0:
            self._now_ms += 1  # this millisecond's sequence numbers are used up
        tweet_id = str(snowflake(self._now_ms, self._worker, self._sequence))
        user = rng.choice(self._users)
        text = rng.choice(PHRASES).format(
            coin="$" + rng.choice(COINS), mention="@" + rng.choice(HANDLES),
            pct=rng.randrange(1, 40), tag="#crypto",
            link="https://t.co/" + "".join(rng.choices("abcdefghjkmnpqrstuvwxyz23456789", k=10)),
        )
        tweet: dict[str, Any] = {
            "id": tweet_id,
            "text": text,
            "edit_history_tweet_ids": [tweet_id],
            "created_at": created_at(self._now_ms),
            "lang": "en",
            "author_id": user["id"],
            "public_metrics": {"retweet_count": rng.randrange(20), "reply_count": rng.randrange(10),
                               "like_count": rng.randrange(200), "quote_count": rng.randrange(5),
                               "bookmark_count": rng.randrange(5),
                               "impression_count": rng.randrange(10_000)},
        }
        entities = self._entities(text)
        if entities:
            tweet["entities"] = entities
        return EmulatedTweet(tweet, user)

    def _entities(self, text: str) -> dict[str, list[dict[str, Any]]]:
        """Cashtags, hashtags, mentions and links, ``start``/``end`` in code points as in v2."""
        ids = {u["username"]: u["id"] for u in self._users}
        found: dict[str, list[dict[str, Any]]] = {}
        position = 0
        for word in text.split(" "):
            start, end = position, position + len(word)
            position = end + 1
            if word.startswith("$") and word[1:].isalpha():
                found.setdefault("cashtags", []).append({"start": start, "end": end,
                                                         "tag": word[1:]})
            elif word.startswith("#"):
                found.setdefault("hashtags", []).append({"start": start, "end": end,
                                                         "tag": word[1:]})
            elif word.startswith("@"):
                found.setdefault("mentions", []).append({"start": start, "end": end,
                                                         "username": word[1:],
                                                         "id": ids[word[1:]]})
            elif word.startswith("https://"):
                found.setdefault("urls", []).append({
                    "start": start, "end": end, "url": word,
                    "expanded_url": f"https://example.org/{word[-10:]}",
                    "display_url": f"example.org/{word[-10:]}",
                })
        return found
