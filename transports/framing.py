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
from dataclasses import fields

from transports.base import Envelope, Headers

MAGIC = b"DH"
VERSION = 1
NO_KEY = 0xFFFF
META_HEADER = "x-harness"

_FIXED = struct.Struct("<2sBBqqqHHHI")
#: The same header with magic and version read as one field: one comparison per frame.
_HEAD = struct.Struct("<3sBqqqHHHI")
_MAGIC_VERSION = MAGIC + bytes([VERSION])
_META = struct.Struct("<qqq")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

#: Topics and producer ids repeat on every frame: decode/encode each distinct one once. Bounded
#: (cleared when full) so a hostile peer sending ever-new names cannot grow memory; only short
#: names are cached so the bound is on bytes too.
_NAME_CACHE_ENTRIES = 1024
_NAME_CACHE_MAX_BYTES = 256
_decoded_names: dict[bytes, str] = {}
_encoded_names: dict[str, bytes] = {}

_ENVELOPE_FIELDS = (
    "topic value key headers producer_id seq event_time_ns publish_time_ns partition offset"
    " receive_time_ns"
)
if " ".join(f.name for f in fields(Envelope)) != _ENVELOPE_FIELDS:
    # decode_frame builds Envelopes positionally (half the cost of keywords): fail loudly here.
    raise ImportError(f"Envelope fields changed; update transports.framing: {fields(Envelope)}")


class FrameError(ValueError):
    """A frame that is not a valid envelope; ``kind`` names the defect for counting."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def _name_bytes(name: str) -> bytes:
    raw = _encoded_names.get(name)
    if raw is None:
        raw = name.encode()
        if len(raw) <= _NAME_CACHE_MAX_BYTES:
            if len(_encoded_names) >= _NAME_CACHE_ENTRIES:
                _encoded_names.clear()
            _encoded_names[name] = raw
    return raw


def _name_text(raw: bytes, what: str) -> str:
    """Slow path of the name cache: decode, validate, remember."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise FrameError("invalid_utf8", f"{what} is not valid UTF-8") from None
    if len(raw) <= _NAME_CACHE_MAX_BYTES:
        if len(_decoded_names) >= _NAME_CACHE_ENTRIES:
            _decoded_names.clear()
        _decoded_names[raw] = text
    return text


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
    pid = _name_bytes(producer_id)
    if key is None:
        key_len = NO_KEY
    elif len(key) >= NO_KEY:
        raise ValueError(f"key of {len(key)} bytes is too long (max {NO_KEY - 1})")
    else:
        key_len = len(key)
    head = _FIXED.pack(
        MAGIC,
        VERSION,
        0,
        seq,
        event_time_ns,
        publish_time_ns,
        len(pid),
        key_len,
        len(headers),
        len(value),
    )
    if not key and not headers:
        return b"".join((_name_bytes(topic), b"\x00", head, pid, value))
    parts = [_name_bytes(topic), b"\x00", head, pid]
    if key:
        parts.append(key)
    for name, hval in headers:
        bname = name.encode()
        parts += (_U16.pack(len(bname)), bname, _U32.pack(len(hval)), hval)
    parts.append(value)
    return b"".join(parts)


def decode_frame(frame: bytes, receive_time_ns: int = 0) -> Envelope:
    """The hot path of every ZeroMQ receive: one struct for the fixed header, cached names."""
    sep = frame.find(0)
    if sep < 0:
        raise FrameError("no_topic", "frame has no topic terminator")
    raw = frame[:sep]
    topic = _decoded_names.get(raw)
    if topic is None:
        topic = _name_text(raw, "topic")
    pos = sep + 1
    try:
        magic, _flags, seq, event_ns, publish_ns, pid_len, key_len, n_headers, value_len = (
            _HEAD.unpack_from(frame, pos)
        )
    except struct.error:
        raise FrameError(
            "truncated", f"frame of {len(frame)} bytes is shorter than its header"
        ) from None
    if magic != _MAGIC_VERSION:
        _raise_bad_magic(magic)
    pos += _HEAD.size
    end = pos + pid_len
    raw = frame[pos:end]
    pid = _decoded_names.get(raw)
    if pid is None:
        pid = _name_text(raw, "producer id")
    key: bytes | None = None
    if key_len != NO_KEY:
        key = frame[end : end + key_len]
        end += key_len
    headers: Headers = ()
    if n_headers:
        headers, end = _decode_headers(frame, end, n_headers)
    if end + value_len != len(frame):
        raise FrameError(
            "length_mismatch", f"declared value of {value_len} bytes, {len(frame) - end} present"
        )
    return Envelope(
        topic, frame[end:], key, headers, pid, seq, event_ns, publish_ns, -1, -1, receive_time_ns
    )


def _raise_bad_magic(magic_version: bytes) -> None:
    if magic_version[:2] != MAGIC:
        raise FrameError(
            "bad_magic", f"unknown frame magic {magic_version[:2]!r} (foreign sender?)"
        )
    raise FrameError("bad_version", f"frame version {magic_version[2]}, this build reads {VERSION}")


def _decode_headers(frame: bytes, pos: int, count: int) -> tuple[Headers, int]:
    end = len(frame)
    headers: list[tuple[str, bytes]] = []
    for _ in range(count):
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
    return tuple(headers), pos


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
