"""Every way a body or tweet can be wrong maps to one dead-letter kind; good tweets survive."""

from __future__ import annotations

import orjson
import pytest
from test_twitter_support import ListPublisher, tweet_producer

from core.dead_letters import DeadLetters
from core.recording import Frame
from producers.twitter.schema import (
    TweetRejected,
    check_tweet,
    created_at_ns,
    decode_body,
    encode_tweet,
)

GOOD = {"id": "1820000000000000000", "text": "$BTC up", "created_at": "2024-08-01T12:00:00.123Z",
        "author_id": "42", "lang": "en"}


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"data": [', "malformed_json"),
        (b'{"data": [{"text": "\xff"}]}', "invalid_utf8"),
        (b"[1, 2]", "bad_body"),
        (b'{"data": "x"}', "bad_body"),
        (b'{"errors": [{"title": "Operational Disconnect"}]}', "api_error"),
        (b'{"data": []}' + b" " * 200, "oversize_body"),
    ],
)
def test_bad_bodies(raw: bytes, kind: str) -> None:
    with pytest.raises(TweetRejected) as info:
        decode_body(raw, max_bytes=200)
    assert info.value.kind == kind


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"id": None}, "missing_field"),
        ({"text": None}, "missing_field"),
        ({"created_at": None}, "missing_field"),
        ({"id": 1820000000000000000}, "wrong_type"),
        ({"id": "18x"}, "bad_id"),
        ({"text": ["a"]}, "wrong_type"),
        ({"created_at": "yesterday"}, "bad_created_at"),
        ({"created_at": "2024-08-01T12:00:00"}, "bad_created_at"),
        ({"public_metrics": [1]}, "wrong_type"),
        ({"lang": 5}, "wrong_type"),
    ],
)
def test_bad_tweets(change: dict[str, object], kind: str) -> None:
    tweet = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(TweetRejected) as info:
        check_tweet(tweet)
    assert info.value.kind == kind


def test_created_at_exact_nanoseconds() -> None:
    assert created_at_ns("2024-08-01T12:00:00.123Z") == 1_722_513_600_123_000_000
    assert check_tweet(GOOD) == 1_722_513_600_123_000_000


def test_encode_adds_author_and_rejects_oversize() -> None:
    user = {"id": "42", "username": "u", "name": "U"}
    value = orjson.loads(encode_tweet(GOOD, {"42": user}))
    assert value == {**GOOD, "includes_users": [user]}
    assert orjson.loads(encode_tweet(GOOD, {})) == GOOD
    with pytest.raises(TweetRejected, match="exceeds"):
        encode_tweet({**GOOD, "text": "x" * 1000}, {}, max_bytes=500)


def test_pipeline_dead_letters_bad_tweet_and_publishes_neighbours_oldest_first() -> None:
    newer = {**GOOD, "id": "1820000000000000002"}
    bad = {**GOOD, "id": "1820000000000000001", "created_at": 17}
    body = orjson.dumps({"data": [newer, bad, GOOD], "meta": {"result_count": 3}})
    pub = ListPublisher()
    dead = DeadLetters("test")
    pipeline, decoder = tweet_producer(pub, dead)
    assert pipeline.handle(Frame(5, body)) == 2
    assert [e.key for e in pub.sent] == [GOOD["id"].encode(), newer["id"].encode()]
    assert dead.counts == {"wrong_type": 1}
    assert orjson.loads(dead.kept[0].raw)["id"] == bad["id"]
    assert pub.sent[0].header("recv_ns") == b"5"
    # The same body again: nothing new, counted as duplicates (defensive de-dup by id).
    assert pipeline.handle(Frame(6, body)) == 0
    assert decoder.duplicates == 2


def test_pipeline_respects_budget_and_transport_size_limit() -> None:
    tweets = [{**GOOD, "id": str(1820000000000000000 + i)} for i in range(10)]
    pub = ListPublisher(max_message_bytes=10_000)
    pipeline, _ = tweet_producer(pub, limit=4)
    assert pipeline.handle(Frame(1, orjson.dumps({"data": tweets}))) == 4
    assert pipeline.handle(Frame(2, orjson.dumps({"data": tweets}))) == 0  # the limit holds
    small = ListPublisher(max_message_bytes=50)
    dead = DeadLetters("test")
    tweet_producer(small, dead)[0].handle(Frame(1, orjson.dumps({"data": tweets[:1]})))
    assert dead.counts == {"too_large_for_transport": 1}
