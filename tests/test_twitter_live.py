"""The live producer's real code path (tweepy -> requests -> socket) against the emulator."""

from __future__ import annotations

import logging
import threading
import time

import orjson
import pytest
from test_twitter_support import ListPublisher, ids_of, tweet_producer

from core.dead_letters import DeadLetters
from core.errors import UserError
from emulators.twitter import TwitterEmulator
from producers.runtime.producer import drive
from producers.runtime.stop import StopAfter
from producers.twitter.live import ApiCaller, ApiCounters, FilteredStream, SearchPoller, make_client
from producers.twitter.synthetic import DEFAULT_TWEET_FIELDS, DEFAULT_USER_FIELDS

TOKEN = "test-token-7f3a9c-never-print-me"


def poller(emu: TwitterEmulator, stop: StopAfter, token: str = TOKEN, **kwargs) -> SearchPoller:  # type: ignore[no-untyped-def]
    caller = ApiCaller(stop, ApiCounters(), emu.url)
    kwargs.setdefault("interval_s", 0.05)
    return SearchPoller(make_client(token, emu.url), caller, tweet_fields=DEFAULT_TWEET_FIELDS,
                        user_fields=DEFAULT_USER_FIELDS, max_results=10, **kwargs)


@pytest.fixture
def emu():  # type: ignore[no-untyped-def]
    with TwitterEmulator(bearer_token=TOKEN, seed=3, keepalive_s=0.2) as e:
        yield e


def test_since_id_paging_publishes_each_tweet_once_across_polls(emu: TwitterEmulator) -> None:
    first = emu.add_tweets(25)
    stop = StopAfter()
    p = poller(emu, stop, first_poll_pages=5)
    pub = ListPublisher()
    pipeline, decoder = tweet_producer(pub, DeadLetters("test"))
    frames = p.frames()
    later: list = []

    def feed_then_stop() -> None:
        # New tweets while polling: the next polls must fetch exactly these (since_id).
        for _ in range(3):
            while p.caller.counters.polls < len(later) // 12 + 1:
                time.sleep(0.01)
            later.extend(emu.add_tweets(12))
        deadline = time.monotonic() + 10
        while len(pub.sent) < 25 + 36 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # a few more polls that must publish nothing
        stop.event.set()

    t = threading.Thread(target=feed_then_stop)
    t.start()
    drive(pipeline, frames, stop)
    t.join()
    expected = sorted(int(i.tweet["id"]) for i in first + later)
    got = [int(i) for i in ids_of(pub)]
    assert sorted(got) == expected
    assert len(got) == len(set(got))  # exactly once
    assert decoder.duplicates == 0  # since_id did the work, not the de-dup set
    since_ids = [q["since_id"][0] for m, path, q in emu.requests if "since_id" in q]
    assert since_ids, "later polls must send since_id"
    # Tweets carry their API fields, the author, the event time and the receive time.
    env = pub.sent[0]
    tweet = orjson.loads(env.value)
    assert {"id", "text", "created_at", "lang", "public_metrics", "author_id"} <= tweet.keys()
    assert tweet["includes_users"][0]["id"] == tweet["author_id"]
    assert env.topic == "twitter.tweet" and env.key == tweet["id"].encode()
    assert env.event_time_ns > 1_600_000_000 * 10**9
    assert int(env.header("recv_ns") or b"0") >= env.event_time_ns


def test_pagination_follows_next_token_within_one_poll(emu: TwitterEmulator) -> None:
    emu.add_tweets(35)
    stop = StopAfter()
    p = poller(emu, stop, first_poll_pages=10)
    frames = list(_one_poll(p))
    assert len(frames) == 4  # 10 + 10 + 10 + 5
    tokens = [q.get("next_token") for _, path, q in emu.requests if path.endswith("recent")]
    assert tokens[0] is None and all(tokens[1:4])
    pub = ListPublisher()
    pipeline, _ = tweet_producer(pub, DeadLetters("test"))
    for f in frames:
        pipeline.handle(f)
    assert len(set(ids_of(pub))) == 35


def _one_poll(p: SearchPoller) -> list:  # type: ignore[type-arg]
    return list(p._poll())


def test_first_poll_reads_only_the_newest_pages(emu: TwitterEmulator) -> None:
    items = emu.add_tweets(30)
    p = poller(emu, StopAfter(), first_poll_pages=1)
    frames = _one_poll(p)
    assert len(frames) == 1
    assert p.since_id == max(i.tweet["id"] for i in items)


@pytest.mark.slow
def test_rate_limit_exhausted_waits_until_reset_and_resumes() -> None:
    # 2 requests per 2 s window: the third request must wait for the reset header's instant.
    with TwitterEmulator(bearer_token=TOKEN, search_limit=2, window_s=2.0) as emu:
        emu.add_tweets(10)
        stop = StopAfter()
        p = poller(emu, stop, interval_s=0.0)
        frames = p.frames()
        t0 = time.monotonic()
        for _ in range(3):
            next(frames)
        waited = time.monotonic() - t0
        stop.event.set()
        counters = p.caller.counters
        assert counters.rate_limit_waits == 1
        assert waited >= 0.5  # slept until the window reset, not hammering
        # It never ran into a 429: it read remaining=0 from the headers and slept first.
        assert emu.status_counts[429] == 0 and emu.status_counts[200] == 3


@pytest.mark.slow
def test_429_burst_sleeps_until_reset_then_retries_same_page() -> None:
    with TwitterEmulator(bearer_token=TOKEN, window_s=1.0) as emu:
        emu.add_tweets(10)
        emu.inject("status_429", 2)
        stop = StopAfter()
        p = poller(emu, stop)
        frames = _one_poll(p)
        assert len(frames) == 1 and b'"data"' in frames[0].raw
        assert p.caller.counters.rate_limit_waits == 2


def test_503_is_retried_with_backoff(emu: TwitterEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("producers.twitter.live.BACKOFF_START_S", 0.05)
    emu.add_tweets(10)
    emu.inject("status_503", 2)
    p = poller(emu, StopAfter())
    assert len(_one_poll(p)) == 1
    assert p.caller.counters.retries == 2


def test_wrong_token_is_one_clear_error(emu: TwitterEmulator) -> None:
    emu.add_tweets(5)
    p = poller(emu, StopAfter(), token="wrong-token")
    with pytest.raises(UserError, match=r"401 Unauthorized.*TWITTER_BEARER_TOKEN") as info:
        _one_poll(p)
    assert "\n" not in str(info.value) and "wrong-token" not in str(info.value)


def test_bad_bodies_and_tweets_dead_lettered_while_good_ones_flow(emu: TwitterEmulator) -> None:
    items = emu.add_tweets(40)
    emu.inject("malformed_json")
    emu.inject("invalid_utf8")
    emu.inject("bad_tweet")
    stop = StopAfter()
    p = poller(emu, stop, first_poll_pages=10)
    pub = ListPublisher()
    dead = DeadLetters("test")
    pipeline, _ = tweet_producer(pub, dead)
    frames = p.frames()
    deadline = time.monotonic() + 20
    for f in frames:
        pipeline.handle(f)
        if len(pub.sent) >= 39 or time.monotonic() > deadline:
            break
    stop.event.set()
    assert dead.counts == {"malformed_json": 1, "invalid_utf8": 1, "missing_field": 1}
    got = ids_of(pub)
    assert len(got) == len(set(got)) == 39  # one tweet lost to the corruption, none twice
    assert set(got) <= {i.tweet["id"] for i in items}
    assert dead.kept[0].raw  # the raw body is kept


def test_stream_mode_receives_tweets_and_reconnects(emu: TwitterEmulator) -> None:
    stop = StopAfter()
    caller = ApiCaller(stop, ApiCounters(), emu.url)
    stream = FilteredStream(TOKEN, emu.url, caller, query="bitcoin",
                            tweet_fields=DEFAULT_TWEET_FIELDS, user_fields=DEFAULT_USER_FIELDS)
    pub = ListPublisher()
    dead = DeadLetters("test")
    pipeline, _ = tweet_producer(pub, dead)
    sent: list = []

    def wait_published(n: int) -> None:
        deadline = time.monotonic() + 10
        while len(pub.sent) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def feed() -> None:
        try:
            assert emu.wait_for_stream(1)
            sent.extend(emu.add_tweets(5))
            wait_published(5)
            emu.inject("stream_malformed_json")  # a bad line before the next tweet
            sent.extend(emu.add_tweets(1))
            wait_published(6)
            emu.inject("stream_drop")  # the connection dies instead of sending the next tweet
            sent.extend(emu.add_tweets(1))
            assert emu.wait_for_stream(2)  # tweepy reconnected by itself
            sent.extend(emu.add_tweets(5))
            wait_published(11)
        finally:
            stop.event.set()

    t = threading.Thread(target=feed)
    t.start()
    drive(pipeline, stream.frames(), stop)
    t.join()
    assert [r["value"] for r in emu.rules.values()] == ["bitcoin"]
    assert emu.stream_connections == 2
    want = [i.tweet["id"] for i in sent]
    # The tweet at the drop is lost (the real stream has no replay without backfill).
    assert ids_of(pub) == want[:6] + want[7:]
    assert dead.counts == {"malformed_json": 1}
    assert caller.counters.keep_alives >= 0


def test_stream_rule_kept_and_stale_harness_rules_removed(emu: TwitterEmulator) -> None:
    stop = StopAfter()
    caller = ApiCaller(stop, ApiCounters(), emu.url)
    emu.rules["1"] = {"id": "1", "value": "old query", "tag": "harness"}
    emu.rules["2"] = {"id": "2", "value": "someone else's", "tag": "other"}
    s = FilteredStream(TOKEN, emu.url, caller, query="new", tweet_fields=("created_at",))
    s.ensure_rule()
    s.ensure_rule()
    assert sorted(r["value"] for r in emu.rules.values()) == ["new", "someone else's"]


def test_stream_wrong_token_is_one_clear_error(emu: TwitterEmulator) -> None:
    stop = StopAfter(duration_s=10)
    caller = ApiCaller(stop, ApiCounters(), emu.url)
    with pytest.raises(UserError, match="401"):
        list(FilteredStream("nope", emu.url, caller, tweet_fields=("created_at",)).frames())


def test_token_never_logged(caplog: pytest.LogCaptureFixture,
                            capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    # `harness` commands run in-process by other tests quiet the tweepy logger; undo that here
    caplog.set_level(logging.DEBUG, logger="tweepy")
    with TwitterEmulator(bearer_token=TOKEN, window_s=1.0) as emu:
        emu.add_tweets(15)
        emu.inject("status_429")
        _one_poll(poller(emu, StopAfter()))
        with pytest.raises(UserError):
            _one_poll(poller(emu, StopAfter(), token=TOKEN + "x"))
    out, err = capfd.readouterr()
    assert any("Authorization" in r.getMessage() for r in caplog.records)  # tweepy did log it
    for text in [r.getMessage() for r in caplog.records] + [out, err, caplog.text]:
        assert TOKEN not in text
