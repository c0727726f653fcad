"""What the transport interface costs on Kafka: interface vs the raw client loop, same run.

Each round publishes N 200-byte messages to a fresh 1-partition topic, flushes, then consumes
all N from the beginning (assign, no group-join delay). Clients are created before and closed
after the timed part, so the figure is the per-message cost, not connection set-up. The raw loops
use the client libraries directly with identical settings (acks=all, linger 5 ms, batch 16 KiB,
fetch wait 5 ms); the interface adds the x-harness metadata header, sequence numbers, sequence
tracking and Envelope objects. Throughput is N / best round time (best of rounds because the
machine is shared); the overhead summary is printed at the end of the run. "raw+meta" is the
raw loop carrying the same per-message x-harness header built inline, and its consumer doing the
least a consumer does to *use* it (one ``struct`` unpack of seq/timestamps, the value taken; as
in ``test_bench_zmq.py``): interface vs raw+meta is the abstraction's cost, raw vs raw+meta the
cost of carrying latency/loss metadata at all.

    .venv/bin/pytest benchmarks/test_bench_kafka.py --benchmark-only

``HARNESS_KAFKA_BOOTSTRAP`` points it at an external broker; otherwise an embedded one runs
(Apache Kafka; Tansu where Java is missing).
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

with warnings.catch_warnings():  # kafka-python 3.0 schema loading warns via importlib
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import TopicPartition

import confluent_kafka

from transports import Publisher, Subscriber, Transport, open_transport
from transports.brokers import make_broker
from transports.framing import _META, META_HEADER, encode_meta
from transports.kafka_core import BOOTSTRAP_ENV

N = 20_000
PAYLOAD = os.urandom(100).hex().encode()  # 200 bytes
ROUNDS = 7
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
    else:
        with make_broker() as broker:
            yield broker.bootstrap
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"Kafka produce+consume, N={N} x {len(PAYLOAD)} B (best of {ROUNDS} rounds)"]
    for client in ("kafka-python", "confluent-kafka"):
        iface = RESULTS.get(f"{client} interface")
        for variant in ("raw", "raw+meta"):
            raw = RESULTS.get(f"{client} {variant}")
            if raw and iface:
                lines.append(
                    f"  {client}: {variant} {raw:,.0f} msg/s, interface {iface:,.0f} msg/s, "
                    f"overhead {100 * (1 - iface / raw):.1f} %"
                )
    if reporter is not None:
        for line in lines:
            reporter.write_line(line)


def fresh_topic(transport: Transport) -> str:
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    transport.create_topics([topic], partitions=1)
    return topic


@pytest.fixture(scope="module")
def kafka_python(bootstrap: str) -> Iterator[Transport]:
    with open_transport(f"kafka://{bootstrap}") as t:
        yield t


@pytest.fixture(scope="module")
def confluent(bootstrap: str) -> Iterator[Transport]:
    with open_transport(f"kafka+confluent://{bootstrap}") as t:
        yield t


def run(
    benchmark: Any,
    name: str,
    setup: Callable[[], tuple[Any, Any]],
    move: Callable[[Any, Any], int],
    teardown: Callable[[Any, Any], None],
) -> None:
    """Time ``move(sender, receiver)`` only; fresh topic and clients per round."""
    counts: list[int] = []
    benchmark.group = name.split()[0]
    benchmark.pedantic(
        lambda s, r: counts.append(move(s, r)),
        setup=lambda: (setup(), {}),
        teardown=lambda s, r: teardown(s, r),
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )
    assert all(c == N for c in counts), counts
    best = benchmark.stats.stats.min
    RESULTS[name] = N / best
    benchmark.extra_info["msg_per_s"] = round(N / best)


def interface_setup(transport: Transport) -> tuple[tuple[Publisher, str], Subscriber]:
    topic = fresh_topic(transport)
    return (transport.publisher(), topic), transport.subscriber([topic])


def interface_move(sender: tuple[Publisher, str], sub: Subscriber) -> int:
    pub, topic = sender
    publish = pub.publish
    for _ in range(N):
        publish(topic, PAYLOAD)
    pub.flush(60)
    received = 0
    poll = sub.poll
    while received < N:
        received += len(poll(1000, 1.0))
    assert sub.stats.sequence.report().lost == 0
    return received


def interface_close(sender: tuple[Publisher, str], sub: Subscriber) -> None:
    sender[0].close()
    sub.close()


@pytest.mark.parametrize("meta", [False, True], ids=["bare", "meta"])
def test_kafka_python_raw(
    benchmark: Any, kafka_python: Transport, bootstrap: str, meta: bool
) -> None:
    def setup() -> tuple[Any, Any]:
        topic = fresh_topic(kafka_python)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=16384
        )
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            max_poll_records=1000,
            group_id=f"bench-{topic}",
        )
        consumer.partitions_for_topic(topic)  # connect now, as the interface's set-up does
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        producer.topic = topic
        return producer, consumer

    def move(producer: Any, consumer: Any) -> int:
        send, topic = producer.send, producer.topic
        if meta:  # the same per-message metadata the interface carries, built inline
            for seq in range(N):
                hdr = encode_meta("bench-raw", seq, 0, time.time_ns())
                send(topic, PAYLOAD, headers=[(META_HEADER, hdr)])
        else:
            for _ in range(N):
                send(topic, PAYLOAD)
        producer.flush(60)
        received = 0
        unpack = _META.unpack_from
        while received < N:
            for records in consumer.poll(timeout_ms=1000, max_records=1000).values():
                if meta:
                    for r in records:
                        _seq, _event_ns, _publish_ns = unpack(r.headers[0][1])
                        _value = r.value
                received += len(records)
        return received

    def close(producer: Any, consumer: Any) -> None:
        producer.close(5)
        consumer.close(autocommit=False)

    run(benchmark, f"kafka-python raw{'+meta' if meta else ''}", setup, move, close)


def test_kafka_python_interface(benchmark: Any, kafka_python: Transport) -> None:
    run(
        benchmark,
        "kafka-python interface",
        lambda: interface_setup(kafka_python),
        interface_move,
        interface_close,
    )


class _Raw:
    """Holder so the raw confluent producer can carry its topic name."""

    def __init__(self, client: Any, topic: str) -> None:
        self.client, self.topic = client, topic


@pytest.mark.parametrize("meta", [False, True], ids=["bare", "meta"])
def test_confluent_raw(benchmark: Any, confluent: Transport, bootstrap: str, meta: bool) -> None:
    def setup() -> tuple[Any, Any]:
        topic = fresh_topic(confluent)
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "batch.size": 16384,
                "partitioner": "murmur2_random",
                "delivery.report.only.error": True,
            }
        )
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{topic}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "enable.partition.eof": False,
            }
        )
        consumer.list_topics(topic, timeout=10)  # connect now, as the interface's set-up does
        consumer.assign(
            [confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)]
        )
        return _Raw(producer, topic), consumer

    def move(raw: _Raw, consumer: Any) -> int:
        produce, poll, topic = raw.client.produce, raw.client.poll, raw.topic
        for seq in range(N):
            headers = (
                [(META_HEADER, encode_meta("bench-raw", seq, 0, time.time_ns()))] if meta else None
            )
            try:
                produce(topic, PAYLOAD, headers=headers)
            except BufferError:
                poll(0.05)
                produce(topic, PAYLOAD, headers=headers)
            poll(0)
        raw.client.flush(60)
        received = 0
        unpack = _META.unpack_from
        while received < N:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                if msg.error() is None:
                    if meta:
                        _seq, _event_ns, _publish_ns = unpack(msg.headers()[0][1])
                        _value = msg.value()
                    received += 1
        return received

    def close(raw: _Raw, consumer: Any) -> None:
        raw.client.close()
        consumer.close()

    run(benchmark, f"confluent-kafka raw{'+meta' if meta else ''}", setup, move, close)


def test_confluent_interface(benchmark: Any, confluent: Transport) -> None:
    run(
        benchmark,
        "confluent-kafka interface",
        lambda: interface_setup(confluent),
        interface_move,
        interface_close,
    )
