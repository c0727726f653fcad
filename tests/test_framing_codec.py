"""The compiled codec (transports/_framing_c.c) against its pure-Python reference in framing.py.

The C functions must return exactly what the Python ones return for every input, and raise the
same errors: valid frames of every shape, frames with bytes flipped, cut or appended, batches,
unusual argument types. Envelopes they build must be ordinary Envelopes, and nothing may leak.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import sysconfig
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports import Envelope, framing
from transports.framing import (
    BatchEncoder,
    FrameError,
    py_decode_frame,
    py_decode_into,
    py_encode_entry,
    py_encode_frame,
)

try:
    from transports import _framing_c
except ImportError:  # no compiler where this was installed: test_codec_is_built says so
    _framing_c = None  # type: ignore[assignment]
else:  # framing.py skips this under HARNESS_CODEC=python; the comparison runs either way
    _framing_c.setup(Envelope, py_encode_frame, py_decode_frame, py_decode_into, py_encode_entry)

needs_c = pytest.mark.skipif(_framing_c is None, reason="compiled codec not built here")


def _compiler_available() -> bool:
    """A C compiler and Python's headers: what building the extension needs."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    return shutil.which(cc) is not None and headers.exists()


def test_codec_is_built_where_a_compiler_exists() -> None:
    """Benchmarks quote the compiled codec: a silent fall back to Python must not go unnoticed."""
    if os.environ.get("HARNESS_CODEC", "auto") == "python":
        assert framing.CODEC == "python"
    elif _compiler_available():
        assert _framing_c is not None, "compiler and headers present, codec not built"
        assert framing.CODEC == "c"


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except FrameError as exc:
        return "frame_error", (exc.kind, str(exc))
    except Exception as exc:  # the exact error type is what is compared
        return type(exc).__name__, str(exc)


def _both_decoders(frame: Any) -> None:
    assert _outcome(lambda: _framing_c.decode_frame(frame, 5)) == _outcome(
        lambda: py_decode_frame(frame, 5)
    )
    c_out: list[Envelope] = [Envelope("before", b"")]
    py_out: list[Envelope] = [Envelope("before", b"")]
    c = _outcome(lambda: _framing_c.decode_into(frame, c_out))
    py = _outcome(lambda: py_decode_into(frame, py_out))
    assert (c, c_out) == (py, py_out)


names = st.text(max_size=12)
headers_st = st.lists(st.tuples(names, st.binary(max_size=12)), max_size=3).map(tuple)
int64 = st.integers(-(2**63), 2**63 - 1)


@needs_c
@settings(max_examples=300, derandomize=True)
@given(
    topic=st.text(min_size=1, max_size=80).filter(lambda t: "\x00" not in t),
    value=st.binary(max_size=300),
    key=st.none() | st.binary(max_size=40),
    headers=headers_st,
    pid=st.text(max_size=80),
    seq=int64,
    event=int64,
    publish=int64,
)
def test_valid_frames_encode_and_decode_identically(
    topic: str,
    value: bytes,
    key: bytes | None,
    headers: framing.Headers,
    pid: str,
    seq: int,
    event: int,
    publish: int,
) -> None:
    args = (topic, value, key, headers, pid, seq, event, publish)
    frame = _framing_c.encode_frame(*args)
    assert frame == py_encode_frame(*args)
    _both_decoders(frame)
    entry = _framing_c.encode_entry(*args[1:])  # the same envelope as one entry of a batch
    assert entry == py_encode_entry(*args[1:])
    assert py_decode_into_list(framing.encode_batch(topic, [entry, entry]))[1].value == value


def py_decode_into_list(frame: bytes) -> list[Envelope]:
    out: list[Envelope] = []
    py_decode_into(frame, out)
    return out


@needs_c
@pytest.mark.parametrize(
    "args",
    [
        (b"v", b"k" * 70_000, (), "p", 0, 0, 0),  # key too long: ValueError from Python
        (b"v", None, (), "p", 2**63, 0, 0),  # out of int64
        (b"v", None, (("\ud800", b"x"),), "p", 0, 0, 0),  # name not encodable
        ("text", None, (), "p", 0, 0, 0),  # str value
        (b"v", None, [], "p", 0, 0, 0),  # headers as a list
    ],
)
def test_unusual_entry_arguments_take_the_python_path(args: tuple[Any, ...]) -> None:
    assert _outcome(lambda: _framing_c.encode_entry(*args)) == _outcome(
        lambda: py_encode_entry(*args)
    )


@st.composite
def damaged_frames(draw: st.DrawFn) -> bytes:
    """A single or batch frame with bytes flipped, cut or appended (or left intact)."""
    if draw(st.booleans()):
        frame = py_encode_frame(
            draw(st.sampled_from(["t", "tópico"])),
            draw(st.binary(max_size=20)),
            draw(st.none() | st.binary(max_size=5)),
            draw(headers_st),
            draw(st.sampled_from(["p", "pé"])),
            draw(int64),
            1,
            2,
        )
    else:
        batch = BatchEncoder("t", "p")
        for seq in range(draw(st.integers(1, 4))):
            batch.add(draw(st.binary(max_size=10)), draw(st.none() | st.binary(max_size=3)),
                      draw(headers_st), seq, 0, 0)  # fmt: skip
        frame = batch.frame()
    data = bytearray(frame)
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data) + draw(st.binary(max_size=3))


@pytest.mark.slow
@needs_c
@settings(max_examples=1500, derandomize=True)
@given(damaged_frames())
def test_damaged_frames_get_the_same_result_or_the_same_error(frame: bytes) -> None:
    _both_decoders(frame)


@needs_c
@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_get_the_same_result_or_the_same_error(raw: bytes) -> None:
    _both_decoders(raw)
    _both_decoders(b"t\x00DB\x01" + raw)  # a batch header in front: the batch parser's input


@needs_c
@pytest.mark.parametrize(
    "args",
    [
        ("t", b"v", b"k" * 0xFFFF, (), "p", 0, 0, 0),  # key too long: ValueError
        ("\ud800", b"v", None, (), "p", 0, 0, 0),  # lone surrogate: UnicodeEncodeError
        ("t", b"v", None, (), "p", 2**63, 0, 0),  # seq out of range: struct.error
        ("t", b"v", None, (), "p", 0, 0, -(2**63) - 1),
        ("t", b"v", None, (), "p" * 0x10000, 0, 0, 0),  # producer id too long: struct.error
        ("t", bytearray(b"v"), None, (), "p", 0, 0, 0),  # bytes-like values are fine
        ("t", memoryview(b"value"), b"", (), "p", 0, 0, 0),
        ("t", b"v", None, [("h", b"x")], "p", 0, 0, 0),  # headers as a list
        ("t", b"v", None, (("h", bytearray(b"x")),), "p", 0, 0, 0),
        ("t", b"v", None, (("h", b"x", b"extra"),), "p", 0, 0, 0),
        ("t", b"v", None, (), "p", True, 0, 0),  # bool is an int
        ("t", b"v", None, (), "p", 1.5, 0, 0),  # not an int
        ("t", "text", None, (), "p", 0, 0, 0),  # str value
    ],
)
def test_unusual_arguments_take_the_python_path(args: tuple[Any, ...]) -> None:
    assert _outcome(lambda: _framing_c.encode_frame(*args)) == _outcome(
        lambda: py_encode_frame(*args)
    )


@needs_c
def test_unusual_decode_arguments_take_the_python_path() -> None:
    frame = py_encode_frame("t", b"v", None, (), "p", 3, 0, 0)
    for raw in (bytearray(frame), memoryview(frame), "text", None):
        assert _outcome(lambda r=raw: _framing_c.decode_frame(r)) == _outcome(
            lambda r=raw: py_decode_frame(r)
        )
    assert _framing_c.decode_frame(frame, receive_time_ns=9) == py_decode_frame(frame, 9)
    c_out: tuple[Envelope, ...] = ()
    assert _outcome(lambda: _framing_c.decode_into(frame, c_out)) == _outcome(
        lambda: py_decode_into(frame, c_out)  # type: ignore[arg-type]
    )


@needs_c
def test_compiled_envelopes_are_ordinary_envelopes() -> None:
    env = _framing_c.decode_frame(py_encode_frame("t", b"v", b"k", (("h", b"x"),), "p", 1, 2, 3))
    assert type(env) is Envelope
    assert env == Envelope("t", b"v", b"k", (("h", b"x"),), "p", 1, 2, 3, -1, -1, 0)
    env.receive_time_ns = 4
    assert dataclasses.replace(env, seq=9).seq == 9
    assert env.header("h") == b"x"
    assert "producer_id='p'" in repr(env)
    gc.collect()


@needs_c
def test_setup_refuses_a_class_it_cannot_fill() -> None:
    @dataclasses.dataclass
    class WithDict:
        topic: str

    with pytest.raises(TypeError):
        _framing_c.setup(WithDict, py_encode_frame, py_decode_frame, py_decode_into)
    _framing_c.setup(Envelope, py_encode_frame, py_decode_frame, py_decode_into)


@needs_c
def test_no_memory_is_leaked_on_valid_and_rejected_frames() -> None:
    good = py_encode_frame("t", b"v" * 50, b"k", (("h", b"x"),), "p", 1, 2, 3)
    batch = BatchEncoder("t", "p")
    for seq in range(5):
        batch.add(b"v", None, (("h", b"x"),), seq, 0, 0)
    frames = [good, good[:-1], good.replace(b"DH", b"XX"), batch.frame(), batch.frame()[:-2]]

    def churn(times: int) -> None:
        for _ in range(times):
            for frame in frames:
                _outcome(lambda f=frame: _framing_c.decode_into(f, []))
            _framing_c.encode_frame("t", b"v", b"k", (("h", b"x"),), "p", 1, 2, 3)

    churn(200)  # warm caches (names, exception machinery)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        churn(5000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, f"{after - before} bytes kept after 25,000 decodes"


class _Again(Exception):
    pass


@needs_c
def test_receive_into_hands_back_each_frame_it_does_not_take_before_receiving_more() -> None:
    """The compiled ZeroMQ receive loop: frames of other topics, oversize or undecodable ones
    come back at once (the caller may still ask the socket about their parts); the loop stops
    at max_messages (a batch frame may overshoot it) or when the socket has nothing queued."""
    batch = BatchEncoder("t", "p")
    for seq in range(3):
        batch.add(b"b", None, (), seq, 0, 0)
    queue = [
        py_encode_frame("t", b"v", None, (), "p", 10, 0, 0),
        py_encode_frame("other", b"v", None, (), "p", 0, 0, 0),
        b"t\x00garbage",
        py_encode_frame("t", b"x" * 300, None, (), "p", 11, 0, 0),
        batch.frame(),
        py_encode_frame("t", b"v", None, (), "p", 12, 0, 0),
    ]
    received: list[bytes] = []

    def recv(flags: int) -> bytes:
        assert flags == 1
        if not queue:
            raise _Again
        received.append(queue.pop(0))
        return received[-1]

    out: list[Envelope] = []
    prefixes = (b"t\x00",)

    def call(max_messages: int) -> tuple[int, bytes | None]:
        return _framing_c.receive_into(recv, 1, _Again, out, max_messages, prefixes, 200)

    assert call(10) == (1, received[1]) and len(received) == 2  # other topic, handed back
    assert call(10) == (0, b"t\x00garbage")
    assert call(10) == (0, received[3])  # longer than max_frame_bytes
    assert call(2) == (3, None)  # the batch frame overshoots max_messages
    assert call(10) == (1, None)  # then the socket is empty
    assert [env.seq for env in out] == [10, 0, 1, 2, 12]
    with pytest.raises(TypeError):
        _framing_c.receive_into(recv, 1, _Again, out, 10, [b"t\x00"], 80)
