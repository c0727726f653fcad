"""Kafka backends (kafka-python and confluent-kafka) against a real broker: the session's embedded
Apache Kafka (Tansu where Java is missing), or an external one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from foreign_kafka import KafkaProducer

from transports import (
    Envelope,
    MessageTooLargeError,
    ReplayableSubscriber,
    ReplayableTransport,
    Subscriber,
    TransportError,
    TransportOptionError,
    open_transport,
    replayable,
)
from transports.brokers import ApacheKafkaBroker, TansuBroker, free_tcp_port, port_is_free
from transports.framing import META_HEADER
from transports.kafka_core import BOOTSTRAP_ENV, KafkaTransportBase

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]

CLIENTS = ["kafka", "kafka+confluent"]


def collect(sub: Subscriber, n: int, timeout: float = 20.0) -> list[Envelope]:
    """Poll until ``n`` envelopes arrived or ``timeout`` passed; then one short extra poll
    so duplicates beyond ``n`` would show up."""
    out: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += sub.poll(1000, 0.2)
    out += sub.poll(1000, 0.2)
    return out


@pytest.fixture(params=CLIENTS)
def transport(
    request: pytest.FixtureRequest, kafka_bootstrap: str
) -> Iterator[ReplayableTransport]:
    with open_transport(f"{request.param}://{kafka_bootstrap}?partitions=4") as t:
        yield replayable(t)


def test_per_key_order_across_four_partitions(transport: ReplayableTransport, unique_topic: str):
    transport.create_topics([unique_topic], partitions=4)
    sub = transport.subscriber([unique_topic])
    assert len({p for _t, p in sub.assignment()}) == 4
    keys = [f"SYM{i}".encode() for i in range(8)]
    with transport.publisher() as pub:
        for i in range(800):
            key = keys[i % len(keys)]
            pub.publish(unique_topic, str(i).encode(), key=key)
    got = collect(sub, 800)
    sub.close()
    assert len(got) == 800
    per_key: dict[bytes | None, list[int]] = {}
    partition_of: dict[bytes | None, set[int]] = {}
    for env in got:
        per_key.setdefault(env.key, []).append(int(env.value))
        partition_of.setdefault(env.key, set()).add(env.partition)
    assert all(vals == sorted(vals) and len(vals) == 100 for vals in per_key.values())
    assert all(len(parts) == 1 for parts in partition_of.values())  # one key, one partition
    assert len({p for parts in partition_of.values() for p in parts}) > 1
    report = sub.stats.sequence.report()
    assert (report.lost, report.duplicates) == (0, 0)


def test_publish_many_sends_what_publish_sends_in_order(
    transport: ReplayableTransport, unique_topic: str
) -> None:
    """``publish_many`` (the unpaced replay path) gives the same records, numbers and headers,
    per key in order, as one ``publish`` per message; an oversize value refuses the batch
    whole, before anything is sent."""
    other = f"{unique_topic}-b"  # a second topic, new to the publisher inside the batch
    messages = [
        (unique_topic if i % 4 else other, b"K%d" % (i % 3), b"v%d" % i, i, (("h", b"%d" % i),))
        for i in range(300)
    ]
    subs = [transport.subscriber([topic]) for topic in (unique_topic, other)]
    with transport.publisher("p") as pub:
        pub.publish_many(messages)
        with pytest.raises(MessageTooLargeError):
            pub.publish_many([(unique_topic, None, b"ok", 0, ()),
                              (unique_topic, None, b"x" * (pub.max_message_bytes + 1), 0, ())])
        assert pub.published == len(messages) == sum(pub.published_by_topic.values())
    for topic, sub in zip((unique_topic, other), subs, strict=True):
        sent = [m for m in messages if m[0] == topic]
        got = sorted(collect(sub, len(sent)), key=lambda e: e.seq)
        sub.close()
        assert [e.seq for e in got] == list(range(len(sent)))
        assert [(e.key, e.value, e.event_time_ns, e.headers) for e in got] == [
            (key, value, ev, headers) for _, key, value, ev, headers in sent
        ]


def test_both_clients_put_a_key_on_the_same_partition(kafka_bootstrap: str, unique_topic: str):
    placements = []
    for scheme in CLIENTS:
        with open_transport(f"{scheme}://{kafka_bootstrap}") as t:
            t.create_topics([unique_topic], partitions=4)
            sub = t.subscriber([unique_topic], start="latest")
            with t.publisher() as pub:
                for i in range(8):
                    pub.publish(unique_topic, b"x", key=f"SYM{i}".encode())
            placements.append({e.key: e.partition for e in collect(sub, 8)})
            sub.close()
    assert placements[0] == placements[1]


def test_start_latest_skips_records_stored_before(
    transport: ReplayableTransport, unique_topic: str
):
    """Tansu's ListOffsets end lies inside the last batch; 'latest' must still skip it all."""
    with transport.publisher() as pub:
        for i in range(50):
            pub.publish(unique_topic, f"old{i}".encode(), key=b"k")
    sub = transport.subscriber([unique_topic], start="latest")
    with transport.publisher() as pub:
        pub.publish(unique_topic, b"new", key=b"k")
    got = collect(sub, 1, timeout=10)
    ends = sub.end_positions()
    sub.close()
    assert [e.value for e in got] == [b"new"]
    assert sum(ends.values()) == 51


def test_assign_mode_commit_and_resume_from_committed(
    transport: ReplayableTransport, unique_topic: str
):
    transport.create_topics([unique_topic], partitions=1)
    with transport.publisher() as pub:
        for i in range(20):
            pub.publish(unique_topic, str(i).encode())
    group = f"offsets-{unique_topic}"
    sub = transport.subscriber([unique_topic], offsets_group=group)
    first = collect(sub, 20)
    assert [int(e.value) for e in first] == list(range(20))
    position = {(unique_topic, 0): first[9].offset + 1}
    sub.commit(position)  # only the first ten are safe
    sub.close()
    again = transport.subscriber([unique_topic], offsets_group=group)
    committed = again.committed_positions()
    assert committed == position
    again.seek(committed)
    rest = collect(again, 10)
    again.close()
    assert [int(e.value) for e in rest] == list(range(10, 20))


def test_seek_to_stored_positions(transport: ReplayableTransport, unique_topic: str):
    transport.create_topics([unique_topic], partitions=1)
    with transport.publisher() as pub:
        for i in range(10):
            pub.publish(unique_topic, str(i).encode())
    sub = transport.subscriber([unique_topic])
    assert len(collect(sub, 10)) == 10
    sub.seek({(unique_topic, 0): 7})
    replay = collect(sub, 3)
    sub.close()
    assert [int(e.value) for e in replay] == [7, 8, 9]
    assert sub.stats.sequence.report().duplicates == 3  # a replay is visible, not hidden


def test_position_past_the_log_end_reads_the_new_log_from_its_start(
    transport: ReplayableTransport, unique_topic: str, kafka_engine: str
):
    """Stored positions from a broker that lost its log point past the new log's end. Apache
    Kafka answers OffsetOutOfRange and the client resets to the earliest offset; Tansu sends
    nothing, so the subscriber itself must notice, count it and read the new log from its start
    instead of skipping it unseen."""
    transport.create_topics([unique_topic], partitions=1)
    with transport.publisher() as pub:
        for i in range(5):
            pub.publish(unique_topic, str(i).encode())
    sub = transport.subscriber([unique_topic], start={(unique_topic, 0): 8000})
    got = collect(sub, 5)
    sub.close()
    assert [int(e.value) for e in got] == [0, 1, 2, 3, 4]
    assert sub.stats.log_resets == (1 if kafka_engine == "tansu" else 0)


def ten_read_back(transport: ReplayableTransport) -> ReplayableSubscriber:
    """Topic "t": ten records published ("before") and read by the subscriber returned."""
    transport.create_topics(["t"])
    with transport.publisher("before") as pub:
        for i in range(10):
            pub.publish("t", str(i).encode(), key=b"k")
    sub = transport.subscriber(["t"])
    assert len(collect(sub, 10)) == 10
    return sub


@pytest.mark.parametrize("scheme", CLIENTS)
def test_apache_broker_restart_keeps_the_log_and_nothing_is_read_twice(
    scheme: str, tmp_path: Path
):
    """Apache Kafka keeps its log on disk: across a broker restart a running subscriber carries
    on where it was, reads only what is new, and never resets its position."""
    with ApacheKafkaBroker(folder=tmp_path / "broker") as broker:
        url = f"{scheme}://{broker.bootstrap}?partitions=1"
        with open_transport(url) as transport:
            sub = ten_read_back(replayable(transport))
            broker.restart()
            with open_transport(url) as again, again.publisher("after") as pub2:
                for i in range(20):
                    pub2.publish("t", str(100 + i).encode(), key=b"k")
                pub2.flush()
            got = collect(sub, 20, timeout=40)
            ends = sub.end_positions()
            sub.close()
    assert sorted(int(e.value) for e in got) == list(range(100, 120))
    assert sub.stats.log_resets == 0 and ends == {("t", 0): 30}
    assert sub.stats.sequence.report().duplicates == 0


@pytest.mark.parametrize("scheme", CLIENTS)
def test_tansu_restart_new_log_is_read_from_its_start(scheme: str):
    """The Tansu fallback keeps nothing across a restart, and a consumer's metadata refresh
    re-creates the topic with Tansu's default of 4 partitions: an assign-mode subscriber must
    read the new log from its start and pick up the partitions it did not have. The new log stays
    shorter than the old position (8 < 10 records): a longer one would hide the reset, as Tansu
    sends no OffsetOutOfRange to notice it by."""
    with TansuBroker(port=free_tcp_port()) as broker:
        url = f"{scheme}://{broker.bootstrap}?partitions=1"
        with open_transport(url) as transport:
            sub = ten_read_back(replayable(transport))
            broker.stop()
            broker.start()
            deadline = time.monotonic() + 3  # the subscriber meets the new, empty log first
            while time.monotonic() < deadline:
                sub.poll(1000, 0.2)
            with open_transport(url) as again, again.publisher("after") as pub2:
                again.create_topics(["t"])
                for i in range(8):
                    pub2.publish("t", str(100 + i).encode(), key=b"k%d" % (i % 4))
                pub2.flush()
            got = collect(sub, 8)
            sub.close()
    assert sorted(int(e.value) for e in got) == list(range(100, 108))
    assert sub.stats.log_resets >= 1


def test_seek_to_unassigned_partition_is_a_clear_error(
    transport: ReplayableTransport, unique_topic: str
):
    sub = transport.subscriber([unique_topic])
    with pytest.raises(TransportError, match="not assigned"):
        sub.seek({(unique_topic, 99): 0})
    sub.close()


@pytest.mark.parametrize("scheme", CLIENTS)
def test_foreign_bad_and_oversize_records_are_rejected_and_counted(
    scheme: str, kafka_bootstrap: str, unique_topic: str
):
    with open_transport(f"kafka://{kafka_bootstrap}") as admin:  # brokers do not auto-create
        admin.create_topics([unique_topic])
    raw = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    raw.send(unique_topic, b"foreign, no header")
    raw.send(unique_topic, b"bad header", headers=[(META_HEADER, b"short")])
    raw.flush(10)
    raw.close(5)
    with open_transport(f"{scheme}://{kafka_bootstrap}?max_message_bytes=100") as t:
        with t.publisher() as pub:
            pub.publish(unique_topic, b"ok")
        with open_transport(f"kafka://{kafka_bootstrap}") as big, big.publisher() as bp:
            bp.publish(unique_topic, b"x" * 500)  # valid meta, but over the reader's limit
        sub = t.subscriber([unique_topic])
        got = collect(sub, 1, timeout=10)
        deadline = time.monotonic() + 10
        while sub.stats.rejected < 3 and time.monotonic() < deadline:
            got += sub.poll(1000, 0.2)
        rejected = sub.drain_rejected()
        sub.close()
    assert [e.value for e in got] == [b"ok"]
    assert sub.stats.rejected_by_kind == {"missing_meta": 1, "bad_meta": 1, "oversize": 1}
    assert {r.kind: r.raw for r in rejected}["missing_meta"] == b"foreign, no header"
    assert all(r.topic == unique_topic and r.offset >= 0 for r in rejected)


def test_close_twice_everywhere(transport: ReplayableTransport, unique_topic: str):
    pub = transport.publisher()
    pub.publish(unique_topic, b"x")
    pub.close()
    pub.close()
    sub = transport.subscriber([unique_topic])
    sub.close()
    sub.close()
    transport.close()
    transport.close()
    with pytest.raises(TransportError):
        pub.publish(unique_topic, b"y")
    with pytest.raises(TransportError):
        sub.poll()


@pytest.mark.slow
def test_group_commit_then_new_member_resumes_without_loss_or_duplicates(
    kafka_bootstrap: str, unique_topic: str
):
    with open_transport(f"kafka://{kafka_bootstrap}?partitions=2") as t:
        with t.publisher() as pub:
            for i in range(30):
                pub.publish(unique_topic, str(i).encode(), key=str(i % 3).encode())
        group = f"g-{unique_topic}"
        sub = t.subscriber([unique_topic], group=group)
        first = collect(sub, 30, timeout=30)  # allows for the ~3 s group join on Tansu
        sub.commit()
        sub.close()
        with t.publisher() as pub:
            for i in range(30, 40):
                pub.publish(unique_topic, str(i).encode(), key=str(i % 3).encode())
        again = t.subscriber([unique_topic], group=group)
        second = collect(again, 10, timeout=30)
        again.close()
    assert sorted(int(e.value) for e in first) == list(range(30))
    assert sorted(int(e.value) for e in second) == list(range(30, 40))


@pytest.mark.slow
def test_confluent_group_subscribe_receives(kafka_bootstrap: str, unique_topic: str):
    with open_transport(f"kafka+confluent://{kafka_bootstrap}") as t:
        with t.publisher() as pub:
            for i in range(5):
                pub.publish(unique_topic, str(i).encode())
        sub = replayable(t).subscriber([unique_topic], group=f"g-{unique_topic}")
        got = collect(sub, 5, timeout=30)
        sub.commit()
        committed = sub.committed_positions()
        sub.close()
    assert [int(e.value) for e in got] == list(range(5))
    assert committed == {(unique_topic, 0): 5}


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("kafka://127.0.0.1:9?acks=2", r"bad value '2' for option 'acks'.*0, 1, all"),
        ("kafka://127.0.0.1:9?lingerms=5", r"unknown option 'lingerms'.*accepted: acks="),
        ("kafka+confluent://127.0.0.1:9?compression=brotli", r"expected one of none, gzip"),
        ("kafka://u:pw@127.0.0.1:9", r"credentials in the host part"),
        ("kafka://127.0.0.1:9?engine=apache", r"engine=apache applies to a URL without hosts"),
        ("kafka://?engine=zookeeper", r"expected one of auto, apache, tansu"),
    ],
)
def test_bad_options_are_one_line_errors(url: str, match: str):
    with pytest.raises(TransportOptionError, match=match) as info:
        open_transport(url)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scheme", CLIENTS)
def test_unreachable_broker_fails_fast_and_never_shows_the_password(scheme: str):
    url = (
        f"{scheme}://127.0.0.1:1?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN"
        "&sasl_username=alice&sasl_password=hunter2secret"
    )
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"unreachable on 127\.0\.0\.1:1") as info:
        open_transport(url)
    assert time.monotonic() - started < 10  # bounded, not the client's default minutes
    assert "\n" not in str(info.value) and "hunter2secret" not in str(info.value)
    with pytest.raises(TransportOptionError) as bad:
        open_transport(url + "&bogus=1")
    assert "hunter2secret" not in str(bad.value)
    with pytest.raises(TransportOptionError) as bad_value:
        open_transport(url.replace("sasl_mechanism=PLAIN", "sasl_mechanism=NOPE"))
    assert "hunter2secret" not in str(bad_value.value)


def test_send_failure_surfaces_on_flush():
    # Tansu: a second Apache Kafka JVM would cost ~6 s for what is the client's behaviour
    with TansuBroker() as broker, open_transport(f"{broker.url}?request_timeout_ms=2000") as t:
        pub = t.publisher()
        pub.publish("doomed", b"first")
        pub.flush()
        broker.stop()
        pub.publish("doomed", b"lost unless reported")
        with pytest.raises(TransportError):
            pub.flush(timeout=4)
        with pytest.raises(TransportError):  # the failure is also reported by close
            pub.close(timeout=1)


@pytest.mark.parametrize(("scheme", "engine"), [("kafka", "apache"), ("kafka+confluent", "tansu")])
def test_url_without_hosts_owns_an_embedded_broker(
    scheme: str, engine: str, monkeypatch: pytest.MonkeyPatch, unique_topic: str
):
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    t = open_transport(f"{scheme}://?linger_ms=5&engine={engine}")
    assert isinstance(t, KafkaTransportBase)
    broker = t.broker
    assert broker is not None and broker.running
    wanted = "Apache Kafka 4." if engine == "apache" else "tansu "
    assert f" @ {wanted}" in t.identity and "embedded" in t.identity
    assert t.display_url == f"{scheme}://?linger_ms=5&engine={engine}"
    sub = t.subscriber([unique_topic])
    with t.publisher() as pub:
        pub.publish(unique_topic, b"hi")
    assert [e.value for e in collect(sub, 1)] == [b"hi"]
    sub.close()
    t.close()
    assert not broker.running and port_is_free(broker.host, broker.port)


def test_url_without_hosts_uses_bootstrap_env(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(BOOTSTRAP_ENV, kafka_bootstrap)
    with open_transport("kafka://") as t:
        assert isinstance(t, KafkaTransportBase)
        assert t.broker is None
        assert t.bootstrap == kafka_bootstrap


def test_capabilities_and_identity(transport: ReplayableTransport, kafka_engine: str):
    caps = transport.capabilities
    assert caps.durable and caps.replayable and caps.ordered_per_key
    assert caps.load_balanced and caps.fan_out and not caps.drops_when_slow
    assert "kafka" in transport.identity and " @ " in transport.identity
    # a URL naming the session broker's address still learns which engine serves it
    expected = {"apache-kafka": " @ Apache Kafka 4.", "tansu": " @ tansu "}.get(kafka_engine, "")
    assert expected in transport.identity


def test_the_confluent_client_never_loads_kafka_python(kafka_bootstrap: str, unique_topic: str):
    """``kafka+confluent://`` shares the Kafka core, not the other client: a fresh interpreter
    that publishes, reads and commits through it has no ``kafka`` package loaded."""
    script = f"""
import sys, time
from transports import open_transport, replayable
with open_transport("kafka+confluent://{kafka_bootstrap}") as t:
    sub = replayable(t).subscriber(["{unique_topic}"])
    with t.publisher() as pub:
        pub.publish("{unique_topic}", b"x")
        pub.end_streams()
    got, deadline = [], time.monotonic() + 20
    while not sub.stats.ended and time.monotonic() < deadline:
        got += sub.poll(100, 0.2)
    sub.commit()
    ends = sub.end_positions()
    sub.close()
assert [e.value for e in got] == [b"x"] and sub.stats.ended, (got, sub.stats.ended)
print(sorted(m for m in sys.modules if m == "kafka" or m.startswith("kafka.")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", done.stdout
