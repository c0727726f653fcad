"""What a Kafka transport means, whichever client library talks to the broker.

``kafka://host:9092[,host2:9092]?acks=all&linger_ms=5`` talks to an existing cluster;
``kafka://`` (no hosts) uses ``HARNESS_KAFKA_BOOTSTRAP`` if set, else starts an embedded broker
owned by the transport and stopped in ``close()``: Apache Kafka where Java >= 17 runs, else Tansu
(``transports.brokers``; ``engine=apache|tansu`` forces one). ``kafka+confluent://`` takes the
same options. Defaults were re-measured on Apache Kafka (README, settings table): linger 5 ms
(Kafka 4's and librdkafka's own default; 0 also stalls Tansu), fetch wait 500 ms (5 ms on
Tansu, which does not wake a waiting fetch), session timeout 6 s (free on Apache Kafka; a Tansu
group join takes about half of it), idempotent producer with acks=all (a retried send after a
failover is no duplicate).

This module holds everything a user can observe: the options, where a subscriber starts, the
log-end and partition watch, end-of-stream announcements to every partition, commits only when
the caller says so, the identity string, error messages with the password scrubbed, and the
embedded broker's lifecycle. A client adapter (``transports.kafka_python``,
``transports.kafka_confluent``) only translates: it opens its library's clients from the settings
derived here and implements the small ``_hooks`` below in that library's calls. This module
imports neither library, so choosing one client never loads the other.

Harness metadata travels in one ``x-harness`` header; records without a valid one are handed to
the dead-letter path, never to the caller.

Tansu's ListOffsets "latest" is the first offset of the last stored batch + 1, not the end of
the log. ``start="latest"`` therefore resolves the real end from a Fetch high watermark on Tansu
before the subscriber is returned (on Apache Kafka ListOffsets is right and used as it is), and
``end_positions()`` prefers the high watermark. With a consumer *group* and no committed offset,
"latest" is the client's ``auto.offset.reset`` and may re-deliver the last stored batch on Tansu.

A position past the log end (the broker lost its log, e.g. the embedded Tansu restarted with
memory storage, or stored positions from an earlier broker) gets no OffsetOutOfRange from Tansu:
the consumer would wait there while everything written to the new log is skipped, unseen even by
sequence tracking. When a partition's Fetch high watermark stays below the position for
``TRUNCATION_CONFIRM_S``, the subscriber logs it, counts it in ``stats.log_resets`` and reads
that partition from its start (what Apache Kafka's OffsetOutOfRange +
``auto.offset.reset=earliest`` does). In assign mode a topic that gained partitions (a restarted
Tansu re-creates topics with 4) has them read from their start too.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.settings import parse_bool
from transports.base import (
    CLOSE_TIMEOUT_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    Capabilities,
    Envelope,
    Headers,
    Message,
    Positions,
    Publisher,
    RejectedMessage,
    ReplayableSubscriber,
    ReplayableTransport,
    TransportClosedError,
    TransportError,
    TransportOptionError,
)
from transports.brokers import ENGINES, Broker, make_broker
from transports.brokers.registry import lookup as announced_broker
from transports.framing import META_HEADER, FrameError, decode_meta, encode_meta
from transports.url import Option, choice, integer, option_table, parse_url, text

log = logging.getLogger("transports.kafka")

#: (topic, partition)
Partition = tuple[str, int]

BOOTSTRAP_ENV = "HARNESS_KAFKA_BOOTSTRAP"
#: How long the transport waits to reach the cluster before saying it is unreachable.
CONNECT_TIMEOUT_S = 5.0
#: How long a partition's log end must stay below the position before it counts as truncated
#: (a high watermark can lag a seek by a fetch; Apache Kafka's can lag a leader change briefly).
TRUNCATION_CONFIRM_S = 1.0
#: How often a subscriber looks for log ends before its positions and for new partitions.
PARTITION_CHECK_S = 1.0
#: Longest wait between reconnection attempts to a broker that went away: the Java client's
#: default. kafka-python's (30 s) and librdkafka's (10 s) would add up to that much to every
#: recovery after a broker restart or failover the harness measures.
RECONNECT_BACKOFF_MAX_MS = 1000
#: How long a fetch may wait for data. Apache Kafka answers a waiting fetch as soon as data
#: arrives, so its own default (500 ms) costs no latency, and an idle consumer does not poll 200
#: times a second. Tansu answers only when the wait expires: 5 ms there.
FETCH_MAX_WAIT_MS = 500
TANSU_FETCH_MAX_WAIT_MS = 5
#: Room for record/batch framing on top of the payload when sizing client limits.
RECORD_OVERHEAD_BYTES = 64 * 1024
#: Kafka's own names for "the log's start" and "the log's end" where an offset is expected
#: (ListOffsets timestamps; librdkafka's OFFSET_BEGINNING and OFFSET_END are the same numbers).
EARLIEST = -2
LATEST = -1

KAFKA_OPTIONS = option_table(
    Option("acks", choice("0", "1", "all"), "all", "broker acknowledgement per produce"),
    Option("linger_ms", integer(0), 5, "producer batching delay (0 stalls Tansu)"),
    Option("batch_size", integer(1), 16384, "producer batch size in bytes"),
    Option("compression", choice("none", "gzip", "snappy", "lz4", "zstd"), "none", "codec"),
    Option("fetch_max_wait_ms", integer(0), None,
           "longest a fetch waits for data (default: 500 as Kafka's own; 5 on Tansu)"),
    Option("max_poll_records", integer(1), 1000, "records per client poll"),
    Option("session_timeout_ms", integer(1), 6000,
           "group session: a dead member's partitions move after it (Tansu joins take ~half)"),
    Option("partitions", integer(1), 1, "partition count for topics this transport creates"),
    Option("replication", integer(1), 1, "replication factor for created topics"),
    Option("client_id", text(required=True), "harness", "client id shown in broker logs"),
    Option("engine", choice(*ENGINES), "auto",
           "broker to start when the URL names no host: auto = Apache Kafka if Java >= 17, "
           "else Tansu"),
    Option("enable_idempotence", parse_bool, True,
           "idempotent producer (with acks=all): a retry after a lost ack is not a duplicate"),
    Option("max_message_bytes", integer(1), DEFAULT_MAX_MESSAGE_BYTES, "largest accepted value"),
    Option("request_timeout_ms", integer(1), 30000, "client request timeout"),
    Option("security_protocol", choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
           "PLAINTEXT", "broker security protocol"),
    Option("sasl_mechanism", choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "PLAIN",
           "SASL mechanism (with SASL_* protocols)"),
    Option("sasl_username", text(), "", "SASL user"),
    Option("sasl_password", text(), "", "SASL password (never logged)", secret=True),
    Option("ssl_cafile", text(), "", "CA bundle (PEM) to verify the broker"),
    Option("ssl_certfile", text(), "", "client certificate (PEM)"),
    Option("ssl_keyfile", text(), "", "client private key (PEM)"),
)

KAFKA_CAPABILITIES = Capabilities(
    durable=True,
    replayable=True,
    ordered_per_key=True,
    load_balanced=True,
    fan_out=True,
    drops_when_slow=False,
)


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """How every client of a transport reaches the cluster, in no client's vocabulary."""

    bootstrap: list[str]
    client_id: str
    security_protocol: str
    #: (mechanism, username, password) with a SASL_* protocol, else None.
    sasl: tuple[str, str, str] | None
    #: "cafile" / "certfile" / "keyfile" -> PEM path, only those given.
    ssl_files: dict[str, str]
    connect_timeout_ms: int
    reconnect_backoff_max_ms: int


@dataclass(frozen=True, slots=True)
class ProducerSettings:
    """What a producer is asked to do, in no client's vocabulary (adapters name them)."""

    acks: str  # "0" | "1" | "all"
    linger_ms: int
    batch_size: int
    compression: str  # "none" | "gzip" | "snappy" | "lz4" | "zstd"
    idempotent: bool
    request_timeout_ms: int
    max_request_bytes: int
    #: Longest a send may wait for metadata or room in the local queue.
    max_block_ms: int


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """What a consumer is asked to do, in no client's vocabulary (adapters name them)."""

    group_id: str
    auto_offset_reset: str  # "earliest" | "latest"
    fetch_max_wait_ms: int
    max_poll_records: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    request_timeout_ms: int
    max_partition_fetch_bytes: int
    fetch_max_bytes: int


class KafkaTransportBase(ReplayableTransport, abc.ABC):
    """URL options, bootstrap choice, the embedded broker, identity, topics and errors."""

    #: e.g. "kafka-python 3.0.12"
    client_label: ClassVar[str] = ""
    #: The client library's exceptions: where the core turns them into ``TransportError``.
    client_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    publisher_class: ClassVar[type[KafkaPublisherBase]]
    subscriber_class: ClassVar[type[KafkaSubscriberBase]]

    def __init__(self, url: str) -> None:
        parsed = parse_url(url, KAFKA_OPTIONS)
        if "@" in parsed.netloc:
            raise TransportOptionError(
                "credentials in the host part of a Kafka URL are not accepted; use "
                "sasl_username= and sasl_password= options (or HARNESS_* settings)"
            )
        self.options: dict[str, Any] = dict(parsed.options)
        self.display_url = parsed.display_url
        self.capabilities = KAFKA_CAPABILITIES
        self.max_message_bytes: int = self.options["max_message_bytes"]
        self.broker: Broker | None = None
        self._closed = False
        self._admin_lock = threading.Lock()  # admin clients are not safe across threads
        hosts = parsed.hosts
        if not hosts and os.environ.get(BOOTSTRAP_ENV):
            hosts = [h.strip() for h in os.environ[BOOTSTRAP_ENV].split(",") if h.strip()]
        if hosts and self.options["engine"] != "auto":
            raise TransportOptionError(
                f"engine={self.options['engine']} applies to a URL without hosts (the broker the "
                f"harness starts); {self.display_url} names its brokers")
        if hosts:
            self.bootstrap = ",".join(hosts)
        else:
            self.broker = make_broker(self.options["engine"]).start()
            self.bootstrap = self.broker.bootstrap
        try:
            self._require_listening()
            try:
                cluster_id, brokers = self._open_admin()
            except self.client_errors as exc:
                raise self.error("broker unreachable", exc) from None
        except TransportError:
            self._close_clients()
            self._stop_broker()
            raise
        if self.broker is not None:
            broker_label = self.broker.identity
        else:  # a broker another harness process started names its engine and version
            broker_label = announced_broker(self.bootstrap) or (
                f"kafka cluster {cluster_id} ({brokers} broker(s), external)")
        self.identity = f"{self.client_label} @ {broker_label}"
        #: Tansu's work-arounds apply only where the broker is known to be Tansu (one the harness
        #: started); on Apache Kafka they would cost time for nothing.
        self.on_tansu = broker_label.startswith("tansu")
        if self.options["fetch_max_wait_ms"] is None:
            self.options["fetch_max_wait_ms"] = (
                TANSU_FETCH_MAX_WAIT_MS if self.on_tansu else FETCH_MAX_WAIT_MS)

    def _require_listening(self) -> None:
        """Fail fast, before any client exists, when no bootstrap address accepts a TCP
        connection: a client that failed to bootstrap would leave threads behind retrying."""
        last: OSError | None = None
        for host in self.bootstrap.split(","):
            name, _, port = host.strip().rpartition(":")
            try:
                with socket.create_connection((name.strip("[]"), int(port)), CONNECT_TIMEOUT_S):
                    return
            except (OSError, ValueError) as exc:
                last = exc if isinstance(exc, OSError) else OSError(str(exc))
        raise self.error("broker unreachable", last or OSError("no bootstrap address"))

    def scrub(self, text: object) -> str:
        """An error text with the SASL password removed, whatever the client put in it."""
        out = str(text)
        secret = self.options["sasl_password"]
        return out.replace(secret, "***") if secret else out

    def error(self, what: str, exc: BaseException) -> TransportError:
        detail = self.scrub(exc) or type(exc).__name__
        return TransportError(f"kafka {what} on {self.bootstrap}: {detail}")

    # --- settings every client gets, named by the adapters --------------------------------
    def connection_settings(self) -> ConnectionSettings:
        o = self.options
        return ConnectionSettings(
            bootstrap=self.bootstrap.split(","),
            client_id=o["client_id"],
            security_protocol=o["security_protocol"],
            sasl=(o["sasl_mechanism"], o["sasl_username"], o["sasl_password"])
            if o["security_protocol"].startswith("SASL") else None,
            ssl_files={name: o[f"ssl_{name}"] for name in ("cafile", "certfile", "keyfile")
                       if o[f"ssl_{name}"]},
            connect_timeout_ms=int(CONNECT_TIMEOUT_S * 1000),
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )

    def producer_settings(self) -> ProducerSettings:
        o = self.options
        return ProducerSettings(
            acks=o["acks"],
            linger_ms=o["linger_ms"],
            batch_size=o["batch_size"],
            compression=o["compression"],
            # Idempotence needs acks=all; with acks 0 or 1 no retried duplicate is prevented
            # without the broker's full acknowledgement anyway.
            idempotent=bool(o["enable_idempotence"]) and o["acks"] == "all",
            request_timeout_ms=o["request_timeout_ms"],
            max_request_bytes=self.max_message_bytes + RECORD_OVERHEAD_BYTES,
            max_block_ms=int(CONNECT_TIMEOUT_S * 2000),
        )

    def consumer_settings(
        self, group: str | None, offsets_group: str | None, start: str | Positions
    ) -> ConsumerSettings:
        o = self.options
        session = o["session_timeout_ms"]
        record = self.max_message_bytes + RECORD_OVERHEAD_BYTES
        return ConsumerSettings(
            # an assign-mode reader commits under a fresh group unless told where
            group_id=group or offsets_group or f"harness-assign-{uuid.uuid4().hex[:12]}",
            auto_offset_reset="latest" if start == "latest" else "earliest",
            fetch_max_wait_ms=o["fetch_max_wait_ms"],
            max_poll_records=o["max_poll_records"],
            session_timeout_ms=session,
            heartbeat_interval_ms=max(100, session // 3),
            request_timeout_ms=max(o["request_timeout_ms"], session + 5000),
            max_partition_fetch_bytes=max(1_048_576, record),
            fetch_max_bytes=max(52_428_800, record),
        )

    # --- the interface ---------------------------------------------------------------------
    def create_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        """Create missing topics (``partitions`` defaults to the URL option); idempotent."""
        if self._closed:
            raise TransportClosedError("create_topics() after close()")
        count = partitions or self.options["partitions"]
        wanted = sorted(set(topics))
        if not wanted:
            return
        with self._admin_lock:
            try:
                existing = self._topic_names()
                missing = [t for t in wanted if t not in existing]
                if missing:
                    self._create_topics(missing, count, self.options["replication"])
            except self.client_errors as exc:
                raise self.error(f"create_topics {wanted}", exc) from None

    def publisher(self, producer_id: str | None = None) -> KafkaPublisherBase:
        if self._closed:
            raise TransportClosedError("publisher() after close()")
        return self.publisher_class(self, producer_id)

    def subscriber(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: str | Positions = "earliest",
        offsets_group: str | None = None,
    ) -> KafkaSubscriberBase:
        """See ``Transport.subscriber``; ``offsets_group`` names where an assign-mode reader
        commits (default: a fresh group per subscriber, so its commits touch nothing shared)."""
        if self._closed:
            raise TransportClosedError("subscriber() after close()")
        return self.subscriber_class(self, topics, group, start, offsets_group)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._close_clients()
        finally:
            self._stop_broker()

    def _stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    # --- client hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _open_admin(self) -> tuple[str | None, int]:
        """Open the admin client and reach the cluster: (cluster id, broker count)."""

    @abc.abstractmethod
    def _topic_names(self) -> Collection[str]: ...

    @abc.abstractmethod
    def _create_topics(self, names: list[str], partitions: int, replication: int) -> None:
        """Create ``names``; one created meanwhile by someone else is no error."""

    @abc.abstractmethod
    def _close_clients(self) -> None:
        """Close the admin client, if one was opened; never raises."""


class KafkaPublisherBase(Publisher):
    """Send failures are kept and raised on ``flush``/``close``, never lost."""

    def __init__(self, transport: KafkaTransportBase, producer_id: str | None) -> None:
        super().__init__(producer_id, transport.max_message_bytes)
        self._t = transport
        #: Messages the client reported undelivered.
        self.failed = 0
        self._failures: list[str] = []
        self._known_topics: set[str] = set()
        try:
            self._open(transport.producer_settings())
        except (*transport.client_errors, ValueError, AssertionError) as exc:
            raise transport.error("producer failed to start", exc) from None

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
        meta = (META_HEADER, encode_meta(self.producer_id, seq, event_time_ns, publish_time_ns))
        if topic not in self._known_topics:  # create with the configured partition count
            self._t.create_topics([topic])
            self._known_topics.add(topic)
        try:
            self._produce(topic, value, key, [meta, *headers] if headers else [meta])
        except self._t.client_errors as exc:
            raise self._t.error(f"publish to {topic!r}", exc) from None

    def publish_many(self, messages: Sequence[Message]) -> None:
        """``Publisher.publish_many`` in one loop straight into ``_send`` (no ``publish`` call
        level with keywords per message). The producer is the bottleneck of a Kafka pipeline
        (kafka-python's ``send`` keeps it at a core), so every microsecond of ours around it
        shows in the end-to-end rate. Numbers are taken and kept as ``publish`` does."""
        self._check_sizes(messages)
        next_seq, send = self._next_seq, self._send
        for topic, key, value, event_time_ns, headers in messages:
            seq = next_seq.get(topic, 0)
            next_seq[topic] = seq + 1
            send(topic, value, key, headers, seq, event_time_ns, time.time_ns())
            self.published += 1

    def _send_end(self, topic: str, headers: Headers) -> None:
        """The end announcement goes to every partition: a reader may own only some."""
        meta = (META_HEADER, encode_meta(self.producer_id, -1, 0, time.time_ns()))
        try:
            partitions = sorted(self._partitions(topic))
            if not partitions:
                raise TransportError(f"kafka end of stream on {topic!r}: the topic has no "
                                     f"partitions on {self._t.bootstrap}")
            for partition in partitions:
                self._produce(topic, b"", None, [meta, *headers], partition)
        except self._t.client_errors as exc:
            raise self._t.error(f"end of stream on {topic!r}", exc) from None

    def _fail(self, reason: str, count: int = 1) -> None:
        """Note a delivery failure the client reported (raised at the next flush or close)."""
        self.failed += count
        if len(self._failures) < 10:
            self._failures.append(reason)

    def _raise_failures(self) -> None:
        if self._failures:
            first, self._failures = self._failures[0], []
            what = f"{self.failed} message(s) not delivered" if self.failed else "delivery"
            raise TransportError(
                f"kafka {what} on {self._t.bootstrap}; first: {self._t.scrub(first)}")

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        self._drain(timeout)
        self._raise_failures()

    def _close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            self._drain(timeout)
        finally:
            self._release(max(0.1, deadline - time.monotonic()))
        self._raise_failures()

    # --- client hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self, settings: ProducerSettings) -> None: ...

    @abc.abstractmethod
    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> None:
        """Queue one record (``partition`` None: the key's partition, as the Java client's
        murmur2 partitioner picks it); failures found later go to ``_fail``."""

    @abc.abstractmethod
    def _partitions(self, topic: str) -> Collection[int]: ...

    @abc.abstractmethod
    def _drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for queued records; what did not make it goes to ``_fail``."""

    @abc.abstractmethod
    def _release(self, timeout: float) -> None:
        """Close the client within ``timeout``; never raises (problems go to ``_fail``)."""


class LogEndWatch:
    """When has a partition's log end stayed below the consumer's position long enough to be a
    truncated or recreated log? Logs each reset."""

    def __init__(self) -> None:
        self._behind_since: dict[Partition, float] = {}

    def past_end(self, key: Partition, position: int | None, high: int | None) -> bool:
        if position is None or high is None or position <= high:
            self._behind_since.pop(key, None)
            return False
        now = time.monotonic()
        since = self._behind_since.setdefault(key, now)
        if now - since < TRUNCATION_CONFIRM_S:
            return False
        del self._behind_since[key]
        log.warning(
            "%s[%d]: position %d is past the log end %d for %.1f s: the log was truncated or "
            "recreated (broker lost its data?); reading it from its start",
            key[0], key[1], position, high, now - since,
        )
        return True


def decode_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    now: int,
    max_bytes: int,
    reject: Callable[[RejectedMessage], None],
) -> Envelope | None:
    """One Kafka record -> Envelope, or None after handing it to ``reject``.

    The general case; adapters take the common one (the ``x-harness`` header first, then any
    of the producer's own, and a value within the limit) on a fast path of their own, with the
    same result, and come here for everything else."""
    value = value or b""
    meta: bytes | None = None
    user: Headers = ()
    if headers:
        if len(headers) == 1 and headers[0][0] == META_HEADER:
            meta = headers[0][1]
        else:
            rest = []
            for name, hval in headers:
                if name == META_HEADER and meta is None:
                    meta = hval
                else:
                    rest.append((name, hval))
            user = tuple(rest)
    problem: tuple[str, str] | None = None
    if meta is None:
        problem = ("missing_meta", f"record has no {META_HEADER} header (foreign producer?)")
    elif len(value) > max_bytes:
        problem = ("oversize",
                   f"record of {len(value)} bytes exceeds max_message_bytes={max_bytes}")
    else:
        try:
            pid, seq, event_ns, publish_ns = decode_meta(meta)
        except FrameError as exc:
            problem = ("bad_meta", str(exc))
    if problem is not None:
        reject(RejectedMessage(*problem, value, topic, partition, offset, now))
        return None
    return Envelope(topic, value, key, user, pid, seq, event_ns, publish_ns, partition, offset, now)


class KafkaSubscriberBase(ReplayableSubscriber):
    """No auto-commit; ``group=None`` assigns every partition (no group-join delay)."""

    #: librdkafka's partition lookup is a metadata request: look for new partitions only when a
    #: poll found nothing (kafka-python answers from its cached metadata).
    partition_lookup_costs_a_request: ClassVar[bool] = False

    def __init__(
        self,
        transport: KafkaTransportBase,
        topics: Sequence[str],
        group: str | None,
        start: str | Positions,
        offsets_group: str | None,
    ) -> None:
        super().__init__()
        if isinstance(start, str) and start not in ("earliest", "latest"):
            raise TransportOptionError(
                f"start={start!r} is not accepted; use 'earliest', 'latest' or positions"
            )
        self._t = transport
        self._topics = list(dict.fromkeys(topics))
        self.group = group
        self._max_bytes = transport.max_message_bytes
        #: Next offset after the last record polled, per partition (what ``commit()`` commits).
        self._pending: dict[Partition, int] = {}
        #: Group mode: stored positions to start from when a partition is assigned.
        self._resume_at: dict[Partition, int] = {}
        self._log_end = LogEndWatch()
        self._next_check = 0.0
        transport.create_topics(self._topics)
        settings = transport.consumer_settings(group, offsets_group, start)
        errors = transport.client_errors
        try:
            self._open(settings)
        except (*errors, ValueError, AssertionError) as exc:
            raise transport.error("consumer failed to start", exc) from None
        try:
            try:
                if group is None:
                    self._assign_all(start)
                else:
                    self._resume_at = {} if isinstance(start, str) else dict(start)
                    # The group leader assigns from its own metadata: a topic created a moment
                    # ago that it has not seen yet would get no partitions until the next
                    # metadata refresh (minutes), so join only once every topic shows them.
                    self._wait_for_partitions(time.monotonic() + CONNECT_TIMEOUT_S * 2)
                    self._subscribe(self._topics)
            except errors as exc:
                raise transport.error(f"subscribe to {self._topics}", exc) from None
        except BaseException:
            self.close()  # no client left behind retrying
            raise

    # --- where reading starts --------------------------------------------------------------
    def _assign_all(self, start: str | Positions) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S * 2
        parts = self._wait_for_partitions(deadline)
        if start == "earliest":
            self._add(dict.fromkeys(parts, EARLIEST))
        elif start == "latest" and not self._t.on_tansu:
            # ListOffsets is right on Apache Kafka; resolved now, so what is published after
            # subscriber() returns comes after it
            self._add(self._log_ends(parts))
        elif start == "latest":
            self._add(dict.fromkeys(parts, LATEST))
            self._skip_to_true_end(parts, deadline)
        else:
            assert not isinstance(start, str)
            unknown = sorted(set(start) - set(parts))
            if unknown:
                names = ", ".join(f"{t}[{p}]" for t, p in unknown)
                raise TransportError(f"cannot start at positions of {names}: no such partition "
                                     f"on {self._t.bootstrap}")
            self._add({part: start.get(part, EARLIEST) for part in parts})

    def _wait_for_partitions(self, deadline: float) -> list[Partition]:
        out: list[Partition] = []
        for topic in self._topics:
            while True:
                parts = self._partitions_of(topic, CONNECT_TIMEOUT_S)
                if parts:
                    break
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"topic {topic!r} has no partitions on {self._t.bootstrap}"
                    )
                time.sleep(0.05)
            out.extend((topic, p) for p in sorted(parts))
        return out

    def _skip_to_true_end(self, parts: list[Partition], deadline: float) -> None:
        """Seek past every record stored now, from Fetch high watermarks (Tansu: module doc)."""
        ends: dict[Partition, int] = {}
        while time.monotonic() < deadline and len(ends) < len(parts):
            self._fetch_and_discard(0.02)  # records returned here predate this subscriber
            ends = {part: high for part in parts
                    if (high := self._cached_log_end(part)) is not None}
        if ends:
            self._seek(ends)

    def _take_resume_position(self, part: Partition) -> int | None:
        """Group mode: where a newly assigned partition starts (None: the committed offset)."""
        return self._resume_at.pop(part, None)

    # --- reading ---------------------------------------------------------------------------
    def poll(self, max_messages: int = 1000, timeout: float = 0.1) -> list[Envelope]:
        if self._closed:
            raise TransportClosedError("poll() after close()")
        try:
            records = self._fetch(max_messages, timeout)
        except self._t.client_errors as exc:
            raise self._t.error("poll", exc) from None
        if time.monotonic() >= self._next_check:
            self._watch_partitions(idle=not records)
        if not records:
            return []
        return self._accept(self._decode(records, time.time_ns()))

    def _watch_partitions(self, idle: bool) -> None:
        """Every PARTITION_CHECK_S (from cached fetch high watermarks, no request): a partition
        whose log has ended before the position for TRUNCATION_CONFIRM_S, and in assign mode a
        partition a subscribed topic gained, are read from their start. A group gets new
        partitions from its coordinator instead."""
        self._next_check = time.monotonic() + PARTITION_CHECK_S
        try:
            for part in self.assignment():
                high = self._cached_log_end(part)
                position = self._position(part) if high is not None else None
                if self._log_end.past_end(part, position, high):
                    self._seek({part: EARLIEST})
                    self.stats.log_resets += 1
        except self._t.client_errors as exc:
            raise self._t.error("log end check", exc) from None
        if self.group is None and (idle or not self.partition_lookup_costs_a_request):
            self._add_new_partitions()

    def _add_new_partitions(self) -> None:
        try:
            current = self.assignment()
            new = [
                (topic, p)
                for topic in self._topics
                for p in sorted(self._partitions_of(topic, PARTITION_CHECK_S))
                if (topic, p) not in current
            ]
            if new:
                names = ", ".join(f"{topic}[{p}]" for topic, p in new)
                log.warning("new partitions %s: reading them from their start", names)
                self._add(dict.fromkeys(new, EARLIEST))
        except self._t.client_errors as exc:
            log.debug("partition check skipped: %s", self._t.scrub(exc))

    # --- positions -------------------------------------------------------------------------
    def commit(self, positions: Positions | None = None) -> None:
        """Commit exactly ``positions`` (next offsets), or everything polled so far."""
        if self._closed:
            raise TransportClosedError("commit() after close()")
        offsets = dict(self._pending if positions is None else positions)
        if not offsets:
            return
        try:
            self._commit(offsets)
        except self._t.client_errors as exc:
            raise self._t.error("commit", exc) from None

    def seek(self, positions: Positions) -> None:
        """Continue from stored positions (e.g. offsets a sink saved with its data)."""
        if self._closed:
            raise TransportClosedError("seek() after close()")
        assigned = self.assignment()
        for topic, part in positions:
            if (topic, part) not in assigned:
                raise TransportError(
                    f"cannot seek {topic}[{part}]: not assigned to this subscriber "
                    "(in group mode pass start=positions instead)"
                )
        try:
            self._seek(dict(positions))
        except self._t.client_errors as exc:
            raise self._t.error("seek", exc) from None

    def committed_positions(self) -> dict[Partition, int]:
        try:
            return self._committed()
        except self._t.client_errors as exc:
            raise self._t.error("committed offsets", exc) from None

    def end_positions(self) -> dict[Partition, int]:
        """Log end per assigned partition: the Fetch high watermark where one was seen (right on
        Tansu), else ListOffsets (which on Tansu may stop inside the last batch)."""
        out: dict[Partition, int] = {}
        unknown: list[Partition] = []
        try:
            for part in self.assignment():
                high = self._cached_log_end(part)
                if high is None:
                    unknown.append(part)
                else:
                    out[part] = high
            if unknown:
                out.update(self._log_ends(unknown))
        except self._t.client_errors as exc:
            raise self._t.error("end offsets", exc) from None
        return out

    # --- client hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self, settings: ConsumerSettings) -> None: ...

    @abc.abstractmethod
    def _subscribe(self, topics: list[str]) -> None:
        """Join the group; a partition assigned later starts at ``_take_resume_position``."""

    @abc.abstractmethod
    def _partitions_of(self, topic: str, timeout: float) -> Collection[int]:
        """The topic's partitions (empty while unknown)."""

    @abc.abstractmethod
    def _add(self, offsets: Mapping[Partition, int]) -> None:
        """Read these partitions too, from these offsets (``EARLIEST``/``LATEST`` allowed)."""

    @abc.abstractmethod
    def _seek(self, offsets: Mapping[Partition, int]) -> None:
        """Move assigned partitions to these offsets (``EARLIEST`` allowed)."""

    @abc.abstractmethod
    def _fetch(self, max_messages: int, timeout: float) -> Any:
        """Records in the client's form (empty if none), waiting at most ``timeout`` for the
        first one."""

    @abc.abstractmethod
    def _decode(self, records: Any, now: int) -> list[Envelope]:
        """Envelopes of ``_fetch``'s records; rejects the rest; advances ``_pending``."""

    @abc.abstractmethod
    def _fetch_and_discard(self, timeout: float) -> None: ...

    @abc.abstractmethod
    def _position(self, part: Partition) -> int | None:
        """The next offset to read (None if not known yet); no request."""

    @abc.abstractmethod
    def _cached_log_end(self, part: Partition) -> int | None:
        """The high watermark the last fetch saw (None if none yet); no request."""

    @abc.abstractmethod
    def _log_ends(self, parts: Iterable[Partition]) -> dict[Partition, int]:
        """Ask the broker for the log ends (ListOffsets "latest")."""

    @abc.abstractmethod
    def _commit(self, offsets: Mapping[Partition, int]) -> None: ...

    @abc.abstractmethod
    def _committed(self) -> dict[Partition, int]:
        """Committed offsets of the assigned partitions (those that have one)."""
