"""Binary wire format for envelopes: one self-describing frame, never pickle.

ZeroMQ frame layout (little endian)::

    topic UTF-8 | 0x00 | magic "DH" | version u8 | flags u8 | seq i64 | event_ns i64 |
    publish_ns i64 | pid_len u16 | key_len u16 | n_headers u16 | value_len u32 |
    pid | key | n x (name_len u16 | name | len u32 | value) | value

A batch frame (publisher option ``batch=N``) carries several envelopes of one topic::

    topic UTF-8 | 0x00 | magic "DB" | version u8 | flags u8 | count u32 |
    count x (entry_len u32 | magic "DH" ... value as above, without the topic)

The topic comes first so PUB/SUB prefix filtering (``topic + b"\\0"``) works inside libzmq.
A batch is validated as a whole before any of its envelopes is handed out: one bad entry rejects
the frame (it is lost or delivered as a whole; its sequence numbers then show up as gaps).
Kafka carries key, value and headers natively; only the harness metadata travels in one
``x-harness`` header (seq, event_ns, publish_ns, producer id) to keep per-record cost low.
Every decoder validates lengths and raises ``FrameError`` with a *kind* for dead-lettering.

Two implementations of the per-frame hot path (``encode_frame``, ``encode_entry``,
``decode_frame``, ``decode_into``): the compiled ``transports._framing_c`` (built by
``pip install``; a C compiler is needed) and the pure-Python ``py_*`` functions here, which
are the reference: the C code handles the common valid case and calls them for everything
else, so errors come from one place.
``CODEC`` says which one is in use; ``HARNESS_CODEC=python`` forces the pure-Python one (to
compare, or to rule the C code out); without a compiler the package falls back to it by itself.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import fields
from typing import Any

from transports.base import Envelope, Headers, TransportError

MAGIC = b"DH"
VERSION = 1
NO_KEY = 0xFFFF
META_HEADER = "x-harness"

_FIXED = struct.Struct("<2sBBqqqHHHI")
#: The same header with magic and version read as one field: one comparison per frame.
_HEAD = struct.Struct("<3sBqqqHHHI")
_MAGIC_VERSION = MAGIC + bytes([VERSION])
BATCH_MAGIC = b"DB"
_BATCH_MAGIC_VERSION = BATCH_MAGIC + bytes([VERSION])
_BATCH_HEAD = struct.Struct("<3sBI")
#: A batch entry: its length, then the single-frame header.
_ENTRY = struct.Struct("<I3sBqqqHHHI")
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


def py_encode_frame(
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


def py_decode_frame(frame: bytes, receive_time_ns: int = 0) -> Envelope:
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
        if frame[pos : pos + 3] == _BATCH_MAGIC_VERSION:  # a batch header is shorter
            raise FrameError("batch", "a batch frame: decode it with decode_into") from None
        raise FrameError(
            "truncated", f"frame of {len(frame)} bytes is shorter than its header"
        ) from None
    if magic != _MAGIC_VERSION:
        if magic == _BATCH_MAGIC_VERSION:
            raise FrameError("batch", "a batch frame: decode it with decode_into")
        _raise_bad_magic(magic)
    pid, key, headers, end = _decode_names(
        frame, pos + _HEAD.size, pid_len, key_len, n_headers, len(frame)
    )
    if end + value_len != len(frame):
        raise FrameError(
            "length_mismatch", f"declared value of {value_len} bytes, {len(frame) - end} present"
        )
    return Envelope(
        topic, frame[end:], key, headers, pid, seq, event_ns, publish_ns, -1, -1, receive_time_ns
    )


def _decode_names(
    frame: bytes, pos: int, pid_len: int, key_len: int, n_headers: int, stop: int
) -> tuple[str, bytes | None, Headers, int]:
    """Producer id, key and headers of the envelope whose producer id starts at ``pos``, and
    where its value starts (one envelope frame, or one entry of a batch ending at ``stop``)."""
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
        headers, end = _decode_headers(frame, end, n_headers, stop)
    return pid, key, headers, end


def _raise_bad_magic(magic_version: bytes) -> None:
    if magic_version[:2] == BATCH_MAGIC:
        raise FrameError(
            "bad_version", f"batch version {magic_version[2]}, this build reads {VERSION}"
        )
    if magic_version[:2] != MAGIC:
        raise FrameError(
            "bad_magic", f"unknown frame magic {magic_version[:2]!r} (foreign sender?)"
        )
    raise FrameError("bad_version", f"frame version {magic_version[2]}, this build reads {VERSION}")


def _decode_headers(frame: bytes, pos: int, count: int, end: int) -> tuple[Headers, int]:
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


def py_encode_entry(
    value: bytes,
    key: bytes | None,
    headers: Headers,
    producer_id: str,
    seq: int,
    event_time_ns: int,
    publish_time_ns: int,
) -> bytes:
    """One envelope for a batch frame (no topic: the batch has one); see ``encode_batch``."""
    return _entry(
        value, key, headers, _name_bytes(producer_id), seq, event_time_ns, publish_time_ns
    )


def _entry(
    value: bytes,
    key: bytes | None,
    headers: Headers,
    pid: bytes,
    seq: int,
    event_time_ns: int,
    publish_time_ns: int,
) -> bytes:
    if not key and not headers:
        extra = b""
    else:
        if key is not None and len(key) >= NO_KEY:
            raise ValueError(f"key of {len(key)} bytes is too long (max {NO_KEY - 1})")
        parts = [key] if key else []
        for name, hval in headers:
            bname = name.encode()
            parts += (_U16.pack(len(bname)), bname, _U32.pack(len(hval)), hval)
        extra = b"".join(parts)
    head = _ENTRY.pack(
        _HEAD.size + len(pid) + len(extra) + len(value),
        _MAGIC_VERSION,
        0,
        seq,
        event_time_ns,
        publish_time_ns,
        len(pid),
        NO_KEY if key is None else len(key),
        len(headers),
        len(value),
    )
    return b"".join((head, pid, extra, value))


def encode_batch(topic: str, entries: list[bytes]) -> bytes:
    """One frame carrying ``entries`` (from ``encode_entry``) of ``topic``, in order."""
    head = _BATCH_HEAD.pack(_BATCH_MAGIC_VERSION, 0, len(entries))
    return b"".join((_name_bytes(topic), b"\x00", head, *entries))


class BatchEncoder:
    """Builds one batch frame of ``topic`` envelope by envelope, joined once in ``frame()``.

    The publisher's hot path: one ``encode_entry`` call per envelope, which the compiled codec
    packs whole (key and headers included: packing them in Python cost more per envelope than
    the one-frame-per-envelope send a batch saves).
    """

    __slots__ = ("_parts", "_producer_id", "count", "first_seq", "size")

    def __init__(self, topic: str, producer_id: str, first_seq: int = 0) -> None:
        self._parts: list[bytes] = [_name_bytes(topic) + b"\x00", b""]  # [1]: batch header
        self._producer_id = producer_id
        #: The sequence number its first envelope takes (a sender frees numbers from here).
        self.first_seq = first_seq
        self.count = 0
        self.size = len(self._parts[0]) + _BATCH_HEAD.size  #: bytes of the frame so far

    def add(
        self,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
    ) -> None:
        entry = encode_entry(
            value, key, headers, self._producer_id, seq, event_time_ns, publish_time_ns
        )
        self._parts.append(entry)
        self.size += len(entry)
        self.count += 1

    def frame(self) -> bytes:
        self._parts[1] = _BATCH_HEAD.pack(_BATCH_MAGIC_VERSION, 0, self.count)
        return b"".join(self._parts)


def py_decode_into(frame: bytes, out: list[Envelope]) -> int:
    """Append the envelope(s) of a single or batch frame to ``out``; return how many.

    A bad batch appends nothing and raises ``FrameError``: all of it or none of it.
    """
    try:
        out.append(py_decode_frame(frame))
    except FrameError as err:
        if err.kind != "batch":
            raise
    else:
        return 1
    envelopes = _decode_batch(frame)
    out += envelopes
    return len(envelopes)


def _decode_batch(frame: bytes) -> list[Envelope]:
    sep = frame.find(0)  # py_decode_frame validated the topic and the batch magic
    topic = _decoded_names.get(frame[:sep]) or frame[:sep].decode()
    pos = sep + 1
    try:
        _magic, _flags, count = _BATCH_HEAD.unpack_from(frame, pos)
    except struct.error:
        raise FrameError("truncated", "batch frame ends inside its header") from None
    if not count:
        raise FrameError("bad_batch", "batch frame with no envelopes")
    pos += _BATCH_HEAD.size
    size = len(frame)
    entry_size = _ENTRY.size
    unpack = _ENTRY.unpack_from
    envelopes: list[Envelope] = []
    append = envelopes.append
    for index in range(count):
        try:
            length, magic, _f, seq, event_ns, publish_ns, pid_len, key_len, n_headers, value_len = (
                unpack(frame, pos)
            )
        except struct.error:
            raise FrameError(
                "truncated", f"batch frame ends inside envelope {index} of {count}"
            ) from None
        if magic != _MAGIC_VERSION:
            raise FrameError("bad_batch", f"envelope {index} of {count} has magic {magic!r}")
        stop = pos + 4 + length
        if stop > size:
            raise FrameError("truncated", f"envelope {index} of {count} runs past the frame")
        pid, key, headers, end = _decode_names(
            frame, pos + entry_size, pid_len, key_len, n_headers, stop
        )
        if end + value_len != stop:
            raise FrameError(
                "length_mismatch",
                f"envelope {index} of {count}: value of {value_len} bytes, {stop - end} present",
            )
        append(
            Envelope(
                topic, frame[end:stop], key, headers, pid, seq, event_ns, publish_ns, -1, -1, 0
            )
        )
        pos = stop
    if pos != size:
        raise FrameError("length_mismatch", f"{size - pos} bytes after the last envelope")
    return envelopes


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


class CodecSettingError(TransportError, ImportError):
    """``HARNESS_CODEC`` asks for a codec that cannot be had: one line for the CLI (a
    ``TransportError``), and still an ``ImportError`` for code importing this module."""


def _select_codec() -> tuple[str, Any, Any, Any, Any, Any]:
    """(name, encode_frame, encode_entry, decode_frame, decode_into, receive_into): the compiled
    codec unless
    it is missing or ``HARNESS_CODEC=python``; ``HARNESS_CODEC=c`` makes a missing one an error.
    ``receive_into`` (a ZeroMQ receive loop decoding as it goes) exists in C only: None here."""
    wanted = os.environ.get("HARNESS_CODEC", "auto").lower() or "auto"
    if wanted not in ("auto", "c", "python"):
        raise CodecSettingError(f"HARNESS_CODEC={wanted!r}: expected auto, c or python")
    if wanted != "python":
        try:
            from transports import _framing_c
        except ImportError as exc:
            if wanted == "c":
                raise CodecSettingError(
                    f"HARNESS_CODEC=c but the compiled codec is missing: {exc}"
                ) from exc
            logging.getLogger("transports.framing").info(
                "compiled codec not built (%s); using the pure-Python one", exc
            )
        else:
            _framing_c.setup(
                Envelope, py_encode_frame, py_decode_frame, py_decode_into, py_encode_entry
            )
            c = _framing_c
            return "c", c.encode_frame, c.encode_entry, c.decode_frame, c.decode_into, \
                c.receive_into
    return "python", py_encode_frame, py_encode_entry, py_decode_frame, py_decode_into, None


#: "c" or "python": which implementation ``encode_frame``/``encode_entry``/``decode_frame``/
#: ``decode_into`` are.
CODEC, encode_frame, encode_entry, decode_frame, decode_into, receive_into = _select_codec()
