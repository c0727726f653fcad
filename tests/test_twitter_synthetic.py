"""Synthetic tweets: deterministic, v2-shaped, valid for the producer's own schema."""

from __future__ import annotations

import orjson

from producers.twitter.schema import check_tweet, created_at_ns, decode_body
from producers.twitter.synthetic import (
    TweetGenerator,
    iso_ms,
    response_page,
    snowflake_ms,
    synthetic_frames,
)


def test_same_seed_same_tweets_different_seed_different() -> None:
    a = [t.tweet for t in TweetGenerator(seed=5, start_ms=1_722_513_600_000).take(200)]
    b = [t.tweet for t in TweetGenerator(seed=5, start_ms=1_722_513_600_000).take(200)]
    c = [t.tweet for t in TweetGenerator(seed=6, start_ms=1_722_513_600_000).take(200)]
    assert orjson.dumps(a) == orjson.dumps(b)
    assert a != c


def test_ids_are_increasing_snowflakes_matching_created_at() -> None:
    items = TweetGenerator(seed=1, rate=0.0).take(5000)  # > 4096 in one millisecond
    ids = [int(i.tweet["id"]) for i in items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for i in items[:50]:
        assert iso_ms(snowflake_ms(int(i.tweet["id"]))) == i.tweet["created_at"]
        assert int(i.user["id"]) > 0


def test_every_tweet_passes_the_schema_and_entities_point_at_the_text() -> None:
    sentiments = set()
    for item in TweetGenerator(seed=2).take(500):
        check_tweet(item.tweet)
        sentiments.add(item.sentiment)
        text = item.tweet["text"]
        for kind, key in (("cashtags", "tag"), ("hashtags", "tag"), ("mentions", "username")):
            for ent in item.tweet.get("entities", {}).get(kind, []):
                assert text[ent["start"] + 1 : ent["end"]] == ent[key]
        for url in item.tweet.get("entities", {}).get("urls", []):
            assert text[url["start"] : url["end"]] == url["url"]
    assert sentiments == {"positive", "negative", "neutral"}


def test_template_mix_has_negations_emoji_and_cashtags() -> None:
    texts = [i.tweet["text"] for i in TweetGenerator(seed=3).take(2000)]
    assert any("Not bullish" in t or "not going to" in t for t in texts)
    assert any("🚀" in t for t in texts) and any("$BTC" in t for t in texts)
    assert any("https://t.co/" in t for t in texts)


def test_response_page_shape_and_field_selection() -> None:
    items = TweetGenerator(seed=4).take(3)
    page = response_page(items, tweet_fields=("created_at",), user_fields=("verified",))
    assert set(page) == {"data", "includes"}
    assert set(page["data"][0]) == {"id", "text", "edit_history_tweet_ids", "created_at"}
    assert set(page["includes"]["users"][0]) == {"id", "name", "username", "verified"}
    body = decode_body(orjson.dumps(page))
    assert len(body.tweets) == 3


def test_synthetic_frames_are_stream_lines_with_author() -> None:
    gen = TweetGenerator(seed=9, start_ms=1_722_513_600_000)
    frames = list(zip(range(20), synthetic_frames(gen), strict=False))
    body = decode_body(frames[0][1].raw)
    assert len(body.tweets) == 1 and body.tweets[0]["author_id"] in body.users
    assert created_at_ns(body.tweets[0]["created_at"]) >= 1_722_513_600_000 * 10**6
    # received as created: the runtime paces them by these times, like a recording
    assert [f.recv_ns for _, f in frames] == [
        created_at_ns(decode_body(f.raw).tweets[0]["created_at"]) for _, f in frames]


def test_generated_times_keep_the_rate() -> None:
    """Gaps are drawn in fractions of a millisecond: at 1,000 tweets/s truncating each to whole
    ms would have made it ~1,700."""
    for rate in (5.0, 1000.0):
        items = TweetGenerator(seed=1, start_ms=1_722_513_600_000, rate=rate).take(3000)
        span_s = (snowflake_ms(int(items[-1].tweet["id"])) - 1_722_513_600_000) / 1000
        assert 0.9 * rate < len(items) / span_s < 1.1 * rate
