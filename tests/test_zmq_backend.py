"""ZeroMQ backend beyond the shared contract: bind roles, load balancing, fan-out, exact drop
accounting, back-pressure and hostile input. Real sockets on random free ports; every test owns
its context and terminates it with a bound, so a leaked socket fails the test instead of hanging.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from transports import (
    Envelope,
    MessageTooLargeError,
    Subscriber,
    TransportClosedError,
    TransportError,
    open_transport,
)
from transports.base import PublishInterrupted
from transports.brokers import free_tcp_port
from transports.framing import decode_into, encode_batch, encode_entry, encode_frame
from transports.sequence import SequenceTracker
from transports.zmq import OPTIONS, ZmqTransport


def tcp_url(options: str = "") -> str:
    return f"zmq+tcp://127.0.0.1:{free_tcp_port()}?linger_ms=0&{options}"


def receive(sub: Subscriber, count: int, timeout: float = 20.0) -> list[Envelope]:
    got: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(sub.poll(max_messages=500, timeout=0.1))
    return got


def quiet(sub: Subscriber, seconds: float = 0.5) -> list[Envelope]:
    got: list[Envelope] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got.extend(sub.poll(max_messages=500, timeout=0.05))
    return got


def urls(tmp_path: Path) -> dict[str, str]:
    return {
        "tcp": tcp_url(),
        "ipc": f"zmq+ipc://{tmp_path}/rt.sock?linger_ms=0",
        "inproc": f"zmq+inproc://rt-{uuid.uuid4().hex}?linger_ms=0",
    }


@pytest.mark.parametrize("pattern", ["pushpull", "pubsub"])
@pytest.mark.parametrize("kind", ["tcp", "ipc", "inproc"])
def test_round_trip_keeps_key_headers_and_metadata(
    ctx: zmq.Context[Any], tmp_path: Path, kind: str, pattern: str
) -> None:
    url = urls(tmp_path)[kind] + f"&pattern={pattern}"
    if pattern == "pubsub":
        url += "&wait_subscribers=1"
    with ZmqTransport(url, context=ctx) as transport:
        assert transport.identity.startswith(f"pyzmq {zmq.__version__} / libzmq")
        assert transport.identity.endswith(f"{pattern} {kind}")
        with transport.publisher("p1") as pub, transport.subscriber(["trades"]) as sub:
            pub.publish("trades", b"v", key=b"BTCUSDT", headers=(("h", b"1"),), event_time_ns=7)
            pub.publish("trades", b"")
            got = receive(sub, 2)
    assert [(e.value, e.key, e.headers, e.seq) for e in got] == [
        (b"v", b"BTCUSDT", (("h", b"1"),), 0),
        (b"", None, (), 1),
    ]
    assert got[0].producer_id == "p1" and got[0].event_time_ns == 7
    assert got[0].publish_time_ns <= got[0].receive_time_ns


def test_capabilities_follow_the_pattern(ctx: zmq.Context[Any]) -> None:
    with ZmqTransport(tcp_url("pattern=pushpull"), context=ctx) as t:
        caps = t.capabilities
        assert caps.load_balanced and caps.ordered_per_key and not caps.fan_out
        assert not (caps.durable or caps.replayable or caps.drops_when_slow)
    with ZmqTransport(tcp_url("pattern=pubsub"), context=ctx) as t:
        caps = t.capabilities
        assert caps.fan_out and caps.drops_when_slow and not caps.load_balanced


def test_pushpull_load_balances_over_two_pullers_without_loss_or_duplicates(
    ctx: zmq.Context[Any],
) -> None:
    with (
        ZmqTransport(tcp_url(), context=ctx) as transport,
        transport.publisher("lb") as pub,
        transport.subscriber(["t"]) as a,
        transport.subscriber(["t"]) as b,
    ):
        quiet(a, 0.2), quiet(b, 0.2)  # both connections up before the first send
        for i in range(2000):
            pub.publish("t", b"%d" % i)
        got_a: list[Envelope] = []
        got_b: list[Envelope] = []
        deadline = time.monotonic() + 20
        while len(got_a) + len(got_b) < 2000 and time.monotonic() < deadline:
            got_a += a.poll(timeout=0.05)
            got_b += b.poll(timeout=0.05)
    assert got_a and got_b, "both pullers should get work"
    seqs = [e.seq for e in got_a + got_b]
    assert sorted(seqs) == list(range(2000))
    merged = SequenceTracker()
    merged.merge(a.stats.sequence)
    merged.merge(b.stats.sequence)
    report = merged.report()
    assert (report.lost, report.duplicates, report.received) == (0, 0, 2000)


def test_pubsub_fans_out_and_filters_topics(ctx: zmq.Context[Any]) -> None:
    with (
        ZmqTransport(tcp_url("pattern=pubsub"), context=ctx) as transport,
        transport.publisher("fan") as pub,
        transport.subscriber(["t1"]) as only_t1,
        transport.subscriber(["t1", "t2"]) as both,
    ):
        deadline = time.monotonic() + 10
        while pub.subscribers_for("t1") < 2 and time.monotonic() < deadline:
            pub.flush()  # reads the XPUB subscription messages
        assert pub.subscribers_for("t1") == 2 and pub.subscribers_for("t2") == 1
        assert pub.subscribers_for("t10") == 0, "t1's prefix must not match t10"
        for i in range(100):
            for topic in ("t1", "t2", "t10"):
                pub.publish(topic, b"%d" % i)
        got_t1 = receive(only_t1, 100) + quiet(only_t1, 0.3)
        got_both = receive(both, 200) + quiet(both, 0.3)
    assert [e.seq for e in got_t1] == list(range(100))
    assert {e.topic for e in got_t1} == {"t1"}
    assert sorted((e.topic, e.seq) for e in got_both) == sorted(
        (t, i) for t in ("t1", "t2") for i in range(100)
    )


def test_pubsub_slow_subscriber_drops_are_counted_exactly(ctx: zmq.Context[Any]) -> None:
    total = 20_000
    url = tcp_url("pattern=pubsub&hwm=20&sndbuf=4096&rcvbuf=4096&wait_subscribers=1")
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.publisher("slow") as pub,
        transport.subscriber(["t"]) as sub,
    ):
        for i in range(total):  # the subscriber is not reading: PUB must drop, not block
            pub.publish("t", b"%08d" % i + b"." * 200)
        got = quiet(sub, 1.0)
        tracker = sub.stats.sequence
        tracker.expect_total("slow", "t", total)
        report = tracker.report()
    seen = {e.seq for e in got}
    assert len(seen) == len(got), "no duplicates"
    assert 0 < report.lost == total - len(got)
    assert set(tracker.missing("slow", "t")) == set(range(total)) - seen


def test_pushpull_stalled_receiver_back_pressures_and_loses_nothing(
    ctx: zmq.Context[Any],
) -> None:
    """A full HWM blocks publish (here bounded by send_timeout_ms so the test can see it)."""
    url = tcp_url("hwm=10&sndbuf=4096&rcvbuf=4096&send_timeout_ms=300")
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.publisher("bp") as pub,
        transport.subscriber(["t"]) as sub,
    ):
        quiet(sub, 0.2)
        with pytest.raises(TransportError, match="high-water mark full"):
            for i in range(1_000_000):
                pub.publish("t", b"%08d" % i + b"." * 1000)
        sent = pub.published
        assert sent < 1_000_000
        got = receive(sub, sent) + quiet(sub, 0.3)
    assert [e.seq for e in got] == list(range(sent)), "in order, nothing lost before the block"


@pytest.mark.parametrize("pattern", ["pushpull", "pubsub"])
def test_bind_subscriber_fans_in_two_publishers(ctx: zmq.Context[Any], pattern: str) -> None:
    with (
        ZmqTransport(tcp_url(f"bind=subscriber&pattern={pattern}"), context=ctx) as t,
        t.subscriber(["t"]) as sub,
        t.publisher("a") as pa,
        t.publisher("b") as pb,
    ):
        if pattern == "pubsub":
            # A binding SUB sends its subscriptions to a new publisher only while it is
            # being polled (libzmq #2267), so poll it while the publishers wait.
            deadline = time.monotonic() + 10
            while min(p.subscribers_for("t") for p in (pa, pb)) < 1:
                assert time.monotonic() < deadline, "subscriptions never reached publishers"
                assert sub.poll(timeout=0.05) == []
                pa.flush(), pb.flush()
        for i in range(500):
            pa.publish("t", b"a%d" % i)
            pb.publish("t", b"b%d" % i)
        got = receive(sub, 1000) + quiet(sub, 0.2)
    report = sub.stats.sequence.report()
    assert (report.received, report.streams, report.lost, report.duplicates) == (1000, 2, 0, 0)
    for producer in ("a", "b"):
        assert [e.seq for e in got if e.producer_id == producer] == list(range(500))


def test_garbage_from_a_raw_socket_is_rejected_counted_and_good_frames_keep_flowing(
    ctx: zmq.Context[Any],
) -> None:
    url = tcp_url("bind=subscriber")
    port = int(url.split(":")[2].split("?")[0])
    good = encode_frame("t", b"ok", None, (), "raw", 0, 0, 0)
    with ZmqTransport(url, context=ctx) as transport, transport.subscriber(["t"]) as sub:
        raw = ctx.socket(zmq.PUSH)
        raw.linger = 0
        raw.connect(f"tcp://127.0.0.1:{port}")
        try:
            raw.send(b"\xff" * 64)  # random bytes, no topic terminator
            raw.send(b"t\x00" + b"\x01" * 64)  # a topic, then a foreign payload
            raw.send(good[:10])  # truncated inside the header
            raw.send(b"\xff\xfet\x00" + good[2:])  # invalid UTF-8 topic
            raw.send(good[:-1])  # value shorter than declared
            raw.send_multipart([b"first part", good])  # multipart from an unknown sender
            raw.send(encode_frame("other", b"x", None, (), "raw", 0, 0, 0))  # another consumer's
            raw.send(encode_frame("t", b"ok", None, (), "raw", 1, 0, 0))
            got = receive(sub, 1) + quiet(sub, 0.3)
        finally:
            raw.close()
    assert [e.value for e in got] == [b"ok"]
    assert sub.stats.rejected_by_kind == {
        "no_topic": 1,
        "bad_magic": 1,
        "truncated": 1,
        "invalid_utf8": 1,
        "length_mismatch": 1,
        "multipart": 1,
    }
    assert sub.skipped_other_topics == 1
    rejected = sub.drain_rejected()
    assert rejected[0].raw == b"\xff" * 64
    assert rejected[-1].raw == b"first part" + good
    assert sub.drain_rejected() == []


def test_oversize_frames_are_rejected_and_counted_not_disconnected(ctx: zmq.Context[Any]) -> None:
    url = tcp_url("bind=subscriber&max_message_bytes=1000")
    port = int(url.split(":")[2].split("?")[0])
    with ZmqTransport(url, context=ctx) as transport, transport.subscriber(["t"]) as sub:
        raw = ctx.socket(zmq.PUSH)
        raw.linger = 0
        raw.connect(f"tcp://127.0.0.1:{port}")
        try:
            raw.send(encode_frame("t", b"x" * 1000, None, (("h", b"y" * 50),), "r", 0, 0, 0))
            raw.send(encode_frame("t", b"x" * 100_000, None, (), "r", 1, 0, 0))
            raw.send(encode_frame("t", b"after", None, (), "r", 2, 0, 0))
            got = receive(sub, 2) + quiet(sub, 0.3)
        finally:
            raw.close()
    assert [e.seq for e in got] == [0, 2], "the same connection keeps working"
    assert sub.stats.rejected_by_kind == {"oversize": 1}
    (rejected,) = sub.drain_rejected()
    assert rejected.topic == "t" and len(rejected.raw) == 4096 and "100000 bytes" in rejected.reason


def test_close_is_idempotent_and_use_after_close_is_an_error(ctx: zmq.Context[Any]) -> None:
    transport = ZmqTransport(tcp_url(), context=ctx)
    pub = transport.publisher()
    sub = transport.subscriber(["t"])
    for closable in (pub, sub, pub, sub, transport, transport):
        closable.close()
    with pytest.raises(TransportClosedError):
        sub.poll()
    with pytest.raises(TransportClosedError):
        pub.publish("t", b"x")
    with pytest.raises(TransportClosedError):
        transport.subscriber(["t"])


def test_default_context_is_shared_for_inproc_and_terminated_by_the_last_close() -> None:
    name = f"zmq+inproc://shared-{uuid.uuid4().hex}?linger_ms=0"
    producer_side = open_transport(name)
    consumer_side = open_transport(name)
    with producer_side.publisher("s") as pub, consumer_side.subscriber(["t"]) as sub:
        pub.publish("t", b"x")
        assert [e.value for e in receive(sub, 1)] == [b"x"]
    context = zmq.Context.instance()
    producer_side.close()
    assert not context.closed
    consumer_side.close()
    assert context.closed


def test_unknown_option_error_lists_accepted_options_and_hides_secrets() -> None:
    secret = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    with pytest.raises(TransportError) as info:
        open_transport(f"zmq+tcp://127.0.0.1:5555?hwm_size=5&curve_server_secret={secret}")
    text = str(info.value)
    assert "unknown option 'hwm_size'" in text and "\n" not in text
    for name in OPTIONS:
        assert name in text
    assert secret not in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("zmq+tcp://127.0.0.1", "port"),
        ("zmq+tcp://127.0.0.1:0", "port"),
        ("zmq+inproc://", "name"),
        ("zmq+tcp://127.0.0.1:5555?pattern=pushpull&wait_subscribers=2", "pubsub"),
        ("zmq+tcp://127.0.0.1:5555?linger_ms=-5", "linger_ms"),
        ("zmq+tcp://127.0.0.1:5555?bind=both", "publisher, subscriber"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(TransportError, match=message) as info:
        open_transport(url).close()
    assert "\n" not in str(info.value)


def test_port_in_use_and_nul_topic_are_clear_errors(ctx: zmq.Context[Any]) -> None:
    url = tcp_url()
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.publisher(),
        pytest.raises(TransportError, match="cannot bind"),
    ):
        transport.publisher()
        with pytest.raises(TransportError, match="NUL"):
            transport.subscriber(["bad\x00topic"])


def test_send_with_no_puller_times_out_instead_of_hanging(ctx: zmq.Context[Any]) -> None:
    with (
        ZmqTransport(tcp_url("send_timeout_ms=100"), context=ctx) as transport,
        transport.publisher() as pub,
        pytest.raises(TransportError, match="timed out"),
    ):
        pub.publish("t", b"x")


@settings(max_examples=300, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from(["p1", "p2"]), st.sampled_from(["a", "b"]), st.integers(-1, 12)),
        max_size=60,
    ),
    st.integers(1, 7),
)
def test_batch_sequence_accounting_equals_one_by_one(
    messages: list[tuple[str, str, int]], batch_size: int
) -> None:
    """The receive path's fast in-order run (observe_many) counts exactly like observe()."""
    envelopes = [Envelope(topic, b"", producer_id=pid, seq=seq) for pid, topic, seq in messages]
    one_by_one, batched = SequenceTracker(), SequenceTracker()
    for env in envelopes:
        one_by_one.observe(env.producer_id, env.topic, env.seq)
    for start in range(0, len(envelopes), batch_size):
        batched.observe_many(envelopes[start : start + batch_size])
    assert batched.report() == one_by_one.report()
    assert batched.export_streams() == one_by_one.export_streams()


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["pushpull", "pubsub"])
def test_batched_publisher_delivers_everything_in_order_and_close_flushes(
    ctx: zmq.Context[Any], pattern: str
) -> None:
    url = tcp_url(f"pattern={pattern}&batch=100&batch_linger_ms=10000")
    if pattern == "pubsub":
        url += "&wait_subscribers=1"
    with ZmqTransport(url, context=ctx) as transport:
        sub = transport.subscriber(["trades"])
        pub = transport.publisher("p1")
        for seq in range(250):  # two full batches, a half one left for close() to send
            key = b"K" if seq % 3 == 0 else None
            headers = (("h", b"%d" % seq),) if seq % 5 == 0 else ()
            pub.publish("trades", b"v%d" % seq, key=key, headers=headers, event_time_ns=seq)
        pub.publish("other", b"o")  # its own batch; pubsub filters it out in libzmq
        pub.close()
        got = receive(sub, 250) + quiet(sub, 0.2)
        sub.close()
    assert [(e.seq, e.value, e.event_time_ns) for e in got] == [
        (s, b"v%d" % s, s) for s in range(250)
    ]
    assert got[3].key == b"K" and got[4].key is None and got[5].header("h") == b"5"
    assert {e.producer_id for e in got} == {"p1"}
    assert sub.skipped_other_topics == (1 if pattern == "pushpull" else 0)
    report = sub.stats.sequence.report()
    assert (report.received, report.lost, report.duplicates) == (250, 0, 0)


def test_batch_linger_sends_without_another_publish_or_flush(ctx: zmq.Context[Any]) -> None:
    url = tcp_url("batch=1000&batch_linger_ms=20")
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.subscriber(["t"]) as sub,
        transport.publisher("p") as pub,
    ):
        for _ in range(3):
            pub.publish("t", b"x")
        got = receive(sub, 3, timeout=10.0)  # the publisher stays idle meanwhile
        assert [e.seq for e in got] == [0, 1, 2]
        pub.publish("t", b"y")  # a new linger deadline after the first batch went out
        assert [e.seq for e in receive(sub, 1, timeout=10.0)] == [3]


def test_batching_is_adaptive_a_message_after_a_quiet_linger_goes_at_once(
    ctx: zmq.Context[Any],
) -> None:
    # The publisher connects (bind=subscriber): its pipe exists at once, no race with connect.
    url = tcp_url("bind=subscriber&batch=100&batch_linger_ms=60000")  # never waited out
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.subscriber(["t"]) as sub,
        transport.publisher("p") as pub,
    ):
        pub.publish("t", b"first")  # nothing pending, nothing sent lately: no linger
        assert [e.value for e in receive(sub, 1)] == [b"first"]
        for i in range(3):  # these queue up behind it: batched until full, flush or linger
            pub.publish("t", b"%d" % i)
        assert quiet(sub, 0.3) == []
        pub.flush()
        assert [e.seq for e in receive(sub, 3)] == [1, 2, 3]


def test_poll_never_returns_more_than_max_messages_from_batch_frames(
    ctx: zmq.Context[Any],
) -> None:
    with (
        ZmqTransport(tcp_url("batch=64"), context=ctx) as transport,
        transport.subscriber(["t"]) as sub,
        transport.publisher("p") as pub,
    ):
        pub.publish("t", b"x")
        pub.publish_many([("t", None, b"x", 0, ())] * 199)  # frames of up to 64 envelopes
        sizes: list[int] = []
        deadline = time.monotonic() + 20
        while sum(sizes) < 200 and time.monotonic() < deadline:
            sizes.append(len(sub.poll(max_messages=30, timeout=0.1)))
        assert sum(sizes) == 200 and max(sizes) <= 30
        assert sub.stats.sequence.report().lost == 0


def test_a_bad_batch_is_rejected_whole_and_its_envelopes_count_as_lost(
    ctx: zmq.Context[Any],
) -> None:
    url = tcp_url("bind=subscriber")
    port = int(url.split(":")[2].split("?")[0])
    entries = [encode_entry(b"v", None, (), "raw", seq, 0, 0) for seq in range(6)]
    corrupt = entries[4] + b"!"  # one byte more than its declared length
    with ZmqTransport(url, context=ctx) as transport, transport.subscriber(["t"]) as sub:
        raw = ctx.socket(zmq.PUSH)
        raw.linger = 0
        raw.connect(f"tcp://127.0.0.1:{port}")
        try:
            raw.send(encode_batch("t", entries[:3]))
            raw.send(encode_batch("t", [entries[3], corrupt]))
            raw.send(encode_batch("t", entries[:0]))  # no envelopes at all
            raw.send(encode_batch("t", [entries[5]]))
            got = receive(sub, 4) + quiet(sub, 0.3)
        finally:
            raw.close()
    assert [e.seq for e in got] == [0, 1, 2, 5]
    assert sub.stats.rejected_by_kind == {"length_mismatch": 1, "bad_batch": 1}
    assert sub.drain_rejected()[0].raw == encode_batch("t", [entries[3], corrupt])
    assert sub.stats.sequence.report().lost == 2  # 3 and 4 went with their batch


def test_batch_options_are_validated() -> None:
    for bad in ("batch=0", "batch=x", "batch_linger_ms=-1"):
        with pytest.raises(TransportError, match="batch"):
            ZmqTransport(tcp_url(bad))


@pytest.mark.parametrize("linger", ["0", "60000"])
def test_batch_frames_stay_bounded_in_bytes_and_fit_max_frame_bytes(
    ctx: zmq.Context[Any], linger: str
) -> None:
    url = tcp_url(
        f"batch=1000&batch_linger_ms={linger}&max_message_bytes=100000&max_frame_bytes=500000"
    )
    value = b"v" * 100_000
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.subscriber(["t"]) as sub,
        transport.publisher("p") as pub,
    ):
        pub.publish("t", value)
        if linger == "0":  # packed in publish_many
            pub.publish_many([("t", None, value, 0, ())] * 11)
        else:  # batched by the linger
            for _ in range(11):
                pub.publish("t", value)
            pub.flush()
        got = receive(sub, 12)
    assert [e.seq for e in got] == list(range(12)) and sub.stats.rejected == 0
    for too_small in ("batch=10&max_frame_bytes=100000", "max_frame_bytes=100000"):
        with pytest.raises(TransportError, match=r"max_frame_bytes.*batch=1"):
            ZmqTransport(tcp_url(too_small))
    ZmqTransport(tcp_url("batch=1&max_frame_bytes=100000")).close()


def test_a_key_too_long_in_a_batch_fails_that_publish_only(ctx: zmq.Context[Any]) -> None:
    with (
        ZmqTransport(tcp_url("batch=10&batch_linger_ms=5"), context=ctx) as transport,
        transport.subscriber(["t"]) as sub,
        transport.publisher("p") as pub,
    ):
        with pytest.raises(ValueError, match="too long"):
            pub.publish("t", b"x", key=b"k" * 70_000)
        pub.publish("t", b"y")
        got = receive(sub, 1) + quiet(sub, 0.2)
    assert [e.value for e in got] == [b"y"] and sub.stats.rejected == 0


def test_close_with_pending_batches_and_no_receiver_is_bounded(ctx: zmq.Context[Any]) -> None:
    with ZmqTransport(tcp_url("batch=10&batch_linger_ms=60000"), context=ctx) as transport:
        pub = transport.publisher("p")
        for _ in range(3):
            pub.publish("t", b"x")
        started = time.monotonic()
        pub.close(timeout=0.3)
        assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("framing", ["batch=1", "batch=7", "", "batch=100&batch_linger_ms=5"])
def test_publish_many_sends_what_publish_sends_in_order(
    ctx: zmq.Context[Any], framing: str
) -> None:
    """A producer's ``publish_many`` (the unpaced replay path) gives the same envelopes, in the
    same order with the same numbers, as one ``publish`` per message, whatever the framing (one
    per frame, packed per call, lingering); a topic seen for the first time inside it takes the
    checked path, and an oversize value refuses the batch whole."""
    url = tcp_url(f"bind=subscriber&{framing}&max_message_bytes=1000")
    messages = [
        ("t" if i % 4 else "u", b"K" if i % 3 else None, b"v%d" % i, i, (("h", b"%d" % i),))
        for i in range(450)
    ]
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.subscriber(["t", "u"]) as sub,
        transport.publisher("p") as pub,
    ):
        pub.publish_many(messages[:10])  # "t" and "u" are new here
        pub.publish_many(messages[10:])
        with pytest.raises(MessageTooLargeError):
            pub.publish_many([("t", None, b"ok", 0, ()), ("t", None, b"x" * 1001, 0, ())])
        assert pub.published == len(messages) == sum(pub.published_by_topic.values())
        pub.flush()
        got = receive(sub, len(messages))
        assert quiet(sub, 0.2) == []
    by_topic = {topic: [e for e in got if e.topic == topic] for topic in ("t", "u")}
    for topic, envs in by_topic.items():
        sent = [m for m in messages if m[0] == topic]
        assert [(e.key, e.value, e.event_time_ns, e.headers) for e in envs] == [
            (key, value, ev, headers) for _, key, value, ev, headers in sent
        ]
        assert [e.seq for e in envs] == list(range(len(sent)))


def raw_pull(ctx: zmq.Context[Any]) -> tuple[zmq.Socket[Any], str]:
    """A bare PULL socket bound on a free port, and a URL whose publisher connects to it."""
    port = free_tcp_port()
    pull = ctx.socket(zmq.PULL)
    pull.linger = 0
    pull.rcvtimeo = 5000
    pull.bind(f"tcp://127.0.0.1:{port}")
    return pull, f"zmq+tcp://127.0.0.1:{port}?linger_ms=0&bind=subscriber"


def test_by_default_only_messages_handed_over_together_share_a_frame(
    ctx: zmq.Context[Any],
) -> None:
    """No message waits for a frame by default: ``publish`` goes out alone at once, and
    ``publish_many`` packs up to ``batch`` (16) per topic and frame and sends them all before it
    returns, no ``flush`` needed."""
    pull, url = raw_pull(ctx)
    try:
        with ZmqTransport(url, context=ctx) as transport, transport.publisher("p") as pub:
            pub.publish("t", b"alone")
            envelopes: list[Envelope] = []
            assert decode_into(pull.recv(), envelopes) == 1  # within rcvtimeo, no flush
            pub.publish_many([("t", None, b"%d" % i, i, ()) for i in range(250)])
            sizes = [decode_into(pull.recv(), envelopes) for _ in range(16)]
    finally:
        pull.close()
    assert OPTIONS["batch"].default == 16 and sizes == [16] * 15 + [10]
    assert [e.seq for e in envelopes] == list(range(251))
    assert [e.value for e in envelopes[1:]] == [b"%d" % i for i in range(250)]


def test_packed_publish_many_keeps_numbers_exact_on_timeout_and_on_stop(
    ctx: zmq.Context[Any],
) -> None:
    """With no receiver: a frame whose send times out shows up as that many lost numbers (as
    one message does); frames never sent, and every frame given up on a stop, free theirs."""
    batch = [("t" if i % 2 else "u", None, b"x", 0, ()) for i in range(250)]
    with ZmqTransport(tcp_url("send_timeout_ms=50"), context=ctx) as transport:
        pub = transport.publisher("p")  # binds a PUSH socket nobody connects to
        for topic in ("t", "u"):
            with pytest.raises(TransportError, match="timed out"):
                pub.publish(topic, b"first")
        with pytest.raises(TransportError, match="timed out"):
            pub.publish_many(batch)  # "u" fills its 16 first; "t" has 15 pending
        assert pub.published_by_topic == {"t": 1, "u": 17} and pub.published == 0
        pub.close(timeout=0.1)
    with ZmqTransport(tcp_url(), context=ctx) as transport:  # send_timeout_ms=-1: waits
        pub = transport.publisher("p")
        pub.interrupt = lambda: True
        for topic in ("t", "u"):
            with pytest.raises(PublishInterrupted):
                pub.publish(topic, b"first")
        with pytest.raises(PublishInterrupted):
            pub.publish_many(batch)
        assert pub.published_by_topic == {"t": 0, "u": 0} and pub.published == 0
        pub.close(timeout=0.1)


def test_a_key_too_long_in_a_packed_publish_many_fails_that_message_only(
    ctx: zmq.Context[Any],
) -> None:
    with (
        ZmqTransport(tcp_url("bind=subscriber"), context=ctx) as transport,
        transport.subscriber(["t"]) as sub,
        transport.publisher("p") as pub,
    ):
        pub.publish("t", b"0")
        with pytest.raises(ValueError, match="too long"):
            pub.publish_many([("t", None, b"1", 0, ()), ("t", b"k" * 70_000, b"bad", 0, ()),
                              ("t", None, b"never", 0, ())])  # fmt: skip
        pub.publish_many([("t", None, b"2", 0, ())])
        got = receive(sub, 3) + quiet(sub, 0.2)
        assert pub.published == 3
    assert [(e.seq, e.value) for e in got] == [(0, b"0"), (1, b"1"), (2, b"2")]
