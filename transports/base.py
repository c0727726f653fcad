"""The one transport interface producers, processors and benchmarks speak.

Backends (Kafka, ZeroMQ) implement three small pieces: a ``Transport`` factory, a ``Publisher``
with one ``publish`` call, and a ``Subscriber`` that hands out *batches* of ``Envelope`` objects
so a processor's per-message cost is not dominated by the abstraction. Generic code reads
``Transport.capabilities`` instead of checking backend names.
"""

from __future__ import annotations

import abc
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Self

from transports.sequence import SequenceTracker

Headers = tuple[tuple[str, bytes], ...]
#: One message for ``Publisher.publish_many``: ``(topic, key, value, event_time_ns, headers)``.
Message = tuple[str, bytes | None, bytes, int, Headers]
#: (topic, partition) -> next offset to read; what a sink stores and a processor resumes from.
Positions = Mapping[tuple[str, int], int]

DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
CLOSE_TIMEOUT_S = 5.0
#: The header of an end-of-stream announcement (see ``Publisher.end_streams``).
END_HEADER = "x-harness-end"


class TransportError(Exception):
    """A transport problem a user can act on; the CLI prints it as one line."""


class UnknownTransportError(TransportError):
    """The URL names a scheme no backend is registered for."""


class TransportOptionError(TransportError):
    """A URL option is unknown or its value is malformed."""


class MessageTooLargeError(TransportError):
    """A payload exceeds the configured ``max_message_bytes``."""


class TransportClosedError(TransportError):
    """An operation on a publisher/subscriber after ``close()``."""


class PublishInterrupted(TransportError):
    """``publish`` waited on a receiver that never took the message and was told to stop.

    The message was not sent and its sequence number was not used.
    """


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend guarantees; tests and benchmarks branch on these, never on names."""

    durable: bool  # messages survive a consumer being down
    replayable: bool  # a consumer can seek back and read again; commit() is meaningful
    ordered_per_key: bool  # messages with the same key arrive in publish order
    load_balanced: bool  # several subscribers can share one stream's work
    fan_out: bool  # several subscribers can each get every message
    drops_when_slow: bool  # a slow subscriber loses messages instead of back-pressuring


@dataclass(slots=True)
class Envelope:
    """One message with the metadata every hop needs to measure latency and detect loss.

    ``seq`` numbers messages per producer and topic, starting at 0, so a receiver can count
    gaps and duplicates exactly. ``event_time_ns`` is the source's clock (exchange or tweet
    time); ``publish_time_ns`` is the wall clock when the producer handed it to the transport.
    ``partition``/``offset`` are the source position on replayable transports, else -1.
    """

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = ()
    producer_id: str = ""
    seq: int = -1
    event_time_ns: int = 0
    publish_time_ns: int = 0
    partition: int = -1
    offset: int = -1
    receive_time_ns: int = 0

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(slots=True)
class SubscriberStats:
    """Counters every subscriber keeps; ``sequence`` turns silent drops into counted drops."""

    received: int = 0
    received_bytes: int = 0
    rejected_by_kind: dict[str, int] = field(default_factory=dict)
    sequence: SequenceTracker = field(default_factory=SequenceTracker)
    #: Partitions re-read from their start because their log ended before the position
    #: (a broker that lost its log; replayable transports only).
    log_resets: int = 0
    #: Producers that announced their end: producer id -> topic -> messages published there.
    ended: dict[str, dict[str, int]] = field(default_factory=dict)

    def end_missing(self) -> int:
        """Numbers announced by ended producers and not received (0: those streams are whole)."""
        tracker = self.sequence
        return sum(
            tracker.missing_count(pid, topic)
            for pid, topics in self.ended.items()
            for topic in topics
        )

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_kind.values())


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A frame/record the subscriber could not turn into an Envelope; kept, never dropped."""

    kind: str  # e.g. "bad_magic", "truncated", "oversize", "missing_headers"
    reason: str
    raw: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    receive_time_ns: int = 0


_value = attrgetter("value")


class _Closeable(abc.ABC):
    """``close`` once, bounded by a timeout; a context manager."""

    _closed: bool

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Flush what the backend holds and release resources within ``timeout``; safe to call
        twice."""
        if self._closed:
            return
        self._closed = True
        self._close(timeout)

    @abc.abstractmethod
    def _close(self, timeout: float) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_producer_id(prefix: str = "p") -> str:
    """A producer id unique across restarts, readable in results (host, pid, random)."""
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Publisher(_Closeable):
    """Sends messages; numbers them per topic so receivers can count loss."""

    def __init__(self, producer_id: str | None, max_message_bytes: int) -> None:
        self.producer_id = producer_id or new_producer_id()
        self.max_message_bytes = max_message_bytes
        self._next_seq: dict[str, int] = {}
        self._closed = False
        self.published = 0
        #: Asked while ``publish`` waits on a receiver that does not take messages (a PUSH
        #: socket with no peer): True makes it give up with ``PublishInterrupted``.
        self.interrupt: Callable[[], bool] | None = None

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        event_time_ns: int = 0,
    ) -> int:
        """Hand one message to the transport (asynchronously where the backend batches).

        Returns the sequence number it was given. Raises ``MessageTooLargeError`` before
        anything is sent if the payload is over the limit, so the caller can dead-letter it.
        """
        if self._closed:
            raise TransportClosedError("publish() after close()")
        if len(value) > self.max_message_bytes:
            raise MessageTooLargeError(
                f"message of {len(value)} bytes on {topic!r} exceeds "
                f"max_message_bytes={self.max_message_bytes}"
            )
        seq = self._next_seq.get(topic, 0)
        self._next_seq[topic] = seq + 1
        try:
            self._send(topic, value, key, headers, seq, event_time_ns, time.time_ns())
        except PublishInterrupted:
            self._next_seq[topic] = seq  # not sent: the number is free again
            raise
        self.published += 1
        return seq

    def publish_many(self, messages: Sequence[Message]) -> None:
        """``publish`` each message in order, for a caller holding many at once (a replay at
        full speed): a backend that packs messages (ZeroMQ with ``batch``) does it here with
        fewer Python steps per message. Raises ``MessageTooLargeError`` before anything is sent
        if any value is over the limit (the caller then publishes one by one, to dead-letter
        that one); any other error as ``publish`` would, with the messages before it sent."""
        self._check_sizes(messages)
        publish = self.publish
        for topic, key, value, event_time_ns, headers in messages:
            publish(topic, value, key=key, headers=headers, event_time_ns=event_time_ns)

    def _check_sizes(self, messages: Sequence[Message]) -> None:
        if self._closed:
            raise TransportClosedError("publish_many() after close()")
        if messages and max([len(m[2]) for m in messages]) > self.max_message_bytes:
            raise MessageTooLargeError(
                f"a message of the batch exceeds max_message_bytes={self.max_message_bytes}"
            )

    @property
    def published_by_topic(self) -> dict[str, int]:
        """Messages handed to the transport per topic (= next sequence number per topic)."""
        return dict(self._next_seq)

    def end_streams(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Announce a clean end on every topic this publisher used (before ``close``).

        The announcement is a control envelope: sequence number -1, an empty value and the
        ``END_HEADER`` header holding ``{"published": {topic: count}}`` as JSON. Receivers take
        it out of the data (``Subscriber`` hands it to no stage and writes no row for it) and
        count the tail: numbers up to ``count - 1`` that never arrived are lost, even when they
        were the last ones. Kafka backends send it to every partition of each topic, because a
        receiver may read only some of them.
        """
        used = {topic: count for topic, count in self._next_seq.items() if count}
        if self._closed or not used:
            return
        body = json.dumps({"published": used}, sort_keys=True).encode()
        for topic in used:
            self._send_end(topic, ((END_HEADER, body),))
        self.flush(timeout)

    def _send_end(self, topic: str, headers: Headers) -> None:
        self._send(topic, b"", None, headers, -1, 0, time.time_ns())

    @abc.abstractmethod
    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
    ) -> None: ...

    @abc.abstractmethod
    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Block until everything published so far left the process (or timeout)."""



class Subscriber(_Closeable):
    """Receives batches; commit() marks data safe (a no-op where replay is impossible)."""

    def __init__(self) -> None:
        self.stats = SubscriberStats()
        self._rejected: list[RejectedMessage] = []
        self._controls: list[Envelope] = []
        self._closed = False

    @abc.abstractmethod
    def poll(self, max_messages: int = 1000, timeout: float = 0.1) -> list[Envelope]:
        """Return up to ``max_messages`` envelopes, waiting at most ``timeout`` s for the first."""

    def commit(self, positions: Positions | None = None) -> None:
        """Declare data safe up to ``positions`` (default: everything polled so far)."""

    def drain_rejected(self) -> list[RejectedMessage]:
        """Take the frames that could not be decoded, for the caller's dead-letter store."""
        out, self._rejected = self._rejected, []
        return out

    def _reject(self, rejected: RejectedMessage) -> None:
        kinds = self.stats.rejected_by_kind
        kinds[rejected.kind] = kinds.get(rejected.kind, 0) + 1
        self._rejected.append(rejected)

    def drain_controls(self) -> list[Envelope]:
        """Take the end-of-stream announcements received (a replayable transport's caller
        advances its positions past them; they are never data)."""
        out, self._controls = self._controls, []
        return out

    def _accept(self, batch: list[Envelope]) -> list[Envelope]:
        """Account a decoded batch: counters and sequence tracking in one pass.

        Envelopes with a negative sequence number are taken out (the tracker counts them, so
        a batch without any costs one comparison): an end-of-stream announcement is applied,
        anything else is an invalid envelope and rejected as ``bad_seq``.
        """
        stats = self.stats
        tracker = stats.sequence
        unsequenced = tracker.unsequenced
        tracker.observe_many(batch)
        if tracker.unsequenced != unsequenced:
            batch = self._take_unsequenced(batch)
        stats.received += len(batch)
        stats.received_bytes += sum(map(len, map(_value, batch)))
        return batch

    def _take_unsequenced(self, batch: list[Envelope]) -> list[Envelope]:
        data: list[Envelope] = []
        for env in batch:
            if env.seq >= 0:
                data.append(env)
                continue
            body = env.header(END_HEADER)
            problem = "no end-of-stream header" if body is None else self._apply_end(env, body)
            if problem is None:
                self._controls.append(env)
            else:
                self._reject(RejectedMessage(
                    "bad_seq" if body is None else "bad_end",
                    f"envelope from {env.producer_id[:64]!r} on {env.topic!r} with sequence "
                    f"number {env.seq}: {problem}",
                    env.value, env.topic, env.partition, env.offset, env.receive_time_ns,
                ))
        return data

    def _apply_end(self, env: Envelope, body: bytes) -> str | None:
        """Count the tail of the streams an end announcement closes; a reason if malformed."""
        try:
            published = json.loads(body)["published"]
        except (ValueError, TypeError, KeyError):
            return "end-of-stream header is not {'published': {topic: count}}"
        if not isinstance(published, dict) or not all(
            isinstance(n, int) and 0 <= n < 2**63 for n in published.values()
        ):
            return "end-of-stream counts are not integers in 0..2**63-1"
        tracker = self.stats.sequence
        pid = env.producer_id
        closed = {
            topic: total for topic, total in published.items()
            if total and (topic == env.topic or tracker.has_stream(pid, topic))
        }
        if not closed:
            return None  # announces nothing this receiver could count: no end of anything
        ended = self.stats.ended
        if pid not in ended and len(ended) >= tracker.max_streams:
            # bounded like the tracker: forget producers whose streams it no longer holds
            self.stats.ended = ended = {
                p: t for p, t in ended.items() if any(tracker.has_stream(p, x) for x in t)
            }
        for topic, total in closed.items():
            tracker.expect_total(pid, topic, total)
            ended.setdefault(pid, {})[topic] = total
        return None



class Transport(abc.ABC):
    """Factory for publishers and subscribers on one backend, configured from a URL."""

    #: Set by each backend in ``__init__`` (ZeroMQ's depend on the chosen pattern).
    capabilities: Capabilities
    #: A label for results: which broker and client produced a number, e.g.
    #: "kafka-python 3.0.12 @ Apache Kafka 4.4.0 (embedded, KRaft, ...)" or "pyzmq 27.3.0 ...".
    identity: str = ""
    #: The URL with secrets redacted, for logs and results metadata.
    display_url: str = ""

    @abc.abstractmethod
    def publisher(self, producer_id: str | None = None) -> Publisher: ...

    @abc.abstractmethod
    def subscriber(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: str | Positions = "earliest",
    ) -> Subscriber:
        """Subscribe to ``topics``.

        ``group`` shares work between subscribers (Kafka consumer group); ``None`` reads every
        partition by assignment (no group-join delay). ``start`` is ``"earliest"``, ``"latest"``
        or explicit positions (resume from a sink's stored offsets).
        """

    def create_topics(self, topics: Iterable[str], partitions: int = 1) -> None:  # noqa: B027
        """Create topics where the backend has them; a no-op otherwise."""

    def close(self) -> None:  # noqa: B027
        """Release shared resources (admin clients, contexts)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplayableSubscriber(Subscriber):
    """What a subscriber of a replayable transport adds: positions it reports and moves to.

    A transport whose ``capabilities.replayable`` is true hands out these (``replayable()``
    narrows a ``Transport`` to one, checked through its capabilities)."""

    @abc.abstractmethod
    def seek(self, positions: Positions) -> None:
        """Continue from stored positions (e.g. offsets a sink saved with its data)."""

    @abc.abstractmethod
    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this subscriber reads."""

    @abc.abstractmethod
    def committed_positions(self) -> dict[tuple[str, int], int]:
        """Positions committed for the assigned partitions (those that have one)."""

    @abc.abstractmethod
    def end_positions(self) -> dict[tuple[str, int], int]:
        """The log end (the offset the next record will get) per assigned partition."""


class ReplayableTransport(Transport):
    """A transport that keeps messages so subscribers can read them again (Kafka)."""

    @abc.abstractmethod
    def subscriber(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: str | Positions = "earliest",
        offsets_group: str | None = None,
    ) -> ReplayableSubscriber:
        """``Transport.subscriber``; ``offsets_group`` names where a subscriber without a group
        commits, so a later one given the same name finds its ``committed_positions``."""


def replayable(transport: Transport) -> ReplayableTransport:
    """``transport`` with the replay extension, or a ``TransportError`` if its capabilities say
    it cannot replay."""
    if not transport.capabilities.replayable:
        raise TransportError(
            f"{transport.display_url or type(transport).__name__} cannot replay: its "
            "subscribers have no positions to seek to or commit")
    if not isinstance(transport, ReplayableTransport):
        raise TypeError(f"{type(transport).__name__} declares replayable=True but does not "
                        "implement ReplayableTransport")
    return transport
