"""Helpers shared by the Twitter tests (no tests here): an in-memory Publisher and the
producer runtime's loop around the tweet decoder."""

from __future__ import annotations

from core.dead_letters import DeadLetters
from core.recording import RecordingWriter
from producers.runtime.producer import Producer
from producers.twitter.schema import TweetDecoder
from transports.base import Envelope, Headers, Publisher


class ListPublisher(Publisher):
    """Collects envelopes in a list: the producer loop under test, without a transport."""

    def __init__(self, max_message_bytes: int = 1_048_576) -> None:
        super().__init__("test-producer", max_message_bytes)
        self.sent: list[Envelope] = []

    def _send(self, topic: str, value: bytes, key: bytes | None, headers: Headers, seq: int,
              event_time_ns: int, publish_time_ns: int) -> None:
        self.sent.append(Envelope(topic, value, key, headers, self.producer_id, seq,
                                  event_time_ns, publish_time_ns))

    def flush(self, timeout: float = 5.0) -> None:
        pass

    def _close(self, timeout: float) -> None:
        pass


def ids_of(pub: ListPublisher) -> list[str]:
    return [e.key.decode() for e in pub.sent if e.key is not None]


def tweet_producer(
    pub: Publisher,
    dead: DeadLetters | None = None,
    *,
    recorder: RecordingWriter | None = None,
    limit: int | None = None,
) -> tuple[Producer, TweetDecoder]:
    """What ``harness produce twitter`` runs, minus settings and transport; and its decoder."""
    dead = dead or DeadLetters("twitter-producer")
    decoder = TweetDecoder(dead)
    return Producer(pub, decoder, dead, recorder=recorder, limit=limit), decoder
