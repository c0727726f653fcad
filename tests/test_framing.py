"""The envelope wire format: exact round trips, and every defect rejected with a named kind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.framing import (
    FrameError,
    decode_frame,
    decode_meta,
    encode_frame,
    encode_meta,
)

names = st.text(min_size=0, max_size=20)


@settings(max_examples=200, derandomize=True)
@given(
    topic=st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
    value=st.binary(max_size=300),
    key=st.none() | st.binary(max_size=40),
    headers=st.lists(st.tuples(names, st.binary(max_size=20)), max_size=4),
    pid=names,
    seq=st.integers(0, 2**62),
    event=st.integers(0, 2**62),
)
def test_frames_round_trip_exactly(
    topic: str,
    value: bytes,
    key: bytes | None,
    headers: list[tuple[str, bytes]],
    pid: str,
    seq: int,
    event: int,
) -> None:
    frame = encode_frame(topic, value, key, tuple(headers), pid, seq, event, event + 1)
    env = decode_frame(frame, receive_time_ns=7)
    assert (env.topic, env.value, env.key, env.headers) == (topic, value, key, tuple(headers))
    assert (env.producer_id, env.seq, env.event_time_ns, env.publish_time_ns) == (
        pid,
        seq,
        event,
        event + 1,
    )
    assert env.receive_time_ns == 7


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    try:
        decode_frame(raw)
    except FrameError as exc:
        assert exc.kind


GOOD = encode_frame("t", b"value", b"k", (("h", b"v"),), "pid", 1, 2, 3)


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"no terminator at all", "no_topic"),
        (b"\xff\xfe\x00" + GOOD[2:], "invalid_utf8"),
        (b"t\x00DH", "truncated"),
        (GOOD.replace(b"DH", b"XX", 1), "bad_magic"),
        (GOOD[:-1], "length_mismatch"),
        (GOOD + b"extra", "length_mismatch"),
    ],
)
def test_defects_are_named(frame: bytes, kind: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(frame)
    assert info.value.kind == kind


def test_meta_header_round_trip_and_short_header() -> None:
    assert decode_meta(encode_meta("p-1", 5, 6, 7)) == ("p-1", 5, 6, 7)
    with pytest.raises(FrameError) as info:
        decode_meta(b"short")
    assert info.value.kind == "bad_meta"
