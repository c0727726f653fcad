"""The Twitter producer's core: bodies in, validated and de-duplicated tweets out.

Every source (live search, live stream, replay, synthetic) yields ``Frame``s -- raw API bodies
-- and ``TweetPipeline.handle`` is the one path from bytes to ``Publisher.publish``. That is
what makes recording the *bodies* (not the published messages) sufficient for a byte-exact
replay: the same bytes through the same code give the same values, keys, event times and
``recv_ns`` headers (the recorded receive time is reused).

Wire format on topic ``twitter.tweet``: value = ``orjson.dumps`` of the tweet object (plus
``includes_users``, see ``schema.encode_tweet``), key = the tweet id as ASCII, event time =
``created_at``, header ``recv_ns`` = decimal receive time. Within one body tweets go out
oldest first (the API sends newest first) so event time mostly increases on the topic.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from core.dead_letters import DeadLetters
from core.recording import RecordingWriter
from producers.run_control import ProgressReporter, StopAfter
from producers.twitter.schema import (
    MAX_TWEET_BYTES,
    Frame,
    TweetRejected,
    check_tweet,
    decode_body,
    encode_tweet,
)
from transports.base import MessageTooLargeError, Publisher

log = logging.getLogger("producers.twitter.service")

TOPIC = "twitter.tweet"
SOURCE_NAME = "twitter-producer"
#: Ids remembered for de-duplication: far more than one poll or stream reconnect can repeat.
DEDUP_CAPACITY = 200_000


@dataclass(slots=True)
class PipelineCounters:
    frames: int = 0
    tweets_seen: int = 0
    published: int = 0
    duplicates: int = 0
    api_partial_errors: int = 0
    recorded: int = 0
    not_recorded: int = 0


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


class TweetPipeline:
    """Validate, de-duplicate, encode and publish the tweets of each body; record the body."""

    def __init__(
        self,
        publisher: Publisher,
        dead_letters: DeadLetters,
        *,
        topic: str = TOPIC,
        recorder: RecordingWriter | None = None,
        max_tweet_bytes: int = MAX_TWEET_BYTES,
        dedup_capacity: int = DEDUP_CAPACITY,
    ) -> None:
        self.publisher = publisher
        self.dead_letters = dead_letters
        self.topic = topic
        self.recorder = recorder
        self.max_tweet_bytes = max_tweet_bytes
        self.counters = PipelineCounters()
        self._seen = RecentIds(dedup_capacity)
        self._partial_error_logged = False

    def handle(self, frame: Frame, budget: int | None = None) -> int:
        """Publish the tweets in ``frame`` (at most ``budget``); returns how many went out."""
        self.counters.frames += 1
        if self.recorder is not None:
            self._record(frame)
        try:
            body = decode_body(frame.raw)
        except TweetRejected as bad:
            self.dead_letters.add(bad.kind, bad.reason, frame.raw)
            return 0
        if body.errors:
            self.counters.api_partial_errors += len(body.errors)
            if not self._partial_error_logged:
                self._partial_error_logged = True
                log.info("API reported partial errors beside data (counted): %.200r", body.errors)
        ready: list[tuple[int, str, int, bytes]] = []
        for tweet in body.tweets:
            self.counters.tweets_seen += 1
            try:
                event_ns = check_tweet(tweet)
                value = encode_tweet(tweet, body.users, self.max_tweet_bytes)
            except TweetRejected as bad:
                self.dead_letters.add(bad.kind, bad.reason, orjson.dumps(tweet))
                continue
            ready.append((int(tweet["id"]), tweet["id"], event_ns, value))
        ready.sort()
        recv = str(frame.recv_ns).encode()
        published = 0
        for _, tweet_id, event_ns, value in ready:
            if budget is not None and published >= budget:
                break
            if tweet_id in self._seen:
                self.counters.duplicates += 1
                continue
            try:
                self.publisher.publish(
                    self.topic,
                    value,
                    key=tweet_id.encode(),
                    headers=(("recv_ns", recv),),
                    event_time_ns=event_ns,
                )
            except MessageTooLargeError as exc:
                self.dead_letters.add("too_large_for_transport", str(exc), value)
                continue
            self._seen.add(tweet_id)
            published += 1
        self.counters.published += published
        return published

    def _record(self, frame: Frame) -> None:
        assert self.recorder is not None
        try:
            text = frame.raw.decode("utf-8")
        except UnicodeDecodeError:
            # The recording format holds text; a body that is not UTF-8 is dead-lettered (with
            # its raw bytes) by decode_body but cannot be part of the recording.
            self.counters.not_recorded += 1
            return
        self.recorder.write(text, frame.recv_ns)
        self.counters.recorded += 1

    def snapshot(self) -> dict[str, object]:
        c = self.counters
        out: dict[str, object] = {
            "published": c.published,
            "frames": c.frames,
            "duplicates": c.duplicates,
            "dead_letters": self.dead_letters.total,
        }
        if self.dead_letters.counts:
            out["dead_by_kind"] = dict(sorted(self.dead_letters.counts.items()))
        if self.recorder is not None:
            out["recorded"] = c.recorded
        return out


def run(
    frames: Iterator[Frame],
    pipeline: TweetPipeline,
    stop: StopAfter,
    progress: ProgressReporter | None = None,
) -> None:
    """Feed ``frames`` through ``pipeline`` until the source ends or ``stop`` says so."""
    try:
        for frame in frames:
            budget = None
            if stop.max_messages is not None:
                budget = stop.max_messages - pipeline.counters.published
            pipeline.handle(frame, budget)
            if progress is not None:
                progress.tick()
            if stop.reached(pipeline.counters.published):
                break
    finally:
        stop.event.set()
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # ends a live stream's thread / a generator's finally blocks now
