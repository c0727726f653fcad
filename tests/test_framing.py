"""The envelope wire format: exact round trips, and every defect rejected with a named kind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports import Envelope, framing
from transports.framing import (
    BatchEncoder,
    FrameError,
    decode_frame,
    decode_into,
    decode_meta,
    encode_batch,
    encode_entry,
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


def test_bad_version_is_named_apart_from_bad_magic() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(GOOD.replace(b"DH\x01", b"DH\x09", 1))
    assert info.value.kind == "bad_version"


def test_name_caches_stay_bounded_under_ever_new_names() -> None:
    """A peer sending a new topic/producer id per frame must not grow memory without limit.
    These are the pure-Python codec's caches; the compiled one's is fixed-size by construction."""
    encode, decode = framing.py_encode_frame, framing.py_decode_frame
    for i in range(3 * framing._NAME_CACHE_ENTRIES):
        env = decode(encode(f"t{i}", b"v", None, (), f"p{i}", i, 0, 0))
        assert (env.topic, env.producer_id) == (f"t{i}", f"p{i}")
    long_name = "x" * (framing._NAME_CACHE_MAX_BYTES + 1)
    env = decode(encode(long_name, b"v", None, (), long_name, 0, 0, 0))
    assert env.topic == long_name
    assert len(framing._decoded_names) <= framing._NAME_CACHE_ENTRIES
    assert len(framing._encoded_names) <= framing._NAME_CACHE_ENTRIES
    assert long_name.encode() not in framing._decoded_names
    assert long_name not in framing._encoded_names


def test_invalid_utf8_producer_id_is_rejected_even_after_valid_frames() -> None:
    good = encode_frame("t", b"v", None, (), "pp", 0, 0, 0)
    decode_frame(good)
    with pytest.raises(FrameError) as info:
        decode_frame(good.replace(b"pp", b"\xff\xfe"))
    assert info.value.kind == "invalid_utf8"


envelope_fields = st.tuples(
    st.binary(max_size=50),
    st.none() | st.binary(max_size=10),
    st.lists(st.tuples(names, st.binary(max_size=10)), max_size=2),
    st.integers(0, 2**62),
)


@settings(max_examples=200, derandomize=True)
@given(
    topic=st.text(max_size=10).filter(lambda t: "\x00" not in t),
    items=st.lists(envelope_fields, min_size=1, max_size=8),
)
def test_batch_frames_round_trip_and_match_single_frames(
    topic: str, items: list[tuple[bytes, bytes | None, list[tuple[str, bytes]], int]]
) -> None:
    batch = BatchEncoder(topic, "pid")
    for value, key, headers, seq in items:
        batch.add(value, key, tuple(headers), seq, seq + 1, seq + 2)
    frame = batch.frame()
    entries = [encode_entry(v, k, tuple(h), "pid", s, s + 1, s + 2) for v, k, h, s in items]
    assert frame == encode_batch(topic, entries)
    out: list[Envelope] = []
    assert decode_into(frame, out) == len(items)
    singles = [
        decode_frame(encode_frame(topic, v, k, tuple(h), "pid", s, s + 1, s + 2))
        for v, k, h, s in items
    ]
    assert out == singles


@settings(max_examples=400, derandomize=True)
@given(data=st.data())
def test_corrupted_batches_are_rejected_whole_never_partially(data: st.DataObject) -> None:
    entries = [encode_entry(b"value", None, (("h", b"x"),), "pid", s, 0, 0) for s in range(4)]
    frame = bytearray(encode_batch("t", entries))
    for _ in range(data.draw(st.integers(1, 3))):
        frame[data.draw(st.integers(2, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    out: list[Envelope] = []
    try:
        got = decode_into(bytes(frame[:cut]), out)
    except FrameError as exc:
        assert exc.kind != "batch" and out == []
    else:
        assert got == len(out) >= 1


def test_decode_frame_points_batch_frames_to_decode_into() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(encode_batch("t", [encode_entry(b"v", None, (), "p", 0, 0, 0)]))
    assert info.value.kind == "batch"
