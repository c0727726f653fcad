"""One contract, every backend: the same tests run against Kafka (real broker) and ZeroMQ
(real sockets). Differences between backends are read from ``capabilities``, never from names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from transports import (
    Envelope,
    MessageTooLargeError,
    Publisher,
    ReplayableSubscriber,
    Subscriber,
    Transport,
    TransportError,
    TransportOptionError,
    UnknownTransportError,
    open_transport,
    replayable,
)

BACKENDS = ["kafka", "kafka+confluent", "zmq-pushpull", "zmq-pubsub", "zmq-ipc", "zmq-inproc"]


@dataclass
class Backend:
    """Builds a transport URL; ``extra`` lets a test add options (e.g. a small HWM)."""

    name: str
    make_url: Callable[[str], str]

    def open(self, extra: str = "") -> Transport:
        return open_transport(self.make_url(extra))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    name = request.param
    if name.startswith("kafka"):
        kafka_url: str = request.getfixturevalue("kafka_url")
        scheme = "kafka+confluent" if name == "kafka+confluent" else "kafka"
        base = kafka_url.replace("kafka://", f"{scheme}://", 1)
        return Backend(name, lambda extra: base + (("?" + extra) if extra else ""))
    if name == "zmq-ipc":
        sock = tmp_path_factory.mktemp("ipc") / "contract.sock"
        return Backend(name, lambda extra: f"zmq+ipc://{sock}?pattern=pushpull&{extra}")
    if name == "zmq-inproc":
        ident = f"contract-{time.monotonic_ns()}"
        return Backend(name, lambda extra: f"zmq+inproc://{ident}?pattern=pushpull&{extra}")
    port = request.getfixturevalue("free_tcp_port")
    pattern = "pubsub" if name == "zmq-pubsub" else "pushpull"
    options = f"pattern={pattern}" + ("&wait_subscribers=1" if pattern == "pubsub" else "")
    return Backend(name, lambda extra: f"zmq+tcp://127.0.0.1:{port}?{options}&{extra}")


@pytest.fixture
def topic(unique_topic: str) -> str:
    return unique_topic


def connect(
    transport: Transport, topics: list[str], group: str | None = None
) -> tuple[Publisher, Subscriber]:
    """Publisher and subscriber ready to exchange messages (topics exist, peers connected)."""
    transport.create_topics(topics, partitions=4)
    publisher = transport.publisher(producer_id="contract")
    subscriber = transport.subscriber(topics, group=group)
    return publisher, subscriber


def receive(subscriber: Subscriber, count: int, timeout: float = 30.0) -> list[Envelope]:
    got: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(subscriber.poll(max_messages=1000, timeout=0.2))
    return got


def quiet(subscriber: Subscriber, seconds: float = 1.0) -> list[Envelope]:
    """Whatever still arrives within ``seconds`` (used to prove nothing more comes)."""
    got: list[Envelope] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got.extend(subscriber.poll(max_messages=1000, timeout=0.1))
    return got


@pytest.fixture
def opened(backend: Backend) -> Iterator[Transport]:
    transport = backend.open()
    yield transport
    transport.close()


def test_round_trip_preserves_key_headers_and_metadata(opened: Transport, topic: str) -> None:
    publisher, subscriber = connect(opened, [topic])
    with publisher, subscriber:
        before = time.time_ns()
        seq = publisher.publish(
            topic,
            b'{"p":"64000.10"}',
            key=b"BTCUSDT",
            headers=(("recv_ns", b"123"), ("empty", b"")),
            event_time_ns=1_700_000_000_000_000_000,
        )
        publisher.flush()
        (env,) = receive(subscriber, 1)
    assert seq == 0
    assert env.topic == topic
    assert env.value == b'{"p":"64000.10"}'
    assert env.key == b"BTCUSDT"
    assert env.headers == (("recv_ns", b"123"), ("empty", b""))  # in order, empty kept
    assert env.producer_id == "contract"
    assert env.seq == 0
    assert env.event_time_ns == 1_700_000_000_000_000_000
    assert before <= env.publish_time_ns <= env.receive_time_ns
    if opened.capabilities.replayable:  # where it is in the log
        assert env.partition >= 0 and env.offset == 0
    else:
        assert (env.partition, env.offset) == (-1, -1)
    assert subscriber.stats.received == 1 and subscriber.stats.rejected == 0


def test_per_key_order_and_sequence_numbers(opened: Transport, topic: str) -> None:
    publisher, subscriber = connect(opened, [topic])
    keys = [b"BTCUSDT", b"ETHUSDT", b"SOLUSDT"]
    with publisher, subscriber:
        for i in range(600):
            publisher.publish(topic, str(i).encode(), key=keys[i % 3])
        publisher.flush()
        got = receive(subscriber, 600)
    assert len(got) == 600
    for key in keys:
        values = [int(e.value) for e in got if e.key == key]
        assert values == sorted(values), f"order broken for {key!r}"
    assert sorted(e.seq for e in got) == list(range(600))
    report = subscriber.stats.sequence.report()
    assert (report.lost, report.duplicates) == (0, 0)


def test_empty_payload_round_trips_and_oversize_is_refused_before_sending(
    backend: Backend, topic: str
) -> None:
    with backend.open("max_message_bytes=1000") as transport:
        publisher, subscriber = connect(transport, [topic])
        with publisher, subscriber:
            with pytest.raises(MessageTooLargeError, match="1001 bytes"):
                publisher.publish(topic, b"x" * 1001)
            publisher.publish(topic, b"", key=b"k")  # one key: one partition, one order
            publisher.publish(topic, b"x" * 1000, key=b"k")
            publisher.flush()
            got = receive(subscriber, 2)
    assert [e.value for e in got] == [b"", b"x" * 1000]
    assert [e.seq for e in got] == [0, 1], "a refused message must not consume a sequence number"


@pytest.mark.slow
def test_overload_is_lost_countably_or_not_at_all(backend: Backend, topic: str) -> None:
    """A subscriber that stops reading: drops must equal exactly what never arrived."""
    extra = "" if backend.name.startswith("kafka") else "hwm=50&sndbuf=4096&rcvbuf=4096"
    total = 20_000
    with backend.open(extra) as transport:
        publisher, subscriber = connect(transport, [topic])
        with publisher, subscriber:
            receive(subscriber, 0, timeout=0.5)  # connect, then stall
            if transport.capabilities.drops_when_slow:
                for i in range(total):
                    publisher.publish(topic, b"%08d" % i + b"." * 200)
                publisher.flush()
                got = receive(subscriber, total, timeout=3.0) + quiet(subscriber, 1.0)
            else:
                # Back-pressure instead of loss: publish from a thread, read slowly.
                import threading

                def send() -> None:
                    for i in range(total):
                        publisher.publish(topic, b"%08d" % i + b"." * 200)
                    publisher.flush()

                sender = threading.Thread(target=send)
                sender.start()
                time.sleep(1.0)
                got = receive(subscriber, total, timeout=60.0)
                sender.join(timeout=30)
            tracker = subscriber.stats.sequence
            tracker.expect_total("contract", topic, total)
            report = tracker.report()
    assert report.lost == total - len({e.seq for e in got})
    assert report.duplicates == 0
    if transport.capabilities.drops_when_slow:
        assert report.lost > 0, "the HWM overflow should have dropped something"
    else:
        assert report.lost == 0 and len(got) == total


def test_commit_then_restart_resumes_without_loss_or_duplicates(
    backend: Backend, topic: str
) -> None:
    with backend.open() as transport:
        if not transport.capabilities.replayable:
            publisher, subscriber = connect(transport, [topic])
            with publisher, subscriber:
                subscriber.commit()  # a no-op, but callable
                assert not isinstance(subscriber, ReplayableSubscriber)  # no seek() to call
                with pytest.raises(TransportError, match="cannot replay"):
                    replayable(transport)
            return
        publisher, first = connect(replayable(transport), [topic], group=f"g-{topic}")
        assert isinstance(first, ReplayableSubscriber)
        with publisher:
            for i in range(100):
                publisher.publish(topic, str(i).encode(), key=str(i % 7).encode())
            publisher.flush()
            with first:
                got_first = receive(first, 40, timeout=60)[:40]
                # commit exactly what we keep: the first 40 per partition order
                positions: dict[tuple[str, int], int] = {}
                for env in got_first:
                    positions[(env.topic, env.partition)] = env.offset + 1
                first.commit(positions)
            kept = {
                (e.partition, e.offset) for e in got_first
            }
            with transport.subscriber([topic], group=f"g-{topic}") as second:
                got_second = receive(second, 100 - len(kept), timeout=60)
                got_second += quiet(second, 1.0)
    rest = {(e.partition, e.offset) for e in got_second}
    assert not kept & rest, "committed messages were delivered again"
    values = sorted(int(e.value) for e in got_first if (e.partition, e.offset) in kept)
    values += [int(e.value) for e in got_second]
    assert sorted(values) == list(range(100))


def test_close_twice_is_harmless(opened: Transport, topic: str) -> None:
    publisher, subscriber = connect(opened, [topic])
    publisher.close()
    publisher.close()
    subscriber.close()
    subscriber.close()
    opened.close()
    opened.close()


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("amqp://localhost", UnknownTransportError, "accepted: kafka"),
        ("localhost:9092", TransportOptionError, "no scheme"),
        ("zmq+tcp://127.0.0.1:5555?patern=pubsub", TransportOptionError, "unknown option 'patern'"),
        ("zmq+tcp://127.0.0.1:5555?pattern=fanout", TransportOptionError, "pushpull"),
        ("zmq+tcp://127.0.0.1:5555?hwm=lots", TransportOptionError, "hwm"),
        ("kafka://127.0.0.1:9092?acks=most", TransportOptionError, "acks"),
        ("kafka://127.0.0.1:9092?linger=5", TransportOptionError, "linger_ms"),
    ],
)
def test_bad_urls_give_one_line_errors(url: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        open_transport(url).close()
    text = str(info.value)
    assert message in text
    assert "\n" not in text
