"""Recordings read back exactly as written, whatever the chunking, with the bad line named."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from core.errors import UserError
from core.recording import READ_CHUNK_BYTES, Frame, RecordingWriter, read_recording


def written(path: Path, n: int) -> list[Frame]:
    """``n`` frames spanning several read chunks: text, bytes, and bytes that are not UTF-8."""
    frames = []
    with RecordingWriter(path, flush_every=1000) as rec:
        for i in range(n):
            raw: str | bytes = json.dumps({"stream": "s", "data": {"i": i, "pad": "é" * 40}})
            if i % 997 == 0:
                raw = b"\xff\xfe not UTF-8 %d" % i  # kept as raw_b64, read back as bytes
            elif i % 5 == 0:
                raw = raw.encode()  # a live frame: read back as text
            rec.write(raw, recv_ns=1_000 + i)
            frames.append(Frame(1_000 + i, raw if isinstance(raw, str) or i % 997 == 0
                                else raw.decode()))  # fmt: skip
    return frames


def test_frames_come_back_in_order_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    frames = written(path, 6000)
    assert len(gzip.decompress(path.read_bytes())) > 3 * READ_CHUNK_BYTES // 2
    assert list(read_recording(path)) == frames


def test_a_bad_line_in_the_middle_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    written(path, 4000)
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    lines[2500] = b'{"recv_ns": 1, "raw": 5}'
    lines.insert(10, b"")  # a blank line is skipped, and counts as a line
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    with pytest.raises(UserError, match=r"r\.jsonl\.gz:2502: not a recording line"):
        list(read_recording(path))


def test_a_cut_file_yields_what_came_before_unless_strict(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    frames = written(path, 4000)
    data = gzip.decompress(path.read_bytes())
    cut = data[: len(data) // 2 + 7]  # mid-line, and no gzip trailer either
    path.write_bytes(gzip.compress(cut)[:-8])
    got = list(read_recording(path))
    assert 0 < len(got) <= cut.count(b"\n") and got == frames[: len(got)]
    path.write_bytes(gzip.compress(cut))  # a whole gzip stream whose last line is cut
    assert list(read_recording(path)) == frames[: cut.count(b"\n")]
    with pytest.raises(UserError, match="not a recording line"):
        list(read_recording(path, tolerant=False))
