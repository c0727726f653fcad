"""Kafka backend on kafka-python, plus what both Kafka clients share (options, embedded broker).

``kafka://host:9092[,host2:9092]?acks=all&linger_ms=5`` talks to an existing cluster;
``kafka://`` (no hosts) uses ``HARNESS_KAFKA_BOOTSTRAP`` if set, else starts an embedded broker
owned by the transport and stopped in ``close()``: Apache Kafka where Java >= 17 runs, else Tansu
(``transports.brokers``; ``engine=apache|tansu`` forces one). Defaults were re-measured on
Apache Kafka (README, settings table): linger 5 ms (Kafka 4's and librdkafka's own default; 0
also stalls Tansu), fetch wait 500 ms (5 ms on Tansu, which does not wake a waiting fetch),
session timeout 6 s (free on Apache Kafka; a Tansu group join takes about half of it),
idempotent producer with acks=all (a retried send after a failover is no duplicate).

Harness metadata travels in one ``x-harness`` header; records without a valid one are handed to
the dead-letter path, never to the caller. Commits happen only when the caller says so.

Tansu's ListOffsets "latest" is the first offset of the last stored batch + 1, not the end of
the log. ``start="latest"`` therefore resolves the real end from a Fetch high watermark on Tansu
before the subscriber is returned (on Apache Kafka ListOffsets is right and used as it is), and
``end_positions()`` prefers the high watermark. With a consumer *group* and no committed offset,
"latest" is the client's ``auto_offset_reset`` and may re-deliver the last stored batch on Tansu.

A position past the log end (the broker lost its log, e.g. the embedded Tansu restarted with
memory storage, or stored positions from an earlier broker) gets no OffsetOutOfRange from Tansu:
the consumer would wait there while everything written to the new log is skipped, unseen even by
sequence tracking. When a partition's Fetch high watermark stays below the position for
``TRUNCATION_CONFIRM_S``, the subscriber logs it, counts it in ``stats.log_resets`` and reads
that partition from its start (what Apache Kafka's OffsetOutOfRange +
``auto_offset_reset=earliest`` does).
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import version as package_version
from typing import Any

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text, which
    # warns (attributed to importlib, so the kafka.* filter in pyproject misses it). Not ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.errors import KafkaError, TopicAlreadyExistsError
    from kafka.structs import OffsetAndMetadata, TopicPartition

from core.redaction import redact_url
from core.settings import parse_bool
from transports.base import (
    CLOSE_TIMEOUT_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    Capabilities,
    Envelope,
    Positions,
    Publisher,
    RejectedMessage,
    Subscriber,
    Transport,
    TransportClosedError,
    TransportError,
    TransportOptionError,
)
from transports.brokers import ENGINES, Broker, make_broker
from transports.brokers.registry import lookup as announced_broker
from transports.framing import META_HEADER, FrameError, decode_meta, encode_meta
from transports.url import Option, choice, parse_url

log = logging.getLogger("transports.kafka")

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


def _nonempty(text: str) -> str:
    if not text:
        raise ValueError("expected a non-empty value")
    return text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("expected an integer >= 0")
    return value


_positive.__name__ = _non_negative.__name__ = "int"
_nonempty.__name__ = "str"

KAFKA_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("acks", choice("0", "1", "all"), "all", "broker acknowledgement per produce"),
        Option("linger_ms", _non_negative, 5, "producer batching delay (0 stalls Tansu)"),
        Option("batch_size", _positive, 16384, "producer batch size in bytes"),
        Option("compression", choice("none", "gzip", "snappy", "lz4", "zstd"), "none", "codec"),
        Option("fetch_max_wait_ms", _non_negative, None,
               "longest a fetch waits for data (default: 500 as Kafka's own; 5 on Tansu)"),
        Option("max_poll_records", _positive, 1000, "records per client poll"),
        Option("session_timeout_ms", _positive, 6000,
               "group session: a dead member's partitions move after it (Tansu joins take ~half)"),
        Option("partitions", _positive, 1, "partition count for topics this transport creates"),
        Option("replication", _positive, 1, "replication factor for created topics"),
        Option("client_id", _nonempty, "harness", "client id shown in broker logs"),
        Option("engine", choice(*ENGINES), "auto",
               "broker to start when the URL names no host: auto = Apache Kafka if Java >= 17, "
               "else Tansu"),
        Option("enable_idempotence", parse_bool, True,
               "idempotent producer (with acks=all): a retry after a lost ack is not a duplicate"),
        Option("max_message_bytes", _positive, DEFAULT_MAX_MESSAGE_BYTES, "largest accepted value"),
        Option("request_timeout_ms", _positive, 30000, "client request timeout"),
        Option(
            "security_protocol",
            choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
            "PLAINTEXT",
            "broker security protocol",
        ),
        Option(
            "sasl_mechanism",
            choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
            "PLAIN",
            "SASL mechanism (with SASL_* protocols)",
        ),
        Option("sasl_username", str, "", "SASL user"),
        Option("sasl_password", str, "", "SASL password (never logged)", secret=True),
        Option("ssl_cafile", str, "", "CA bundle (PEM) to verify the broker"),
        Option("ssl_certfile", str, "", "client certificate (PEM)"),
        Option("ssl_keyfile", str, "", "client private key (PEM)"),
    )
}

KAFKA_CAPABILITIES = Capabilities(
    durable=True,
    replayable=True,
    ordered_per_key=True,
    load_balanced=True,
    fan_out=True,
    drops_when_slow=False,
)


class KafkaTransportBase(Transport, abc.ABC):
    """URL parsing, bootstrap choice and the embedded broker, shared by both Kafka clients."""

    #: e.g. "kafka-python 3.0.12"
    client_label: str = ""

    def __init__(self, url: str) -> None:
        parsed = parse_url(url, KAFKA_OPTIONS)
        if "@" in parsed.netloc:
            raise TransportOptionError(
                "credentials in the host part of a Kafka URL are not accepted; use "
                "sasl_username= and sasl_password= options (or HARNESS_* settings)"
            )
        self.options: dict[str, Any] = dict(parsed.options)
        self.display_url = redact_url(url, KAFKA_OPTIONS)
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
            broker_label = self._connect()
        except TransportError:
            self._stop_broker()
            raise
        if self.broker is not None:
            broker_label = self.broker.identity
        else:  # a broker another harness process started names its engine and version
            broker_label = announced_broker(self.bootstrap) or broker_label
        self.identity = f"{self.client_label} @ {broker_label}"
        #: Tansu's work-arounds apply only where the broker is known to be Tansu (one the harness
        #: started); on Apache Kafka they would cost time for nothing.
        self.on_tansu = broker_label.startswith("tansu")
        if self.options["fetch_max_wait_ms"] is None:
            self.options["fetch_max_wait_ms"] = (
                TANSU_FETCH_MAX_WAIT_MS if self.on_tansu else FETCH_MAX_WAIT_MS)

    # --- shared helpers -------------------------------------------------------------------
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

    def _stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._close_clients()
        finally:
            self._stop_broker()

    # --- backend hooks --------------------------------------------------------------------
    @abc.abstractmethod
    def _connect(self) -> str:
        """Reach the cluster within CONNECT_TIMEOUT_S; return a label of the broker."""

    @abc.abstractmethod
    def _close_clients(self) -> None: ...


def idempotent(options: Mapping[str, Any]) -> bool:
    """Idempotence needs acks=all; with acks 0 or 1 the option is moot (no retried duplicate is
    prevented without the broker's full acknowledgement anyway)."""
    return bool(options["enable_idempotence"]) and options["acks"] == "all"


def kafka_python_config(options: Mapping[str, Any], bootstrap: str) -> dict[str, Any]:
    """Options shared by kafka-python producers, consumers and admin clients."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": options["client_id"],
        "security_protocol": options["security_protocol"],
        "bootstrap_timeout_ms": int(CONNECT_TIMEOUT_S * 1000),
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if options["security_protocol"].startswith("SASL"):
        cfg["sasl_mechanism"] = options["sasl_mechanism"]
        cfg["sasl_plain_username"] = options["sasl_username"]
        cfg["sasl_plain_password"] = options["sasl_password"]
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if options[name]:
            cfg[name] = options[name]
    return cfg


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
    """One Kafka record -> Envelope, or None after handing it to ``reject`` (both clients)."""
    value = value or b""
    meta: bytes | None = None
    user: tuple[tuple[str, bytes], ...] = ()
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
    if meta is None:
        reject(
            RejectedMessage(
                "missing_meta",
                f"record has no {META_HEADER} header (foreign producer?)",
                value,
                topic,
                partition,
                offset,
                now,
            )
        )
        return None
    if len(value) > max_bytes:
        reject(
            RejectedMessage(
                "oversize",
                f"record of {len(value)} bytes exceeds max_message_bytes={max_bytes}",
                value,
                topic,
                partition,
                offset,
                now,
            )
        )
        return None
    try:
        pid, seq, event_ns, publish_ns = decode_meta(meta)
    except FrameError as exc:
        reject(RejectedMessage("bad_meta", str(exc), value, topic, partition, offset, now))
        return None
    return Envelope(topic, value, key, user, pid, seq, event_ns, publish_ns, partition, offset, now)


# ------------------------------------------------------------------------------------------
# kafka-python
# ------------------------------------------------------------------------------------------


class KafkaTransport(KafkaTransportBase):
    """kafka-python client (with crc32c) against an external or embedded broker."""

    client_label = f"kafka-python {package_version('kafka-python')}"

    def _connect(self) -> str:
        cfg = kafka_python_config(self.options, self.bootstrap)
        try:
            self._admin = KafkaAdminClient(
                **cfg, request_timeout_ms=self.options["request_timeout_ms"]
            )
            cluster = self._admin.describe_cluster()
        except KafkaError as exc:
            raise self.error("broker unreachable", exc) from None
        brokers = cluster.get("brokers") or []
        return f"kafka cluster {cluster.get('cluster_id')} ({len(brokers)} broker(s), external)"

    def _close_clients(self) -> None:
        admin = getattr(self, "_admin", None)
        if admin is not None:
            try:
                admin.close()
            except Exception as exc:  # closing must not mask the caller's error
                log.debug("admin close: %s", exc)

    def create_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        """Create missing topics (``partitions`` defaults to the URL option); idempotent."""
        if self._closed:
            raise TransportClosedError("create_topics() after close()")
        count = partitions or self.options["partitions"]
        wanted = sorted(set(topics))
        if not wanted:
            return
        with self._admin_lock:
            self._create_topics(wanted, count)

    def _create_topics(self, wanted: list[str], count: int) -> None:
        try:
            existing = set(self._admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if not missing:
                return
            new = [NewTopic(t, count, self.options["replication"]) for t in missing]
            self._admin.create_topics(new, raise_errors=False)
        except TopicAlreadyExistsError:
            return
        except KafkaError as exc:
            raise self.error(f"create_topics {wanted}", exc) from None

    def publisher(self, producer_id: str | None = None) -> KafkaPublisher:
        if self._closed:
            raise TransportClosedError("publisher() after close()")
        return KafkaPublisher(self, producer_id)

    def subscriber(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: str | Positions = "earliest",
        offsets_group: str | None = None,
    ) -> KafkaSubscriber:
        """See ``Transport.subscriber``; ``offsets_group`` names where an assign-mode reader
        commits (default: a fresh group per subscriber, so its commits touch nothing shared)."""
        if self._closed:
            raise TransportClosedError("subscriber() after close()")
        return KafkaSubscriber(self, topics, group, start, offsets_group)


class KafkaPublisher(Publisher):
    """KafkaProducer; send errors are kept and raised on ``flush``/``close``, never lost."""

    def __init__(self, transport: KafkaTransport, producer_id: str | None) -> None:
        super().__init__(producer_id, transport.max_message_bytes)
        self._t = transport
        o = transport.options
        cfg = kafka_python_config(o, transport.bootstrap)
        cfg.update(
            acks="all" if o["acks"] == "all" else int(o["acks"]),
            linger_ms=o["linger_ms"],
            batch_size=o["batch_size"],
            compression_type=None if o["compression"] == "none" else o["compression"],
            enable_idempotence=idempotent(o),
            request_timeout_ms=o["request_timeout_ms"],
            max_request_size=transport.max_message_bytes + RECORD_OVERHEAD_BYTES,
            max_block_ms=int(CONNECT_TIMEOUT_S * 2000),
        )
        try:
            self._producer = KafkaProducer(**cfg)
        except (KafkaError, ValueError, AssertionError) as exc:
            raise transport.error("producer failed to start", exc) from None
        self.failed = 0
        self._errors: list[BaseException] = []
        self._known_topics: set[str] = set()

    def _on_error(self, exc: BaseException) -> None:
        self.failed += 1
        if len(self._errors) < 10:
            self._errors.append(exc)

    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: tuple[tuple[str, bytes], ...],
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
    ) -> None:
        meta = (META_HEADER, encode_meta(self.producer_id, seq, event_time_ns, publish_time_ns))
        hdrs = [meta, *headers] if headers else [meta]
        if topic not in self._known_topics:  # create with the configured partition count
            self._t.create_topics([topic])
            self._known_topics.add(topic)
        try:
            future = self._producer.send(topic, value=value, key=key, headers=hdrs)
        except KafkaError as exc:
            raise self._t.error(f"publish to {topic!r}", exc) from None
        future.add_errback(self._on_error)

    def _send_end(self, topic: str, headers: tuple[tuple[str, bytes], ...]) -> None:
        """The end announcement goes to every partition: a reader may own only some."""
        meta = (META_HEADER, encode_meta(self.producer_id, -1, 0, time.time_ns()))
        try:
            for partition in sorted(self._producer.partitions_for(topic) or ()):
                future = self._producer.send(
                    topic, value=b"", headers=[meta, *headers], partition=partition
                )
                future.add_errback(self._on_error)
        except KafkaError as exc:
            raise self._t.error(f"end of stream on {topic!r}", exc) from None

    def _raise_failures(self) -> None:
        if self._errors:
            first, self._errors = self._errors[0], []
            raise self._t.error(f"{self.failed} message(s) not delivered; first", first)

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise self._t.error(f"flush within {timeout}s", exc) from None
        self._raise_failures()

    def _close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            self._on_error(exc)
        try:
            self._producer.close(timeout=max(0.1, deadline - time.monotonic()))
        except KafkaError as exc:
            self._on_error(exc)
            self._stop_sender()
        self._raise_failures()

    def _stop_sender(self) -> None:
        """kafka-python's close() gives up before stopping its sender thread when its final
        flush times out (broker gone), leaving the thread reconnecting for ever: stop it."""
        sender = getattr(self._producer, "_sender", None)
        if sender is not None and sender.is_alive():
            sender.force_close()
            sender.join(CLOSE_TIMEOUT_S)


class _SeekOnAssign(ConsumerRebalanceListener):  # type: ignore[misc]
    """Group mode: partitions we have stored positions for start there, not at the commit."""

    def __init__(self, consumer: KafkaConsumer, positions: dict[tuple[str, int], int]) -> None:
        self._consumer = consumer
        self.positions = positions

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            offset = self.positions.pop((tp.topic, tp.partition), None)
            if offset is not None:
                self._consumer.seek(tp, offset)


class LogEndWatch:
    """When has a partition's log end stayed below the consumer's position long enough to be a
    truncated or recreated log? Shared by both Kafka clients; logs each reset."""

    def __init__(self) -> None:
        self._behind_since: dict[tuple[str, int], float] = {}

    def past_end(self, topic: str, partition: int, position: int | None, high: int | None) -> bool:
        key = (topic, partition)
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
            topic, partition, position, high, now - since,
        )
        return True


def log_new_partitions(partitions: Iterable[tuple[str, int]]) -> None:
    """One warning for partitions an assign-mode subscriber adds (both Kafka clients)."""
    names = ", ".join(f"{topic}[{part}]" for topic, part in partitions)
    log.warning("new partitions %s: reading them from their start", names)


class KafkaSubscriber(Subscriber):
    """KafkaConsumer without auto-commit; group=None assigns every partition (no join delay)."""

    def __init__(
        self,
        transport: KafkaTransport,
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
        self._pending: dict[tuple[str, int], int] = {}
        self._log_end = LogEndWatch()
        self._next_check = 0.0
        o = transport.options
        cfg = kafka_python_config(o, transport.bootstrap)
        session = o["session_timeout_ms"]
        cfg.update(
            group_id=group or offsets_group or f"harness-assign-{uuid.uuid4().hex[:12]}",
            enable_auto_commit=False,
            auto_offset_reset="latest" if start == "latest" else "earliest",
            fetch_max_wait_ms=o["fetch_max_wait_ms"],
            max_poll_records=o["max_poll_records"],
            session_timeout_ms=session,
            heartbeat_interval_ms=max(100, session // 3),
            request_timeout_ms=max(o["request_timeout_ms"], session + 5000),
            max_partition_fetch_bytes=max(1_048_576, self._max_bytes + RECORD_OVERHEAD_BYTES),
            fetch_max_bytes=max(52_428_800, self._max_bytes + RECORD_OVERHEAD_BYTES),
        )
        transport.create_topics(self._topics)
        try:
            self._consumer = KafkaConsumer(**cfg)
        except (KafkaError, ValueError, AssertionError) as exc:
            raise transport.error("consumer failed to start", exc) from None
        try:
            if group is None:
                self._assign_all(start)
            else:
                stored = {} if isinstance(start, str) else dict(start)
                self._consumer.subscribe(
                    self._topics, listener=_SeekOnAssign(self._consumer, stored)
                )
        except KafkaError as exc:
            self._consumer.close(autocommit=False)
            raise transport.error(f"subscribe to {self._topics}", exc) from None

    def _partitions(self, deadline: float) -> list[TopicPartition]:
        tps: list[TopicPartition] = []
        for topic in self._topics:
            while True:
                parts = self._consumer.partitions_for_topic(topic)
                if parts:
                    break
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"topic {topic!r} has no partitions on {self._t.bootstrap}"
                    )
                time.sleep(0.05)
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        return tps

    def _assign_all(self, start: str | Positions) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S * 2
        tps = self._partitions(deadline)
        self._consumer.assign(tps)
        if start == "earliest":
            self._consumer.seek_to_beginning(*tps)
        elif start == "latest":
            self._seek_to_true_end(tps, deadline)
        else:
            assert not isinstance(start, str)
            self._consumer.seek_to_beginning(*tps)
            self.seek(start)

    def _seek_to_true_end(self, tps: list[TopicPartition], deadline: float) -> None:
        """Seek past every record stored now, using Fetch high watermarks on Tansu (see module
        doc); ListOffsets is right on Apache Kafka."""
        consumer = self._consumer
        consumer.seek_to_end(*tps)
        if not self._t.on_tansu:
            for tp in tps:  # resolve the (lazy) reset now: what is published next is after it
                consumer.position(tp)
            return
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=20)  # records returned here predate this subscriber
            if all(consumer.highwater(tp) is not None for tp in tps):
                break
        for tp in tps:
            high = consumer.highwater(tp)
            if high is not None and high > consumer.position(tp):
                consumer.seek(tp, high)

    def poll(self, max_messages: int = 1000, timeout: float = 0.1) -> list[Envelope]:
        if self._closed:
            raise TransportClosedError("poll() after close()")
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_messages)
        except KafkaError as exc:
            raise self._t.error("poll", exc) from None
        if time.monotonic() >= self._next_check:
            self._check_log_ends()
        if not batches:
            return []
        now = time.time_ns()
        out: list[Envelope] = []
        append = out.append
        reject = self._reject
        max_bytes = self._max_bytes
        pending = self._pending
        for tp, records in batches.items():
            topic, part = tp.topic, tp.partition
            for r in records:
                hdrs = r.headers
                value = r.value
                if (
                    len(hdrs) == 1
                    and hdrs[0][0] == META_HEADER
                    and value is not None
                    and len(value) <= max_bytes
                ):
                    # fast path: exactly our header, payload within limits
                    try:
                        pid, seq, ev, pub = decode_meta(hdrs[0][1])
                    except FrameError as exc:
                        reject(
                            RejectedMessage("bad_meta", str(exc), value, topic, part, r.offset, now)
                        )
                        continue
                    append(
                        Envelope(topic, value, r.key, (), pid, seq, ev, pub, part, r.offset, now)
                    )
                else:
                    env = decode_record(
                        topic, part, r.offset, r.key, value, hdrs, now, max_bytes, reject
                    )
                    if env is not None:
                        append(env)
            if records:
                pending[(topic, part)] = records[-1].offset + 1
        return self._accept(out)

    def _check_log_ends(self) -> None:
        """Every PARTITION_CHECK_S (from cached metadata and fetch high watermarks, no request):
        a partition whose log has ended before the position for TRUNCATION_CONFIRM_S, and in
        assign mode a partition a subscribed topic gained (added on a real Kafka, or the topic
        re-created with more, as a restarted Tansu does with 4), are read from their start. A
        group gets new partitions from its coordinator instead."""
        self._next_check = time.monotonic() + PARTITION_CHECK_S
        consumer = self._consumer
        assigned = consumer.assignment()
        for tp in assigned:
            high = consumer.highwater(tp)
            position = consumer.position(tp, timeout_ms=0) if high is not None else None
            if self._log_end.past_end(tp.topic, tp.partition, position, high):
                consumer.seek_to_beginning(tp)
                self.stats.log_resets += 1
        if self.group is not None:
            return
        new = [
            tp
            for topic in self._topics
            for tp in (TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ())
            if tp not in assigned
        ]
        if new:
            log_new_partitions((tp.topic, tp.partition) for tp in new)
            consumer.assign([*assigned, *new])
            consumer.seek_to_beginning(*new)

    def commit(self, positions: Positions | None = None) -> None:
        """Commit exactly ``positions`` (next offsets), or everything polled so far."""
        if self._closed:
            raise TransportClosedError("commit() after close()")
        offsets = dict(self._pending if positions is None else positions)
        if not offsets:
            return
        try:
            self._consumer.commit(
                {
                    TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                    for (t, p), o in offsets.items()
                }
            )
        except KafkaError as exc:
            raise self._t.error("commit", exc) from None

    def seek(self, positions: Positions) -> None:
        """Continue from stored positions (e.g. offsets a sink saved with its data)."""
        if self._closed:
            raise TransportClosedError("seek() after close()")
        assigned = self._consumer.assignment()
        for (topic, part), offset in positions.items():
            tp = TopicPartition(topic, part)
            if tp not in assigned:
                raise TransportError(
                    f"cannot seek {topic}[{part}]: not assigned to this subscriber "
                    "(in group mode pass start=positions instead)"
                )
            self._consumer.seek(tp, offset)

    def assignment(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def committed_positions(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        try:
            for tp in self._consumer.assignment():
                offset = self._consumer.committed(tp)
                if offset is not None:
                    out[(tp.topic, tp.partition)] = int(offset)
        except KafkaError as exc:
            raise self._t.error("committed offsets", exc) from None
        return out

    def end_positions(self) -> dict[tuple[str, int], int]:
        """Log end per assigned partition: the Fetch high watermark where one was seen (right on
        Tansu), else ListOffsets (which on Tansu may stop inside the last batch)."""
        tps = list(self._consumer.assignment())
        out: dict[tuple[str, int], int] = {}
        unknown = []
        for tp in tps:
            high = self._consumer.highwater(tp)
            if high is None:
                unknown.append(tp)
            else:
                out[(tp.topic, tp.partition)] = int(high)
        if unknown:
            try:
                for tp, offset in self._consumer.end_offsets(unknown).items():
                    out[(tp.topic, tp.partition)] = int(offset)
            except KafkaError as exc:
                raise self._t.error("end offsets", exc) from None
        return out

    def _close(self, timeout: float) -> None:
        try:
            self._consumer.close(autocommit=False, timeout_ms=int(timeout * 1000))
        except Exception as exc:  # never let a close hang or mask the caller's error
            log.debug("consumer close: %s", self._t.scrub(exc))
