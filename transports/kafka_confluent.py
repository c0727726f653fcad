"""The ``kafka+confluent://`` client adapter: confluent-kafka (librdkafka) behind the Kafka core.

Only translation lives here: ``transports.kafka_core`` decides what a Kafka transport does (the
same options, envelope and semantics as ``kafka://``), this module says it in librdkafka's calls
and option names. It never imports kafka-python. Keys are partitioned with ``murmur2_random``
(the Java/kafka-python partitioner) so both clients put a symbol on the same partition. Delivery
reports are requested only for failures, so the happy path pays no Python callback per message;
failures are raised on ``flush``/``close``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import confluent_kafka
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from transports.base import Envelope, TransportError
from transports.framing import _META, META_HEADER
from transports.kafka_core import (
    CONNECT_TIMEOUT_S,
    ConsumerSettings,
    KafkaPublisherBase,
    KafkaSubscriberBase,
    KafkaTransportBase,
    Partition,
    ProducerSettings,
    decode_record,
)

log = logging.getLogger("transports.kafka_confluent")
META_SIZE = _META.size  # fast-path decode of the x-harness header (framing.decode_meta inlined)
unpack_meta = _META.unpack_from
_librdkafka_log = logging.getLogger("transports.kafka_confluent.librdkafka")


_SSL_KEYS = {"cafile": "ssl.ca.location", "certfile": "ssl.certificate.location",
             "keyfile": "ssl.key.location"}


def client_config(transport: KafkaTransportBase) -> dict[str, Any]:
    """librdkafka settings shared by producers, consumers and admin clients."""
    c = transport.connection_settings()
    cfg: dict[str, Any] = {
        "bootstrap.servers": ",".join(c.bootstrap),
        "client.id": c.client_id,
        "security.protocol": c.security_protocol,
        "logger": _librdkafka_log,  # librdkafka's own log goes through logging, not stderr
        "reconnect.backoff.max.ms": c.reconnect_backoff_max_ms,
    }
    if c.sasl is not None:
        cfg["sasl.mechanisms"], cfg["sasl.username"], cfg["sasl.password"] = c.sasl
    cfg.update({_SSL_KEYS[name]: path for name, path in c.ssl_files.items()})
    return cfg


class ConfluentPublisher(KafkaPublisherBase):
    """librdkafka Producer; a full local queue back-pressures (bounded), never drops."""

    def _open(self, settings: ProducerSettings) -> None:
        cfg = client_config(self._t)
        cfg.update(
            {
                "acks": settings.acks,
                "linger.ms": settings.linger_ms,
                "batch.size": settings.batch_size,
                "compression.type": settings.compression,
                "enable.idempotence": settings.idempotent,
                "request.timeout.ms": settings.request_timeout_ms,
                "message.max.bytes": settings.max_request_bytes,
                "partitioner": "murmur2_random",
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
            }
        )
        self._max_block_s = settings.max_block_ms / 1000
        self._producer = Producer(cfg)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._fail(err.str())

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> None:
        try:
            if partition is None:
                self._producer.produce(topic, value, key, headers=headers)
            else:
                self._producer.produce(topic, value, key, partition=partition, headers=headers)
        except BufferError:
            self._produce_when_room(topic, value, key, headers, partition)
        self._producer.poll(0)

    def _produce_when_room(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None,
    ) -> None:
        """The local queue is full: serve delivery reports until there is room, bounded."""
        extra = {} if partition is None else {"partition": partition}
        deadline = time.monotonic() + self._max_block_s
        while True:
            self._producer.poll(0.05)
            try:
                self._producer.produce(topic, value, key, headers=headers, **extra)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"kafka publish to {topic!r} on {self._t.bootstrap}: local queue "
                        f"still full after {self._max_block_s:.0f}s (broker down?)"
                    ) from None

    def _partitions(self, topic: str) -> Collection[int]:
        metadata = self._producer.list_topics(topic, timeout=CONNECT_TIMEOUT_S)
        found = metadata.topics.get(topic)
        return found.partitions if found is not None and found.error is None else ()

    def _drain(self, timeout: float) -> None:
        left = self._producer.flush(timeout)
        if left:
            self._fail(f"{left} message(s) still queued after {timeout}s", left)

    def _release(self, timeout: float) -> None:
        if len(self._producer):  # undeliverable leftovers were counted by _drain()
            self._producer.purge()
        self._producer.close()  # drop the broker connections now, not at garbage collection


class ConfluentSubscriber(KafkaSubscriberBase):
    """librdkafka Consumer without auto-commit."""

    partition_lookup_costs_a_request = True

    def _open(self, settings: ConsumerSettings) -> None:
        self._max_poll = settings.max_poll_records
        #: Offsets last assigned or sought per partition (logical ones too): librdkafka's
        #: position() is unknown until a record is consumed.
        self._started_at: dict[Partition, int] = {}
        self._consumer = Consumer(
            {
                **client_config(self._t),
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": settings.auto_offset_reset,
                "fetch.wait.max.ms": settings.fetch_max_wait_ms,
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": settings.heartbeat_interval_ms,
                "max.partition.fetch.bytes": settings.max_partition_fetch_bytes,
                "enable.partition.eof": False,
            }
        )

    def _subscribe(self, topics: list[str]) -> None:
        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            for tp in partitions:
                offset = self._take_resume_position((tp.topic, tp.partition))
                if offset is not None:
                    tp.offset = offset
            consumer.assign(partitions)

        self._consumer.subscribe(topics, on_assign=on_assign)

    def _partitions_of(self, topic: str, timeout: float) -> Collection[int]:
        metadata = self._consumer.list_topics(topic, timeout=timeout)
        found = metadata.topics.get(topic)
        return found.partitions if found is not None and found.error is None else ()

    def _add(self, offsets: Mapping[Partition, int]) -> None:
        self._started_at.update(offsets)
        # only the new ones: re-assigning the rest would undo a reset of their positions
        self._consumer.incremental_assign(
            [TopicPartition(t, p, o) for (t, p), o in offsets.items()])

    def _seek(self, offsets: Mapping[Partition, int]) -> None:
        if self.group is None:  # re-assigning is reliable even before the first fetch
            current = {part: self._next_offset(part) for part in self.assignment()}
            current.update(offsets)
            self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in current.items()])
        else:
            for (topic, part), offset in offsets.items():
                self._consumer.seek(TopicPartition(topic, part, offset))
        self._started_at.update(offsets)

    def _next_offset(self, part: Partition) -> int:
        """The position, or where the partition was assigned to start (logical offsets too)."""
        (tp,) = self._consumer.position([TopicPartition(*part)])
        if tp.offset >= 0:
            return int(tp.offset)
        return self._started_at.get(part, OFFSET_BEGINNING)

    def _fetch(self, max_messages: int, timeout: float) -> Any:
        # consume() waits the full timeout unless num_messages arrive; the contract is "at most
        # timeout for the FIRST message", so wait for one, then take what is queued.
        limit = min(max_messages, self._max_poll)
        msgs = self._consumer.consume(num_messages=limit, timeout=0)
        if not msgs:
            first = self._consumer.poll(timeout)
            msgs = [] if first is None else [first]
            if first is not None and limit > 1:
                msgs += self._consumer.consume(num_messages=limit - 1, timeout=0)
        return msgs

    def _fetch_and_discard(self, timeout: float) -> None:
        self._consumer.consume(num_messages=10_000, timeout=timeout)

    def _decode(self, records: Any, now: int) -> list[Envelope]:
        out: list[Envelope] = []
        append = out.append
        reject = self._reject
        max_bytes = self._max_bytes
        pending = self._pending
        for m in records:
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
            if hdrs and hdrs[0][0] == META_HEADER and value is not None:  # our header first
                raw_meta = hdrs[0][1]
                if len(raw_meta) >= META_SIZE and len(value) <= max_bytes:  # fast path
                    seq, ev, pub = unpack_meta(raw_meta)
                    try:
                        pid = raw_meta[META_SIZE:].decode()
                    except UnicodeDecodeError:
                        pass  # the slow path below rejects it with a reason
                    else:
                        user = tuple(hdrs[1:]) if len(hdrs) > 1 else ()
                        append(
                            Envelope(
                                topic, value, m.key(), user, pid, seq, ev, pub, part, offset, now
                            )
                        )
                        continue
            env = decode_record(topic, part, offset, m.key(), value, hdrs, now, max_bytes, reject)
            if env is not None:
                append(env)
        return out

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def _position(self, part: Partition) -> int | None:
        offset = self._next_offset(part)
        return offset if offset >= 0 else None

    def _cached_log_end(self, part: Partition) -> int | None:
        _low, high = self._consumer.get_watermark_offsets(TopicPartition(*part), cached=True)
        return int(high) if high >= 0 else None

    def _log_ends(self, parts: Iterable[Partition]) -> dict[Partition, int]:
        return {
            part: int(self._consumer.get_watermark_offsets(
                TopicPartition(*part), timeout=CONNECT_TIMEOUT_S)[1])
            for part in parts
        }

    def _commit(self, offsets: Mapping[Partition, int]) -> None:
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=False,
        )

    def _committed(self) -> dict[Partition, int]:
        tps = self._consumer.committed(self._consumer.assignment(), timeout=CONNECT_TIMEOUT_S)
        return {(tp.topic, tp.partition): tp.offset for tp in tps if tp.offset >= 0}

    def _close(self, timeout: float) -> None:
        """librdkafka's close has no timeout: run it aside and stop waiting after ``timeout``."""
        closer = threading.Thread(target=self._consumer.close, daemon=True, name="rdk-close")
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            log.warning("kafka consumer close did not finish within %.1fs", timeout)


class ConfluentKafkaTransport(KafkaTransportBase):
    """confluent-kafka client against an external or embedded broker."""

    client_label = (
        f"confluent-kafka {confluent_kafka.__version__} "
        f"(librdkafka {confluent_kafka.libversion()[0]})"
    )
    client_errors = (KafkaException,)
    publisher_class = ConfluentPublisher
    subscriber_class = ConfluentSubscriber
    _admin: AdminClient | None = None

    def _open_admin(self) -> tuple[str | None, int]:
        self._admin = AdminClient(client_config(self))
        meta = self._admin.list_topics(timeout=CONNECT_TIMEOUT_S)
        return meta.cluster_id, len(meta.brokers)

    def _topic_names(self) -> Collection[str]:
        assert self._admin is not None
        return set(self._admin.list_topics(timeout=self._request_timeout_s).topics)

    def _create_topics(self, names: list[str], partitions: int, replication: int) -> None:
        assert self._admin is not None
        timeout = self._request_timeout_s
        new = [NewTopic(t, partitions, replication) for t in names]
        for future in self._admin.create_topics(new, request_timeout=timeout).values():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    @property
    def _request_timeout_s(self) -> float:
        return float(self.options["request_timeout_ms"]) / 1000

    def _close_clients(self) -> None:
        self._admin = None
