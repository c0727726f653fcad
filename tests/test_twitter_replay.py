"""Record the live API bodies, replay them: the published messages are byte-identical."""

from __future__ import annotations

import time
from pathlib import Path

from test_twitter_support import ListPublisher, tweet_producer

from core.dead_letters import DeadLetters
from core.recording import RecordingWriter, open_recording, read_recording
from emulators.twitter import TwitterEmulator
from producers.runtime.pacing import replayed_at_speed
from producers.runtime.producer import drive
from producers.runtime.stop import StopAfter
from producers.twitter.live import ApiCaller, ApiCounters, SearchPoller, make_client
from producers.twitter.synthetic import DEFAULT_TWEET_FIELDS, DEFAULT_USER_FIELDS

TOKEN = "replay-test-token"


def _wire(pub: ListPublisher) -> list[tuple[object, ...]]:
    return [(e.topic, e.key, e.value, e.event_time_ns, e.headers, e.seq) for e in pub.sent]


def test_record_then_replay_is_byte_exact(tmp_path: Path) -> None:
    path = tmp_path / "tweets.jsonl.gz"
    live_pub = ListPublisher()
    live_dead = DeadLetters("live")
    with TwitterEmulator(bearer_token=TOKEN, seed=11) as emu:
        emu.add_tweets(30)
        emu.inject("malformed_json")  # recorded too: replay must dead-letter it the same way
        emu.inject("bad_tweet")
        stop = StopAfter(duration_s=20)
        poller = SearchPoller(make_client(TOKEN, emu.url), ApiCaller(stop, ApiCounters(), emu.url),
                              tweet_fields=DEFAULT_TWEET_FIELDS, user_fields=DEFAULT_USER_FIELDS,
                              max_results=10, interval_s=0.05, first_poll_pages=10)
        with RecordingWriter(path) as recorder:
            pipeline, _ = tweet_producer(live_pub, live_dead, recorder=recorder)
            frames = poller.frames()
            for frame in frames:
                pipeline.handle(frame)
                if len(live_pub.sent) == 29:
                    emu.add_tweets(12)  # a second poll with new tweets, also recorded
                if len(live_pub.sent) >= 41 or stop.reached(0):
                    break
            stop.event.set()
    assert len(live_pub.sent) == 41
    assert live_dead.counts == {"malformed_json": 1, "missing_field": 1}
    recorded = list(read_recording(path))
    assert len(recorded) == pipeline.received

    replay_pub = ListPublisher()
    replay_dead = DeadLetters("replay")
    t0 = time.monotonic()
    replay, _ = tweet_producer(replay_pub, replay_dead)
    drive(replay, replayed_at_speed(open_recording(path), 0), StopAfter())
    assert time.monotonic() - t0 < 10
    assert _wire(replay_pub) == _wire(live_pub)
    assert replay_dead.counts == live_dead.counts


def test_replay_paces_at_recorded_speed(tmp_path: Path) -> None:
    path = tmp_path / "paced.jsonl.gz"
    body = b'{"data":{"id":"%d","text":"t","created_at":"2024-08-01T12:00:00.000Z"}}'
    with RecordingWriter(path) as rec:
        for i in range(5):
            rec.write((body % (i + 1)).decode(), recv_ns=1_000_000_000 + i * 100_000_000)
    pub = ListPublisher()
    t0 = time.monotonic()
    stop = StopAfter()
    drive(tweet_producer(pub)[0], replayed_at_speed(open_recording(path), 2.0, stop), stop)
    elapsed = time.monotonic() - t0
    assert len(pub.sent) == 5
    assert elapsed >= 0.19  # 0.4 s of recording at 2x
    assert pub.sent[4].header("recv_ns") == b"1400000000"
