"""Binary wire format for envelopes: one self-describing frame, never pickle.

ZeroMQ frame layout (little endian)::

    topic UTF-8 | 0x00 | magic "DH" | version u8 | flags u8 | seq i64 | event_ns i64 |
    publish_ns i64 | pid_len u16 | key_len u16 | n_headers u16 | value_len u32 |
    pid | key | n x (name_len u16 | name | len u32 | value) | value

The topic comes first so PUB/SUB prefix filtering (``topic + b"\\0"``) works inside libzmq.
Kafka carries key, value and headers natively; only the harness metadata travels in one
``x-harness`` header (seq, event_ns, publish_ns, producer id) to keep per-record cost low.
Every decoder validates lengths and raises ``FrameError`` with a *kind* for dead-lettering.
"""

from __future__ import annotations

import struct

from transports.base import Envelope, Headers

MAGIC = b"DH"
VERSION = 1
NO_KEY = 0xFFFF
META_HEADER = "x-harness"

_FIXED = struct.Struct("<2sBBqqqHHHI")
_META = struct.Struct("<qqq")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class FrameError(ValueError):
    """A frame that is not a valid envelope; ``kind`` names the defect for counting."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def encode_frame(
    topic: str,
    value: bytes,
    key: bytes | None,
    headers: Headers,
    producer_id: str,
    seq: int,
    event_time_ns: int,
    publish_time_ns: int,
) -> bytes:
    pid = producer_id.encode()
    if key is not None and len(key) >= NO_KEY:
        raise ValueError(f"key of {len(key)} bytes is too long (max {NO_KEY - 1})")
    parts = [
        topic.encode(),
        b"\x00",
        _FIXED.pack(
            MAGIC,
            VERSION,
            0,
            seq,
            event_time_ns,
            publish_time_ns,
            len(pid),
            NO_KEY if key is None else len(key),
            len(headers),
            len(value),
        ),
        pid,
    ]
    if key:
        parts.append(key)
    for name, hval in headers:
        bname = name.encode()
        parts += (_U16.pack(len(bname)), bname, _U32.pack(len(hval)), hval)
    parts.append(value)
    return b"".join(parts)


def decode_frame(frame: bytes, receive_time_ns: int = 0) -> Envelope:
    sep = frame.find(b"\x00")
    if sep < 0:
        raise FrameError("no_topic", "frame has no topic terminator")
    try:
        topic = frame[:sep].decode()
    except UnicodeDecodeError:
        raise FrameError("invalid_utf8", "topic is not valid UTF-8") from None
    pos = sep + 1
    if len(frame) - pos < _FIXED.size:
        raise FrameError("truncated", f"frame of {len(frame)} bytes is shorter than its header")
    magic, version, _flags, seq, event_ns, publish_ns, pid_len, key_len, n_headers, value_len = (
        _FIXED.unpack_from(frame, pos)
    )
    if magic != MAGIC:
        raise FrameError("bad_magic", f"unknown frame magic {magic!r} (foreign sender?)")
    if version != VERSION:
        raise FrameError("bad_version", f"frame version {version}, this build reads {VERSION}")
    pos += _FIXED.size
    end = len(frame)
    try:
        pid = frame[pos : pos + pid_len].decode()
    except UnicodeDecodeError:
        raise FrameError("invalid_utf8", "producer id is not valid UTF-8") from None
    pos += pid_len
    key: bytes | None = None
    if key_len != NO_KEY:
        key = frame[pos : pos + key_len]
        pos += key_len
    headers: list[tuple[str, bytes]] = []
    for _ in range(n_headers):
        if pos + 2 > end:
            raise FrameError("truncated", "frame ends inside its headers")
        (nlen,) = _U16.unpack_from(frame, pos)
        pos += 2
        name_bytes = frame[pos : pos + nlen]
        pos += nlen
        if pos + 4 > end:
            raise FrameError("truncated", "frame ends inside its headers")
        (vlen,) = _U32.unpack_from(frame, pos)
        pos += 4
        try:
            headers.append((name_bytes.decode(), frame[pos : pos + vlen]))
        except UnicodeDecodeError:
            raise FrameError("invalid_utf8", "header name is not valid UTF-8") from None
        pos += vlen
    if pos + value_len != end:
        raise FrameError(
            "length_mismatch", f"declared value of {value_len} bytes, {end - pos} present"
        )
    return Envelope(
        topic=topic,
        value=frame[pos:],
        key=key,
        headers=tuple(headers),
        producer_id=pid,
        seq=seq,
        event_time_ns=event_ns,
        publish_time_ns=publish_ns,
        receive_time_ns=receive_time_ns,
    )


def encode_meta(producer_id: str, seq: int, event_time_ns: int, publish_time_ns: int) -> bytes:
    """The single Kafka header value carrying harness metadata."""
    return _META.pack(seq, event_time_ns, publish_time_ns) + producer_id.encode()


def decode_meta(raw: bytes) -> tuple[str, int, int, int]:
    """(producer_id, seq, event_ns, publish_ns) from an ``x-harness`` header value."""
    if len(raw) < _META.size:
        raise FrameError("bad_meta", f"x-harness header of {len(raw)} bytes is too short")
    seq, event_ns, publish_ns = _META.unpack_from(raw)
    try:
        pid = raw[_META.size :].decode()
    except UnicodeDecodeError:
        raise FrameError("invalid_utf8", "producer id is not valid UTF-8") from None
    return pid, seq, event_ns, publish_ns
