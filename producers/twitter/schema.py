"""Checks Twitter API v2 bodies and tweets before anything is published.

A body is what one HTTP response (recent search page) or one filtered-stream line carried:
``{"data": [tweet, ...] | tweet, "includes": {"users": [...]}, "meta": {...}, "errors": [...]}``.
Every way it can be wrong has a *kind* so the dead-letter store counts them apart: a whole body
can be ``invalid_utf8``, ``malformed_json``, ``oversize_body``, ``bad_body`` or ``api_error``;
a single tweet inside a good body can be ``missing_field``, ``wrong_type``, ``bad_id``,
``bad_created_at`` or ``oversize_tweet`` -- one bad tweet never costs its page neighbours.

Wire format on topic ``twitter.tweet`` (``TweetDecoder``): value = ``orjson.dumps`` of the
tweet object as the API sent it, plus ``includes_users`` (the ``includes.users`` entries for its
author, when the author expansion was requested); key = the tweet id as ASCII; event time =
``created_at``. Within one body tweets go out oldest first (the API sends newest first) so event
time mostly increases on the topic. JSON, never pickle: the original design pickled tweets, and
unpickling lets whoever can write to the topic run arbitrary code in the consumer.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from core.dead_letters import DeadLetters
from core.recording import Frame
from producers.runtime.frames import Outgoing, Rejected
from producers.runtime.progress import nonzero_counts

log = logging.getLogger("producers.twitter.schema")

TOPIC = "twitter.tweet"
#: What the live producer asks the API for unless ``--query`` says otherwise.
DEFAULT_QUERY = "($BTC OR $ETH OR bitcoin OR ethereum) -is:retweet lang:en"

MAX_BODY_BYTES = 16 * 1024 * 1024
#: A tweet is at most a few KB (280 chars, or 25k for long-form note tweets, plus entities).
MAX_TWEET_BYTES = 256 * 1024
#: Ids remembered for de-duplication: far more than one poll or stream reconnect can repeat.
DEDUP_CAPACITY = 200_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPTIONAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "lang": str,
    "author_id": str,
    "conversation_id": str,
    "public_metrics": dict,
    "entities": dict,
    "edit_history_tweet_ids": list,
    "referenced_tweets": list,
    "possibly_sensitive": bool,
    "source": str,
}


class TweetRejected(Rejected):
    """A body or tweet that cannot be published; ``kind`` is the dead-letter counter name."""


@dataclass(frozen=True, slots=True)
class Body:
    """A decoded body: its tweets in API order, the author objects by id, any partial errors."""

    tweets: list[Any]
    users: dict[str, dict[str, Any]]
    errors: list[Any]
    meta: dict[str, Any]


def decode_body(raw: bytes, max_bytes: int = MAX_BODY_BYTES) -> Body:
    """Parse one response body or stream line; raises ``TweetRejected`` for the whole body."""
    if len(raw) > max_bytes:
        raise TweetRejected("oversize_body", f"body of {len(raw)} bytes exceeds {max_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TweetRejected("invalid_utf8", f"body is not UTF-8: {exc}") from None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TweetRejected("malformed_json", f"body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise TweetRejected("bad_body", f"body is a JSON {type(obj).__name__}, not an object")
    data = obj.get("data")
    if data is None:
        tweets: list[Any] = []
    elif isinstance(data, list):
        tweets = data
    elif isinstance(data, dict):
        tweets = [data]  # filtered stream: one tweet per line
    else:
        raise TweetRejected("bad_body", f"'data' is a {type(data).__name__}")
    errors = obj.get("errors") or []
    if errors and not tweets:
        raise TweetRejected("api_error", f"API returned errors and no data: {errors!r:.300}")
    includes = obj.get("includes")
    users: dict[str, dict[str, Any]] = {}
    if isinstance(includes, dict) and isinstance(includes.get("users"), list):
        for user in includes["users"]:
            if isinstance(user, dict) and isinstance(user.get("id"), str):
                users[user["id"]] = user
    meta = obj.get("meta")
    return Body(
        tweets,
        users,
        errors if isinstance(errors, list) else [],
        meta if isinstance(meta, dict) else {},
    )


def created_at_ns(text: str) -> int:
    """``2024-08-01T12:00:00.123Z`` -> ns since the epoch, exact (integer arithmetic only)."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise TweetRejected("bad_created_at", f"created_at {text!r:.60} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise TweetRejected("bad_created_at", f"created_at {text!r:.60} has no time zone")
    ns = ((dt - _EPOCH) // _MICROSECOND) * 1000
    if not _MIN_NS <= ns <= _MAX_NS:  # envelopes carry event time as int64 ns (1678..2262)
        raise TweetRejected("bad_created_at", f"created_at {text!r:.60} is out of range")
    return ns


_MIN_NS, _MAX_NS = -(2**63), 2**63 - 1


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


def check_tweet(tweet: Any) -> int:
    """Validate one tweet object; returns its ``created_at`` in ns (the event time)."""
    if not isinstance(tweet, dict):
        raise TweetRejected("wrong_type", f"tweet is a JSON {type(tweet).__name__}, not an object")
    for name in ("id", "text", "created_at"):
        if name not in tweet:
            raise TweetRejected("missing_field", f"tweet has no {name!r} (fields: {sorted(tweet)})")
        if not isinstance(tweet[name], str):
            raise TweetRejected(
                "wrong_type", f"tweet {name!r} is a {type(tweet[name]).__name__}, not a string"
            )
    tweet_id = tweet["id"]
    if not (tweet_id.isascii() and tweet_id.isdigit() and len(tweet_id) <= 19
            and int(tweet_id) < 2**63):
        raise TweetRejected("bad_id", f"tweet id {tweet_id!r:.40} is not a decimal below 2**63")
    for name, expected in _OPTIONAL_TYPES.items():
        if name in tweet and not isinstance(tweet[name], expected):
            raise TweetRejected(
                "wrong_type", f"tweet {name!r} is a {type(tweet[name]).__name__}"
            )
    return created_at_ns(tweet["created_at"])


def encode_tweet(
    tweet: dict[str, Any], users: dict[str, dict[str, Any]], max_bytes: int = MAX_TWEET_BYTES
) -> bytes:
    """The wire value: the tweet as sent, plus ``includes_users`` for its author if known."""
    author = users.get(tweet.get("author_id", "")) if users else None
    value = orjson.dumps({**tweet, "includes_users": [author]} if author else tweet)
    if len(value) > max_bytes:
        raise TweetRejected("oversize_tweet", f"tweet of {len(value)} bytes exceeds {max_bytes}")
    return value


class RecentIds:
    """A bounded set of the last ``capacity`` ids (FIFO eviction), O(1) membership."""

    def __init__(self, capacity: int = DEDUP_CAPACITY) -> None:
        self._order: deque[str] = deque()
        self._set: set[str] = set()
        self._capacity = capacity

    def __contains__(self, tweet_id: object) -> bool:
        return tweet_id in self._set

    def add(self, tweet_id: str) -> None:
        if tweet_id in self._set:
            return
        self._order.append(tweet_id)
        self._set.add(tweet_id)
        if len(self._order) > self._capacity:
            self._set.discard(self._order.popleft())


class TweetDecoder:
    """The schema as the producer runtime uses it: a body in, its new tweets out, oldest first.

    A bad tweet is dead-lettered on its own (its JSON) and never costs its page neighbours; a
    tweet already published (search polls and stream reconnects can repeat) is counted, not
    sent again.
    """

    def __init__(
        self,
        dead_letters: DeadLetters,
        topic: str = TOPIC,
        max_tweet_bytes: int = MAX_TWEET_BYTES,
        dedup_capacity: int = DEDUP_CAPACITY,
    ) -> None:
        self.dead_letters = dead_letters
        self.topic = topic
        self.max_tweet_bytes = max_tweet_bytes
        self.tweets_seen = 0
        self.duplicates = 0
        self.api_partial_errors = 0
        self._seen = RecentIds(dedup_capacity)

    def decode(self, frame: Frame) -> list[Outgoing]:
        body = decode_body(frame.raw_bytes())
        if body.errors:
            if not self.api_partial_errors:
                log.info("API reported partial errors beside data (counted): %.200r", body.errors)
            self.api_partial_errors += len(body.errors)
        ready: list[tuple[int, str, int, bytes]] = []
        for tweet in body.tweets:
            self.tweets_seen += 1
            try:
                event_ns = check_tweet(tweet)
                value = encode_tweet(tweet, body.users, self.max_tweet_bytes)
            except TweetRejected as bad:
                self.dead_letters.add(bad.kind, bad.reason, orjson.dumps(tweet))
                continue
            ready.append((int(tweet["id"]), tweet["id"], event_ns, value))
        ready.sort()
        out: list[Outgoing] = []
        for _, tweet_id, event_ns, value in ready:
            if tweet_id in self._seen:
                self.duplicates += 1
                continue
            self._seen.add(tweet_id)
            out.append((self.topic, tweet_id.encode(), value, event_ns))
        return out

    def counters(self) -> dict[str, object]:
        return nonzero_counts({"duplicates": self.duplicates,
                               "api_partial_errors": self.api_partial_errors})
