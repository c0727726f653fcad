"""Kafka backend on confluent-kafka (librdkafka): same URL options, envelope and semantics.

``kafka+confluent://host:9092?...`` accepts exactly the options of ``kafka://`` (shared from
``transports.kafka``) and the same embedded-broker rule. Keys are partitioned with
``murmur2_random`` (the Java/kafka-python partitioner) so both clients put a symbol on the same
partition. Delivery reports are requested only for failures, so the happy path pays no Python
callback per message; failures are raised on ``flush``/``close``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from transports.base import (
    CLOSE_TIMEOUT_S,
    Envelope,
    Positions,
    Publisher,
    Subscriber,
    TransportClosedError,
    TransportError,
    TransportOptionError,
)
from transports.framing import _META, META_HEADER, encode_meta
from transports.kafka import (
    CONNECT_TIMEOUT_S,
    PARTITION_CHECK_S,
    RECONNECT_BACKOFF_MAX_MS,
    RECORD_OVERHEAD_BYTES,
    KafkaTransportBase,
    LogEndWatch,
    decode_record,
    idempotent,
    log_new_partitions,
)

log = logging.getLogger("transports.kafka_confluent")
META_SIZE = _META.size  # fast-path decode of the x-harness header (framing.decode_meta inlined)
unpack_meta = _META.unpack_from
_librdkafka_log = logging.getLogger("transports.kafka_confluent.librdkafka")


def confluent_config(options: Mapping[str, Any], bootstrap: str) -> dict[str, Any]:
    """librdkafka settings shared by producers, consumers and admin clients."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": options["client_id"],
        "security.protocol": options["security_protocol"],
        "logger": _librdkafka_log,  # librdkafka's own log goes through logging, not stderr
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if options["security_protocol"].startswith("SASL"):
        cfg["sasl.mechanisms"] = options["sasl_mechanism"]
        cfg["sasl.username"] = options["sasl_username"]
        cfg["sasl.password"] = options["sasl_password"]
    for option, key in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        if options[option]:
            cfg[key] = options[option]
    return cfg


class ConfluentKafkaTransport(KafkaTransportBase):
    """confluent-kafka client against an external or embedded broker."""

    client_label = (
        f"confluent-kafka {confluent_kafka.__version__} "
        f"(librdkafka {confluent_kafka.libversion()[0]})"
    )

    def _connect(self) -> str:
        try:
            self._admin = AdminClient(confluent_config(self.options, self.bootstrap))
            meta = self._admin.list_topics(timeout=CONNECT_TIMEOUT_S)
        except KafkaException as exc:
            raise self.error("broker unreachable", exc) from None
        return f"kafka cluster {meta.cluster_id} ({len(meta.brokers)} broker(s), external)"

    def _close_clients(self) -> None:
        self._admin = None

    def create_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        """Create missing topics (``partitions`` defaults to the URL option); idempotent."""
        if self._closed or self._admin is None:
            raise TransportClosedError("create_topics() after close()")
        count = partitions or self.options["partitions"]
        wanted = sorted(set(topics))
        if not wanted:
            return
        with self._admin_lock:
            self._create_topics(wanted, count)

    def _create_topics(self, wanted: list[str], count: int) -> None:
        timeout = self.options["request_timeout_ms"] / 1000
        try:
            existing = self._admin.list_topics(timeout=timeout).topics
            missing = [t for t in wanted if t not in existing]
            if not missing:
                return
            new = [NewTopic(t, count, self.options["replication"]) for t in missing]
            futures = self._admin.create_topics(new, request_timeout=timeout)
            for future in futures.values():
                try:
                    future.result(timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
        except KafkaException as exc:
            raise self.error(f"create_topics {wanted}", exc) from None

    def publisher(self, producer_id: str | None = None) -> ConfluentPublisher:
        if self._closed:
            raise TransportClosedError("publisher() after close()")
        return ConfluentPublisher(self, producer_id)

    def subscriber(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: str | Positions = "earliest",
        offsets_group: str | None = None,
    ) -> ConfluentSubscriber:
        """See ``KafkaTransport.subscriber``."""
        if self._closed:
            raise TransportClosedError("subscriber() after close()")
        return ConfluentSubscriber(self, topics, group, start, offsets_group)


class ConfluentPublisher(Publisher):
    """librdkafka Producer; a full local queue back-pressures (bounded), never drops."""

    def __init__(self, transport: ConfluentKafkaTransport, producer_id: str | None) -> None:
        super().__init__(producer_id, transport.max_message_bytes)
        self._t = transport
        o = transport.options
        cfg = confluent_config(o, transport.bootstrap)
        cfg.update(
            {
                "acks": o["acks"],
                "linger.ms": o["linger_ms"],
                "batch.size": o["batch_size"],
                "compression.type": o["compression"],
                "enable.idempotence": idempotent(o),
                "request.timeout.ms": o["request_timeout_ms"],
                "message.max.bytes": transport.max_message_bytes + RECORD_OVERHEAD_BYTES,
                "partitioner": "murmur2_random",
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
            }
        )
        try:
            self._producer = Producer(cfg)
        except KafkaException as exc:
            raise transport.error("producer failed to start", exc) from None
        self.failed = 0
        self._errors: list[str] = []
        self._max_block_s = CONNECT_TIMEOUT_S * 2
        self._known_topics: set[str] = set()

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed += 1
            if len(self._errors) < 10:
                self._errors.append(err.str())

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
        producer = self._producer
        if topic not in self._known_topics:  # create with the configured partition count
            self._t.create_topics([topic])
            self._known_topics.add(topic)
        try:
            producer.produce(topic, value, key, headers=hdrs)
        except BufferError:
            deadline = time.monotonic() + self._max_block_s
            while True:
                producer.poll(0.05)
                try:
                    producer.produce(topic, value, key, headers=hdrs)
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        raise TransportError(
                            f"kafka publish to {topic!r} on {self._t.bootstrap}: local queue "
                            f"still full after {self._max_block_s:.0f}s (broker down?)"
                        ) from None
        except KafkaException as exc:
            raise self._t.error(f"publish to {topic!r}", exc) from None
        producer.poll(0)

    def _send_end(self, topic: str, headers: tuple[tuple[str, bytes], ...]) -> None:
        """The end announcement goes to every partition: a reader may own only some."""
        meta = (META_HEADER, encode_meta(self.producer_id, -1, 0, time.time_ns()))
        try:
            metadata = self._producer.list_topics(topic, timeout=CONNECT_TIMEOUT_S)
            for partition in sorted(metadata.topics[topic].partitions):
                self._producer.produce(
                    topic, b"", None, partition=partition, headers=[meta, *headers]
                )
        except (KafkaException, KeyError) as exc:
            raise self._t.error(f"end of stream on {topic!r}", exc) from None
        self._producer.poll(0)

    def _raise_failures(self) -> None:
        if self._errors:
            first, self._errors = self._errors[0], []
            raise TransportError(
                f"kafka {self.failed} message(s) not delivered on {self._t.bootstrap}; "
                f"first: {self._t.scrub(first)}"
            )

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        left = self._producer.flush(timeout)
        if left:
            self.failed += left
            self._errors.append(f"{left} message(s) still queued after {timeout}s")
        self._raise_failures()

    def _close(self, timeout: float) -> None:
        try:
            self.flush(timeout)
        finally:
            if len(self._producer):  # undeliverable leftovers were counted by flush()
                self._producer.purge()
            self._producer.close()  # drop the broker connections now, not at garbage collection


class ConfluentSubscriber(Subscriber):
    """librdkafka Consumer without auto-commit; group=None assigns every partition."""

    def __init__(
        self,
        transport: ConfluentKafkaTransport,
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
        self._max_poll = transport.options["max_poll_records"]
        self._pending: dict[tuple[str, int], int] = {}
        self._log_end = LogEndWatch()
        #: Offsets last sought to: librdkafka's position() is unknown until a record is consumed.
        self._sought: dict[tuple[str, int], int] = {}
        self._next_check = 0.0
        o = transport.options
        session = o["session_timeout_ms"]
        cfg = confluent_config(o, transport.bootstrap)
        cfg.update(
            {
                "group.id": group or offsets_group or f"harness-assign-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest" if start == "latest" else "earliest",
                "fetch.wait.max.ms": o["fetch_max_wait_ms"],
                "session.timeout.ms": session,
                "heartbeat.interval.ms": max(100, session // 3),
                "max.partition.fetch.bytes": max(
                    1_048_576, self._max_bytes + RECORD_OVERHEAD_BYTES
                ),
                "enable.partition.eof": False,
            }
        )
        transport.create_topics(self._topics)
        try:
            self._consumer = Consumer(cfg)
            if group is None:
                self._assign_all(start)
            else:
                stored = {} if isinstance(start, str) else dict(start)
                self._consumer.subscribe(self._topics, on_assign=self._on_assign(stored))
        except KafkaException as exc:
            raise transport.error(f"subscribe to {self._topics}", exc) from None

    @staticmethod
    def _on_assign(stored: dict[tuple[str, int], int]) -> Any:
        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            for tp in partitions:
                offset = stored.pop((tp.topic, tp.partition), None)
                if offset is not None:
                    tp.offset = offset
            consumer.assign(partitions)

        return on_assign

    def _partitions(self, deadline: float) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for topic in self._topics:
            while True:
                meta = self._consumer.list_topics(topic, timeout=CONNECT_TIMEOUT_S)
                parts = meta.topics[topic].partitions if topic in meta.topics else {}
                if parts and meta.topics[topic].error is None:
                    break
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"topic {topic!r} has no partitions on {self._t.bootstrap}"
                    )
                time.sleep(0.05)
            out.extend((topic, p) for p in sorted(parts))
        return out

    def _assign_all(self, start: str | Positions) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S * 2
        parts = self._partitions(deadline)
        if start == "latest" and not self._t.on_tansu:  # ListOffsets is right on Apache Kafka;
            # resolved now, so what is published after subscriber() returns comes after it
            offsets = {(t, p): self._consumer.get_watermark_offsets(
                TopicPartition(t, p), timeout=CONNECT_TIMEOUT_S)[1] for t, p in parts}
        elif start == "latest":
            self._consumer.assign([TopicPartition(t, p, OFFSET_END) for t, p in parts])
            ends = self._true_ends(parts, deadline)
            offsets = {tp: ends.get(tp, OFFSET_END) for tp in parts}
        elif start == "earliest":
            offsets = dict.fromkeys(parts, OFFSET_BEGINNING)
        else:
            assert not isinstance(start, str)
            unknown = set(start) - set(parts)
            if unknown:
                raise TransportError(f"positions for partitions that do not exist: {unknown}")
            offsets = {tp: start.get(tp, OFFSET_BEGINNING) for tp in parts}
            self._sought.update(start)
        self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])

    def _true_ends(
        self, parts: list[tuple[str, int]], deadline: float
    ) -> dict[tuple[str, int], int]:
        """Fetch high watermarks (Tansu's ListOffsets end can stop inside the last batch)."""
        ends: dict[tuple[str, int], int] = {}
        while time.monotonic() < deadline and len(ends) < len(parts):
            self._consumer.consume(num_messages=10_000, timeout=0.02)  # records predate us
            for t, p in parts:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                if high >= 0:
                    ends[(t, p)] = high
        return ends

    def poll(self, max_messages: int = 1000, timeout: float = 0.1) -> list[Envelope]:
        if self._closed:
            raise TransportClosedError("poll() after close()")
        try:
            # consume() waits the full timeout unless num_messages arrive; the contract is "at
            # most timeout for the FIRST message", so wait for one, then take what is queued.
            limit = min(max_messages, self._max_poll)
            msgs = self._consumer.consume(num_messages=limit, timeout=0)
            if not msgs:
                first = self._consumer.poll(timeout)
                msgs = [] if first is None else [first]
                if first is not None and limit > 1:
                    msgs += self._consumer.consume(num_messages=limit - 1, timeout=0)
        except KafkaException as exc:
            raise self._t.error("poll", exc) from None
        if time.monotonic() >= self._next_check:
            self._check_log_ends(idle=not msgs)
        if not msgs:
            return []
        now = time.time_ns()
        out: list[Envelope] = []
        append = out.append
        reject = self._reject
        max_bytes = self._max_bytes
        pending = self._pending
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise TransportError(f"kafka consumer on {self._t.bootstrap}: {err.str()}")
                log.warning("kafka consumer: %s", err.str())
                continue
            topic, part, offset, value, hdrs = (
                m.topic(),
                m.partition(),
                m.offset(),
                m.value(),
                m.headers(),
            )
            pending[(topic, part)] = offset + 1
            if hdrs and len(hdrs) == 1 and hdrs[0][0] == META_HEADER and value is not None:
                raw_meta = hdrs[0][1]
                if len(raw_meta) >= META_SIZE and len(value) <= max_bytes:  # fast path
                    seq, ev, pub = unpack_meta(raw_meta)
                    try:
                        pid = raw_meta[META_SIZE:].decode()
                    except UnicodeDecodeError:
                        pass  # the slow path below rejects it with a reason
                    else:
                        append(
                            Envelope(
                                topic, value, m.key(), (), pid, seq, ev, pub, part, offset, now
                            )
                        )
                        continue
            env = decode_record(topic, part, offset, m.key(), value, hdrs, now, max_bytes, reject)
            if env is not None:
                append(env)
        return self._accept(out)

    def commit(self, positions: Positions | None = None) -> None:
        """Commit exactly ``positions`` (next offsets), or everything polled so far."""
        if self._closed:
            raise TransportClosedError("commit() after close()")
        offsets = dict(self._pending if positions is None else positions)
        if not offsets:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
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
            if self.group is None:  # re-assigning is reliable even before the first fetch
                current = {(tp.topic, tp.partition): tp.offset for tp in self._positions()}
                current.update(positions)
                self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in current.items()])
            else:
                for (topic, part), offset in positions.items():
                    self._consumer.seek(TopicPartition(topic, part, offset))
        except KafkaException as exc:
            raise self._t.error("seek", exc) from None
        self._sought.update(positions)

    def _positions(self) -> list[TopicPartition]:
        tps = self._consumer.position(self._consumer.assignment())
        for tp in tps:
            if tp.offset < 0:  # nothing consumed yet: keep the assigned start
                tp.offset = self._pending.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        return list(tps)

    def assignment(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def committed_positions(self) -> dict[tuple[str, int], int]:
        try:
            tps = self._consumer.committed(self._consumer.assignment(), timeout=CONNECT_TIMEOUT_S)
        except KafkaException as exc:
            raise self._t.error("committed offsets", exc) from None
        return {(tp.topic, tp.partition): tp.offset for tp in tps if tp.offset >= 0}

    def _check_log_ends(self, idle: bool) -> None:
        """Every PARTITION_CHECK_S (``transports.kafka``: same rules): a partition whose log has
        ended before the position is read from its start; in assign mode, on an idle poll only
        (it costs a metadata request), so are partitions a subscribed topic gained."""
        self._next_check = time.monotonic() + PARTITION_CHECK_S
        consumer = self._consumer
        try:
            for tp in consumer.position(consumer.assignment()):
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                key = (tp.topic, tp.partition)
                position = tp.offset if tp.offset >= 0 else self._sought.get(key)
                if self._log_end.past_end(
                    tp.topic, tp.partition, position, high if high >= 0 else None
                ):
                    consumer.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
                    self._sought.pop(key, None)
                    self.stats.log_resets += 1
        except KafkaException as exc:
            raise self._t.error("log end check", exc) from None
        if self.group is None and idle:
            self._assign_new_partitions()

    def _assign_new_partitions(self) -> None:
        try:
            current = self.assignment()
            new = [
                (topic, part)
                for topic in self._topics
                for part in self._consumer.list_topics(topic, timeout=1.0).topics[topic].partitions
                if (topic, part) not in current
            ]
            if new:
                log_new_partitions(new)
                # only the new ones: re-assigning the rest would undo a reset of their positions
                self._consumer.incremental_assign(
                    [TopicPartition(t, p, OFFSET_BEGINNING) for t, p in new]
                )
        except (KafkaException, KeyError) as exc:
            log.debug("partition check skipped: %s", exc)

    def end_positions(self) -> dict[tuple[str, int], int]:
        """Log end per assigned partition; the Fetch high watermark where one was seen."""
        out: dict[tuple[str, int], int] = {}
        try:
            for tp in self._consumer.assignment():
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    _low, high = self._consumer.get_watermark_offsets(tp, timeout=CONNECT_TIMEOUT_S)
                out[(tp.topic, tp.partition)] = high
        except KafkaException as exc:
            raise self._t.error("end offsets", exc) from None
        return out

    def _close(self, timeout: float) -> None:
        """librdkafka's close has no timeout: run it aside and stop waiting after ``timeout``."""
        closer = threading.Thread(target=self._consumer.close, daemon=True, name="rdk-close")
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            log.warning("kafka consumer close did not finish within %.1fs", timeout)
