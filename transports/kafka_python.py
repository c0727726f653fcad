"""The ``kafka://`` client adapter: kafka-python (pure Python, with crc32c) behind the Kafka core.

Only translation lives here: ``transports.kafka_core`` decides what a Kafka transport does, this
module says it in kafka-python's calls and option names.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Collection, Iterable, Mapping
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
    from kafka.partitioner.default import DefaultPartitioner, murmur2
    from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from transports.base import CLOSE_TIMEOUT_S, Envelope, RejectedMessage
from transports.framing import META_HEADER, FrameError, decode_meta
from transports.kafka_core import (
    EARLIEST,
    LATEST,
    ConsumerSettings,
    KafkaPublisherBase,
    KafkaSubscriberBase,
    KafkaTransportBase,
    Partition,
    ProducerSettings,
    decode_record,
)

log = logging.getLogger("transports.kafka_python")


def client_config(transport: KafkaTransportBase) -> dict[str, Any]:
    """kafka-python settings shared by producers, consumers and admin clients."""
    c = transport.connection_settings()
    cfg: dict[str, Any] = {
        "bootstrap_servers": c.bootstrap,
        "client_id": c.client_id,
        "security_protocol": c.security_protocol,
        "bootstrap_timeout_ms": c.connect_timeout_ms,
        "reconnect_backoff_max_ms": c.reconnect_backoff_max_ms,
    }
    if c.sasl is not None:
        cfg["sasl_mechanism"], cfg["sasl_plain_username"], cfg["sasl_plain_password"] = c.sasl
    cfg.update({f"ssl_{name}": path for name, path in c.ssl_files.items()})
    return cfg


#: Keys whose hash a publisher remembers at most (a market stream has a few hundred symbols).
KEY_HASH_ENTRIES = 65_536


class _RememberedKeyPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """kafka-python's default partitioner with each key's murmur2 hash remembered.

    The placement is kafka-python's (and Kafka's Java client's) own: murmur2 of the key,
    masked, modulo the sorted partition list, computed by kafka-python's ``murmur2``. Only the
    hash is kept per key: in pure Python it was ~10 % of every ``send`` in a profiled Kafka
    pipeline, whose producer kafka-python keeps at a full core, while a market stream repeats a
    few hundred keys. Keyless records go to the default partitioner unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._hashes: dict[bytes, int] = {}

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: bytes | None, cluster: Any) -> int:
        if serialized_key is None:
            return int(super().partition(topic, key, serialized_key, value, serialized_value,
                                         cluster))  # fmt: skip
        partitions = cluster.partitions_for_topic(topic)  # known: KafkaProducer checked it
        if partitions is None:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        all_partitions = sorted(partitions)
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= KEY_HASH_ENTRIES:
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return int(all_partitions[hashed % len(all_partitions)])


class KafkaPythonPublisher(KafkaPublisherBase):
    """KafkaProducer; a send's failure arrives on its future's errback."""

    def _open(self, settings: ProducerSettings) -> None:
        self._producer = KafkaProducer(
            **client_config(self._t),
            acks="all" if settings.acks == "all" else int(settings.acks),
            linger_ms=settings.linger_ms,
            batch_size=settings.batch_size,
            compression_type=None if settings.compression == "none" else settings.compression,
            enable_idempotence=settings.idempotent,
            request_timeout_ms=settings.request_timeout_ms,
            max_request_size=settings.max_request_bytes,
            max_block_ms=settings.max_block_ms,
            partitioner=_RememberedKeyPartitioner(),
        )

    def _on_error(self, exc: BaseException) -> None:
        self._fail(str(exc) or type(exc).__name__)

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> None:
        future = self._producer.send(
            topic, value=value, key=key, headers=headers, partition=partition)
        future.add_errback(self._on_error)

    def _partitions(self, topic: str) -> Collection[int]:
        return self._producer.partitions_for(topic) or ()

    def _drain(self, timeout: float) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            self._fail(f"not flushed within {timeout}s: {exc}", 0)

    def _release(self, timeout: float) -> None:
        try:
            self._producer.close(timeout=timeout)
        except KafkaError as exc:
            self._fail(f"close: {exc}", 0)
            self._stop_sender()

    def _stop_sender(self) -> None:
        """kafka-python's close() gives up before stopping its sender thread when its final
        flush times out (broker gone), leaving the thread reconnecting for ever: stop it."""
        sender = getattr(self._producer, "_sender", None)
        if sender is not None and sender.is_alive():
            sender.force_close()
            sender.join(CLOSE_TIMEOUT_S)


class _ResumeOnAssign(ConsumerRebalanceListener):  # type: ignore[misc]
    """Group mode: partitions we have stored positions for start there, not at the commit."""

    def __init__(self, subscriber: KafkaPythonSubscriber) -> None:
        self._subscriber = subscriber

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            offset = self._subscriber._take_resume_position((tp.topic, tp.partition))
            if offset is not None:
                self._subscriber._consumer.seek(tp, offset)


class KafkaPythonSubscriber(KafkaSubscriberBase):
    """KafkaConsumer without auto-commit."""

    def _open(self, settings: ConsumerSettings) -> None:
        self._consumer = KafkaConsumer(
            **client_config(self._t),
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset=settings.auto_offset_reset,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_poll_records=settings.max_poll_records,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            request_timeout_ms=settings.request_timeout_ms,
            max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
            fetch_max_bytes=settings.fetch_max_bytes,
        )

    def _subscribe(self, topics: list[str]) -> None:
        consumer = self._consumer
        consumer.subscribe(topics, listener=_ResumeOnAssign(self))
        # kafka-python 3.0.12 snapshots the subscribed topics' partitions only on a metadata
        # update *after* subscribe(); the one asked for by subscribe() is often answered after
        # the first join (queued behind a fetch), so the leader joined with an empty snapshot
        # and rebalanced again a moment later (see _revive_stalled_join). Refresh it now.
        consumer.topics()

    def _revive_stalled_join(self) -> None:
        """Group mode, after each poll: rejoin a member whose join nobody will finish.

        kafka-python 3.0.12 (coordinator/base.py join_group_async) leaves a join task in flight
        when a poll's timeout ends first, and finishes it in a later poll only while
        need_rejoin() is true. A rejoin the group leader starts because its metadata snapshot
        changed stops being "needed" as soon as that join task performs the assignment, so a
        poll that timed out mid-join left the member REBALANCING for ever: no heartbeats, no
        fetches, removed by the broker after the session timeout, never rejoining (a group
        member that received nothing). A member REBALANCING between polls with no rejoin
        needed is exactly that state: ask for a rejoin, which the next poll completes."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if (coordinator is not None and coordinator.state is MemberState.REBALANCING
                and not coordinator.need_rejoin()):  # fmt: skip
            log.warning("group %s: join left unfinished by kafka-python; rejoining", self.group)
            coordinator.request_rejoin()

    def _partitions_of(self, topic: str, timeout: float) -> Collection[int]:
        return self._consumer.partitions_for_topic(topic) or ()

    def _add(self, offsets: Mapping[Partition, int]) -> None:
        current = self._consumer.assignment()
        self._consumer.assign([*current, *(TopicPartition(*part) for part in offsets)])
        self._seek(offsets)

    def _seek(self, offsets: Mapping[Partition, int]) -> None:
        consumer = self._consumer
        for part, offset in offsets.items():
            tp = TopicPartition(*part)
            if offset == EARLIEST:
                consumer.seek_to_beginning(tp)
            elif offset == LATEST:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, offset)

    def _fetch(self, max_messages: int, timeout: float) -> Any:
        records = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_messages)
        if self.group is not None:
            self._revive_stalled_join()
        return records

    def _fetch_and_discard(self, timeout: float) -> None:
        self._consumer.poll(timeout_ms=int(timeout * 1000))

    def _decode(self, records: Any, now: int) -> list[Envelope]:
        out: list[Envelope] = []
        append = out.append
        reject = self._reject
        max_bytes = self._max_bytes
        pending = self._pending
        for tp, batch in records.items():
            topic, part = tp.topic, tp.partition
            for r in batch:
                hdrs = r.headers
                value = r.value
                if hdrs and hdrs[0][0] == META_HEADER and value is not None and (
                    len(value) <= max_bytes
                ):
                    # fast path: our header first (the producer's own headers after it, as
                    # decode_record keeps them), payload within limits
                    try:
                        pid, seq, ev, pub = decode_meta(hdrs[0][1])
                    except FrameError as exc:
                        reject(
                            RejectedMessage("bad_meta", str(exc), value, topic, part, r.offset, now)
                        )
                        continue
                    user = tuple(hdrs[1:]) if len(hdrs) > 1 else ()
                    append(
                        Envelope(topic, value, r.key, user, pid, seq, ev, pub, part, r.offset, now)
                    )
                else:
                    env = decode_record(
                        topic, part, r.offset, r.key, value, hdrs, now, max_bytes, reject
                    )
                    if env is not None:
                        append(env)
            if batch:
                pending[(topic, part)] = batch[-1].offset + 1
        return out

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def _position(self, part: Partition) -> int | None:
        position = self._consumer.position(TopicPartition(*part), timeout_ms=0)
        return None if position is None else int(position)

    def _cached_log_end(self, part: Partition) -> int | None:
        high = self._consumer.highwater(TopicPartition(*part))
        return None if high is None else int(high)

    def _log_ends(self, parts: Iterable[Partition]) -> dict[Partition, int]:
        ends = self._consumer.end_offsets([TopicPartition(*part) for part in parts])
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    def _commit(self, offsets: Mapping[Partition, int]) -> None:
        self._consumer.commit(
            {TopicPartition(*part): OffsetAndMetadata(o, "", -1) for part, o in offsets.items()}
        )

    def _committed(self) -> dict[Partition, int]:
        out: dict[Partition, int] = {}
        for tp in self._consumer.assignment():
            offset = self._consumer.committed(tp)
            if offset is not None:
                out[(tp.topic, tp.partition)] = int(offset)
        return out

    def _close(self, timeout: float) -> None:
        try:
            self._consumer.close(autocommit=False, timeout_ms=int(timeout * 1000))
        except Exception as exc:  # never let a close hang or mask the caller's error
            log.debug("consumer close: %s", self._t.scrub(exc))


class KafkaPythonTransport(KafkaTransportBase):
    """kafka-python client against an external or embedded broker."""

    client_label = f"kafka-python {package_version('kafka-python')}"
    client_errors = (KafkaError,)
    publisher_class = KafkaPythonPublisher
    subscriber_class = KafkaPythonSubscriber
    _admin: KafkaAdminClient | None = None

    def _open_admin(self) -> tuple[str | None, int]:
        self._admin = KafkaAdminClient(
            **client_config(self), request_timeout_ms=self.options["request_timeout_ms"]
        )
        cluster = self._admin.describe_cluster()
        return cluster.get("cluster_id"), len(cluster.get("brokers") or [])

    def _topic_names(self) -> Collection[str]:
        assert self._admin is not None
        return set(self._admin.list_topics())

    def _create_topics(self, names: list[str], partitions: int, replication: int) -> None:
        assert self._admin is not None
        with contextlib.suppress(TopicAlreadyExistsError):  # someone was quicker: fine
            self._admin.create_topics(
                [NewTopic(t, partitions, replication) for t in names], raise_errors=False)

    def _close_clients(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception as exc:  # closing must not mask the caller's error
                log.debug("admin close: %s", exc)
