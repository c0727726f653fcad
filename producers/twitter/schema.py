"""Checks Twitter API v2 bodies and tweets before anything is published.

A body is what one HTTP response (recent search page) or one filtered-stream line carried:
``{"data": [tweet, ...] | tweet, "includes": {"users": [...]}, "meta": {...}, "errors": [...]}``.
Every way it can be wrong has a *kind* so the dead-letter store counts them apart: a whole body
can be ``invalid_utf8``, ``malformed_json``, ``oversize_body``, ``bad_body`` or ``api_error``;
a single tweet inside a good body can be ``missing_field``, ``wrong_type``, ``bad_id``,
``bad_created_at`` or ``oversize_tweet`` -- one bad tweet never costs its page neighbours.

The published value is ``orjson.dumps`` of the tweet object as the API sent it, plus
``includes_users`` (the ``includes.users`` entries for its author, when the author expansion
was requested). JSON, never pickle: the original design pickled tweets, and unpickling lets
whoever can write to the topic run arbitrary code in the consumer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_BODY_BYTES = 16 * 1024 * 1024
#: A tweet is at most a few KB (280 chars, or 25k for long-form note tweets, plus entities).
MAX_TWEET_BYTES = 256 * 1024

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


@dataclass(frozen=True, slots=True)
class Frame:
    """One body as received (a recent-search page or a filtered-stream line), untouched."""

    recv_ns: int
    raw: bytes


class TweetRejected(ValueError):
    """A body or tweet that cannot be published; ``kind`` is the dead-letter counter name."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


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
