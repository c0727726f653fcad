"""Shared helpers for the Binance producer tests: an in-memory Publisher (the real base class)
and the producer runtime's loop around the Binance decoder."""

from __future__ import annotations

from core.dead_letters import DeadLetters
from core.recording import RecordingWriter
from producers.binance.schema import BinanceDecoder
from producers.runtime.producer import Producer
from transports.base import DEFAULT_MAX_MESSAGE_BYTES, Envelope, Headers, Publisher


class CollectingPublisher(Publisher):
    """Keeps every published message as an Envelope; the producer loop's only dependency."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__("test-producer", max_message_bytes)
        self.messages: list[Envelope] = []

    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
    ) -> None:
        self.messages.append(
            Envelope(
                topic, value, key, headers, self.producer_id, seq, event_time_ns, publish_time_ns
            )
        )

    def flush(self, timeout: float = 5.0) -> None:
        pass

    def _close(self, timeout: float) -> None:
        pass


def binance_producer(
    publisher: Publisher,
    dead: DeadLetters | None = None,
    recorder: RecordingWriter | None = None,
    limit: int | None = None,
) -> Producer:
    """What ``harness produce binance`` runs, minus settings and transport."""
    return Producer(publisher, BinanceDecoder(), dead or DeadLetters("binance-producer"),
                    recorder=recorder, limit=limit)
