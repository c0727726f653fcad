"""Hostile peers on real sockets: arbitrary frames into a ZeroMQ subscriber, garbled Kafka headers.

An unknown sender can connect to a binding ZeroMQ socket and a foreign producer can write to a
Kafka topic. Every such message must end up counted under a kind and kept for the dead-letter
store, while the good messages around it are still delivered in order. The expected outcome of
each generated message is computed independently from the wire format rules (see the outcome
table in ``tests/test_fuzz_inputs.py``). Fixed seed, bounded examples.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from foreign_kafka import KafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.dead_letters import DeadLetters
from transports import Subscriber, open_transport
from transports.brokers import free_tcp_port
from transports.framing import META_HEADER, FrameError, decode_frame, encode_frame, encode_meta
from transports.zmq import ZmqTransport

TOPIC = "fuzz.t"
FEW = settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _good(seq: int, value: bytes = b"ok") -> bytes:
    return encode_frame(TOPIC, value, None, (), "good", seq, 1, 2)


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Random bytes, or a real frame with bytes flipped, cut or appended."""
    kind = draw(st.sampled_from(["random", "flipped", "cut", "appended", "topic_only"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=200))
    frame = _good(0, draw(st.binary(max_size=30)))
    if kind == "topic_only":
        return TOPIC.encode() + b"\x00" + draw(st.binary(max_size=60))
    if kind == "cut":
        return frame[: draw(st.integers(1, len(frame) - 1))]
    if kind == "appended":
        return frame + draw(st.binary(min_size=1, max_size=20))
    pos = draw(st.integers(0, len(frame) - 1))
    return frame[:pos] + bytes([frame[pos] ^ draw(st.integers(1, 255))]) + frame[pos + 1 :]


def _expected(frame: bytes) -> str:
    """What the subscriber must do with ``frame``: 'accepted', 'skipped' or a reject kind."""
    try:
        env = decode_frame(frame)
    except FrameError as exc:
        return exc.kind
    if env.topic != TOPIC:
        return "skipped"  # a valid envelope for another consumer of a PUSH/PULL stream
    return "oversize" if len(env.value) > 1_048_576 else "accepted"


class RawPeer:
    """A bound ZmqTransport subscriber plus a raw PUSH socket of an unknown sender."""

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self.ctx: zmq.Context[Any] = zmq.Context()
        url = f"zmq+tcp://127.0.0.1:{self.port}?pattern=pushpull&bind=subscriber"
        self.transport = ZmqTransport(url, context=self.ctx)
        self.sub: Subscriber = self.transport.subscriber([TOPIC])
        self.raw = self.ctx.socket(zmq.PUSH)
        self.raw.linger = 0
        self.raw.connect(f"tcp://127.0.0.1:{self.port}")
        self.sentinel = 0

    def close(self) -> None:
        self.raw.close()
        self.sub.close()
        self.transport.close()
        self.ctx.term()


@pytest.fixture(scope="module")
def peer() -> Iterator[RawPeer]:
    p = RawPeer()
    yield p
    p.close()


@FEW
@given(st.lists(st.one_of(hostile_frames(), st.just(b"GOOD")), min_size=1, max_size=12))
def test_frames_from_an_unknown_zmq_sender_are_counted_dead_lettered_and_good_ones_arrive(
    peer: RawPeer, frames: list[bytes]
) -> None:
    sub = peer.sub
    before = dict(sub.stats.rejected_by_kind)
    sent_good: list[int] = []
    expected: dict[str, int] = {}
    for frame in frames:
        if frame == b"GOOD":
            peer.sentinel += 1
            sent_good.append(peer.sentinel)
            peer.raw.send(_good(peer.sentinel, b"good"))
            continue
        outcome = _expected(frame)
        expected[outcome] = expected.get(outcome, 0) + 1
        peer.raw.send(frame)
    peer.sentinel += 1
    end = peer.sentinel
    peer.raw.send(_good(end, b"end"))  # one connection keeps order: after it, all is counted
    got = []
    deadline = time.monotonic() + 20
    while not any(e.value == b"end" and e.seq == end for e in got):
        assert time.monotonic() < deadline, "the closing good frame never arrived"
        got += sub.poll(1000, 0.1)
    good = [e.seq for e in got if e.producer_id == "good" and e.value in (b"good", b"end")]
    assert good == [*sent_good, end]
    after = sub.stats.rejected_by_kind
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert delta == {k: v for k, v in expected.items() if k not in ("accepted", "skipped")}
    dead = DeadLetters("fuzz")
    for rejected in sub.drain_rejected():  # exactly what the stage runner does with them
        dead.add(rejected.kind, rejected.reason, rejected.raw)
    assert dead.counts == delta
    rejected_frames = [f for f in frames if f != b"GOOD" and _expected(f) in delta]
    assert [letter.raw for letter in dead.kept] == rejected_frames


# -- Kafka --------------------------------------------------------------------------------------

header_names = st.sampled_from([META_HEADER, "X-Harness", "x-harness ", "foreign", "traceparent"])
meta_values = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda s, pid: encode_meta(pid, s, 1, 2), st.integers(0, 10**6),
              st.text(max_size=8)),
    st.builds(lambda s, junk: struct.pack("<qqq", s, 0, 0) + junk, st.integers(0, 10**6),
              st.sampled_from([b"\xff", b"\xc3(", b"ok", b""])),
)
record_headers = st.lists(st.tuples(header_names, meta_values), max_size=3)
#: Always produced besides the generated records, so every class is present in each example.
NAMED_RECORDS: list[tuple[list[tuple[str, bytes]], bytes | None]] = [
    ([], b"no headers at all"),
    ([("foreign", b"x")], b"foreign header only"),
    ([("X-Harness", encode_meta("p", 0, 1, 2))], b"wrong-case header name"),
    ([(META_HEADER, b"short")], b"meta too short"),
    ([(META_HEADER, struct.pack("<qqq", 0, 0, 0) + b"\xff")], b"pid not UTF-8"),
    ([(META_HEADER, encode_meta("dup", 5, 1, 2)), (META_HEADER, b"x")], b"two meta headers"),
    ([("traceparent", b"00-ab"), (META_HEADER, encode_meta("mixed", 0, 1, 2))], b"meta + other"),
    ([(META_HEADER, encode_meta("tomb", 0, 1, 2))], None),
]


def _kafka_expected(headers: list[tuple[str, bytes]], value: bytes | None) -> str:
    """The record rules, restated: first x-harness header is the meta; 24+ bytes; UTF-8 pid."""
    meta = next((v for n, v in headers if n == META_HEADER), None)
    if meta is None:
        return "missing_meta"
    if len(value or b"") > 1_048_576:
        return "oversize"
    if len(meta) < 24:
        return "bad_meta"
    try:
        meta[24:].decode()
    except UnicodeDecodeError:
        return "bad_meta"
    return "accepted"


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["kafka", "kafka+confluent"])
@settings(derandomize=True, max_examples=2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.tuples(record_headers, st.one_of(st.none(), st.binary(max_size=50))),
                        min_size=10, max_size=25))
def test_kafka_records_with_missing_foreign_or_garbled_headers_are_rejected_and_counted(
    kafka_bootstrap: str, scheme: str, records: list[tuple[list[tuple[str, bytes]], bytes | None]]
) -> None:
    records = NAMED_RECORDS + records
    topic = f"fuzz-{time.time_ns()}"
    raw = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    with open_transport(f"{scheme}://{kafka_bootstrap}") as transport:
        transport.create_topics([topic])
        with transport.publisher("good") as pub:
            pub.publish(topic, b"first-good")
            pub.flush()
        for headers, value in records:
            raw.send(topic, value, key=b"k", headers=headers)
        raw.flush(10)
        raw.close(5)
        with transport.publisher("good2") as pub:
            pub.publish(topic, b"last-good")
        expected: dict[str, int] = {}
        for headers, value in records:
            outcome = _kafka_expected(headers, value)
            expected[outcome] = expected.get(outcome, 0) + 1
        total = len(records) + 2
        sub = transport.subscriber([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) + sub.stats.rejected < total:
            assert time.monotonic() < deadline, (len(got), sub.stats.rejected_by_kind)
            got += sub.poll(1000, 0.2)
        rejected = sub.drain_rejected()
        sub.close()
    goods = [e.value for e in got if e.producer_id in ("good", "good2")]
    assert goods == [b"first-good", b"last-good"]
    assert len(got) - 2 == expected.get("accepted", 0)
    assert sub.stats.rejected_by_kind == {
        k: v for k, v in expected.items() if k != "accepted"
    }
    assert all(r.topic == topic and r.offset >= 0 for r in rejected)
