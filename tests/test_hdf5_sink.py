"""HDF5 sink on real files: round trips per table kind, layout, metadata, resume, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.dead_letters import DeadLetters
from core.errors import UserError
from sinks.hdf5 import Hdf5Sink, SinkClosedError, SinkError
from sinks.hdf5_layout import TableLayout, write_rows
from sinks.hdf5_reader import open_snapshot, read_frame, read_table
from sinks.hdf5_schema import TWEET_TEXT_BYTES, Gap, SchemaError, fit_utf8

REPO = Path(__file__).resolve().parents[1]

CANDLE = np.dtype(
    [
        ("window_start_ns", "i8"),
        ("symbol", "S16"),
        ("open", "f8"),
        ("high", "f8"),
        ("low", "f8"),
        ("close", "f8"),
        ("volume", "f8"),
        ("trades", "i8"),
    ]
)
TICKER = np.dtype([("window_start_ns", "i8"), ("symbol", "S16"), ("mean_bid", "f8")])
TWEET = np.dtype(
    [
        ("tweet_id", "i8"),
        ("created_ns", "i8"),
        ("text", f"S{TWEET_TEXT_BYTES}"),
        ("text_truncated", "?"),
        ("compound", "f8"),
        ("coins", "S64"),
    ]
)
SENTIMENT = np.dtype(
    [("window_start_ns", "i8"), ("coin", "S16"), ("count", "i8"), ("mean_compound", "f8")]
)
TABLES = {"candles_1m": CANDLE, "ticker_1m": TICKER, "tweets": TWEET, "sentiment_1m": SENTIMENT}


def _candles(n: int, start: int = 0) -> np.ndarray:
    rows = np.zeros(n, CANDLE)
    rows["window_start_ns"] = (np.arange(n) + start) * 60_000_000_000
    rows["symbol"] = b"BTCUSDT"
    rows["open"] = np.arange(start, start + n) + 0.25
    rows["trades"] = np.arange(start, start + n) * 3
    return rows


def test_round_trip_of_every_table_kind(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    long_text = "gm ₿ to the moon 🚀 " * 80
    text, cut = fit_utf8(long_text, TWEET_TEXT_BYTES)
    with Hdf5Sink(path, TABLES, {"transport": "zmq+sub://127.0.0.1:5555"}) as sink:
        dead = DeadLetters("candles:trades", store=sink.add_dead_letter)
        sink.append("candles_1m", _candles(3))
        sink.append(
            "ticker_1m",
            [{"window_start_ns": 1, "symbol": "ETHUSDT", "mean_bid": 2.5}, (2, b"SOLUSDT", 3.5)],
        )
        sink.append(
            "tweets",
            [
                {
                    "tweet_id": 7,
                    "created_ns": 9,
                    "text": text,
                    "text_truncated": cut,
                    "compound": 0.6,
                    "coins": "BTC",
                }
            ],
        )
        sink.append("sentiment_1m", [(60, "BTC", 4, 0.1), (60, "ETH", 1, -0.5)])
        sink.append(
            "late_events",
            [
                {
                    "kind": "trade",
                    "key": "BTCUSDT",
                    "event_time_ns": 5,
                    "watermark_ns": 10,
                    "receive_time_ns": 11,
                    "window_ns": 60_000_000_000,
                    "id": 42,
                    "price": 1.0,
                    "quantity": 2.0,
                    "topic": "binance.trade",
                    "partition": -1,
                    "offset": -1,
                }
            ],
        )
        dead.add("bad_json", "Expecting value", b"\x00{not json\x00\x00")
        result = sink.flush(gaps=[Gap("p-1", "binance.trade", 10, 14, 123)])
        assert result is not None and result.seq == 1
        assert result.rows_written["candles_1m"] == 3

    np.testing.assert_array_equal(read_table(path, "candles_1m"), _candles(3))
    ticker = read_frame(path, "ticker_1m")
    assert ticker["symbol"].tolist() == ["ETHUSDT", "SOLUSDT"]
    assert ticker["mean_bid"].tolist() == [2.5, 3.5]
    tweets = read_frame(path, "tweets")
    assert cut and tweets.loc[0, "text_truncated"]
    assert tweets.loc[0, "text"] == text.decode()
    assert long_text.startswith(tweets.loc[0, "text"])
    assert read_frame(path, "sentiment_1m")["coin"].tolist() == ["BTC", "ETH"]
    late = read_frame(path, "late_events")
    assert late.loc[0, "key"] == "BTCUSDT" and late.loc[0, "id"] == 42
    letters = read_frame(path, "dead_letters")
    assert letters.loc[0, "raw"] == b"\x00{not json\x00\x00"  # trailing NULs kept
    assert letters.loc[0, "raw_len"] == 12 and letters.loc[0, "source"] == "candles:trades"
    gaps = read_frame(path, "gaps")
    assert gaps.loc[0, "count"] == 5 and gaps.loc[0, "first_missing_seq"] == 10


def test_rows_are_converted_or_rejected_clearly(tmp_path: Path) -> None:
    with Hdf5Sink(tmp_path / "c.h5", TABLES) as sink:
        reordered = np.zeros(2, [("symbol", "S8"), ("window_start_ns", "i4"), ("mean_bid", "f4")])
        reordered["window_start_ns"] = [1, 2]
        assert sink.append("ticker_1m", reordered) == 2
        with pytest.raises(SchemaError, match="lack fields"):
            sink.append("ticker_1m", np.zeros(1, [("symbol", "S8")]))
        with pytest.raises(SchemaError, match="lacks field"):
            sink.append("ticker_1m", [{"symbol": "X"}])
        with pytest.raises(SchemaError, match="unknown table"):
            sink.append("nope", [])
        with pytest.raises(SchemaError, match="expected 3"):
            sink.append("ticker_1m", [(1, "X")])
        sink.append("ticker_1m", [(3, "ÉTHÉRÉUM-LONG-SYMBOL", 1.0)])  # cut at a UTF-8 boundary
        assert sink.truncated_values == {"ticker_1m": 1}
        sink.flush()
    symbols = read_frame(tmp_path / "c.h5", "ticker_1m")["symbol"].tolist()
    assert symbols[2] == "ÉTHÉRÉUM-LONG"  # 16 bytes; the next character would not fit


@pytest.mark.parametrize("compression", ["gzip", None])
def test_datasets_are_chunked_compressed_checksummed_and_resizable(
    tmp_path: Path, compression: str
) -> None:
    path = tmp_path / f"{compression}.h5"
    with Hdf5Sink(path, TABLES, chunk_rows=1000, compression=compression) as sink:  # type: ignore[arg-type]
        sink.append("candles_1m", _candles(2500))
        sink.flush()
    with h5py.File(path, "r") as f:
        ds = f["candles_1m/table"]
        assert ds.shape == (2500,) and ds.maxshape == (None,)
        assert ds.chunks == (1000,)
        assert ds.compression == compression
        assert ds.fletcher32
        assert f["dead_letters/table"].chunks[0] < 1000  # wide rows get smaller chunks
    np.testing.assert_array_equal(read_table(path, "candles_1m"), _candles(2500))


def test_lzf_is_refused_as_no_other_hdf5_reader_has_it(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="'gzip' or None"):
        Hdf5Sink(tmp_path / "x.h5", TABLES, compression="lzf")  # type: ignore[arg-type]


def test_run_metadata_is_stored_as_root_attributes(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    settings = {"window": "1m", "token": "***"}
    Hdf5Sink(path, TABLES, {"settings": settings, "transport": "kafka://h:9092"}).close()
    with open_snapshot(path) as snap:
        meta = snap.metadata
    assert meta["settings"] == settings and meta["transport"] == "kafka://h:9092"
    assert set(meta["versions"]) == {"python", "numpy", "h5py", "hdf5"}
    assert meta["versions"]["hdf5"] == h5py.version.hdf5_version
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert meta["git_revision"].startswith(head)
    assert meta["host"] and meta["start_time_ns"] > 0 and meta["start_time_utc"].endswith("Z")
    with h5py.File(path, "r") as f:  # plain HDF5 tools see JSON text, not pickles
        json.loads(f.attrs["settings"])


def test_resume_cuts_rows_after_the_last_checkpoint_and_returns_positions(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with Hdf5Sink(path, TABLES, require_positions=True) as sink:
        sink.append("candles_1m", _candles(5))
        sink.flush(positions={("trades", 0): 50, ("trades", 1): 7}, state=b'{"open": 1}')
        sink.append("candles_1m", _candles(3, start=5))
        sink.flush(positions={("trades", 0): 80})  # partition 1 keeps its position
    with h5py.File(path, "r+") as f:  # rows written after the checkpoint, never committed
        ds = f["candles_1m/table"]
        ds.resize((12,))
        write_rows(ds, 8, _candles(4, start=8), TableLayout.of(CANDLE))
    sink = Hdf5Sink.open_for_resume(path, TABLES, require_positions=True)
    try:
        assert sink.resume_positions() == {("trades", 0): 80, ("trades", 1): 7}
        assert sink.resume_state() == b'{"open": 1}'
        assert sink.dropped_on_resume == {"candles_1m": 4}
        assert sink.checkpoint_seq == 2
        sink.append("candles_1m", _candles(2, start=8))
        sink.flush(positions={("trades", 0): 99})
    finally:
        sink.close()
    np.testing.assert_array_equal(read_table(path, "candles_1m"), _candles(10))
    with open_snapshot(path) as snap:
        assert snap.positions == {("trades", 0): 99, ("trades", 1): 7}
        assert snap.metadata["resumes"][0]["dropped_rows"] == {"candles_1m": 4}


@pytest.mark.slow
def test_resume_waits_for_a_reader_that_holds_the_file_for_a_moment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader's open takes HDF5's shared file lock, and a writer's open fails while it is held.
    Resume waits for it (a processor restarted while the chaos harness or a notebook reads the
    file) instead of failing, or of rebuilding a file that needed no rebuild."""
    path = tmp_path / "r.h5"
    with Hdf5Sink(path, TABLES) as sink:
        sink.append("candles_1m", _candles(2))
    with subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys, time\n"
         f"f = h5py.File({str(path)!r}, 'r'); print('open', flush=True); time.sleep(3)"],
        stdout=subprocess.PIPE, text=True,
    ) as reader:
        assert reader.stdout is not None and reader.stdout.readline() == "open\n"
        Hdf5Sink.open_for_resume(path, TABLES).close()
    assert "rebuild" not in caplog.text
    assert len(read_table(path, "candles_1m")) == 2


def test_open_for_resume_creates_a_missing_file_and_refuses_other_schemas(tmp_path: Path) -> None:
    path = tmp_path / "new.h5"
    sink = Hdf5Sink.open_for_resume(path, TABLES)
    assert sink.resume_positions() == {} and sink.resume_state() == b""
    sink.close()
    with pytest.raises(SinkError, match="exists"):
        Hdf5Sink(path, TABLES)
    with pytest.raises(SinkError, match="use a new output file"):
        Hdf5Sink.open_for_resume(path, {"candles_1m": CANDLE})
    other = dict(TABLES, ticker_1m=np.dtype([("x", "i8")]))
    with pytest.raises(SinkError, match="use a new output file"):
        Hdf5Sink.open_for_resume(path, other)


def test_replayable_sources_never_checkpoint_rows_without_positions(tmp_path: Path) -> None:
    path = tmp_path / "p.h5"
    sink = Hdf5Sink(path, TABLES, require_positions=True)
    sink.append("candles_1m", _candles(2))
    with pytest.raises(SinkError, match="without positions"):
        sink.flush()
    assert sink.checkpoint_seq == 0 and sink.buffered_rows == 2  # nothing written, nothing lost
    sink.close()  # discards (logged): they would be re-read from the transport
    assert len(read_table(path, "candles_1m")) == 0


def test_flush_and_close_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "l.h5"
    sink = Hdf5Sink(path, TABLES)
    assert sink.flush() is None  # nothing to do: no empty checkpoints
    with open_snapshot(path) as snap:  # readable before the first flush
        assert snap.checkpoint is None and snap.rows["candles_1m"] == 0
    sink.append("candles_1m", _candles(1))
    sink.close()  # non-replayable: close flushes what is buffered
    sink.close()
    with pytest.raises(SinkClosedError):
        sink.append("candles_1m", _candles(1))
    assert len(read_table(path, "candles_1m")) == 1


def test_second_writer_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    with Hdf5Sink(path, TABLES), pytest.raises(SinkError, match="another process"):
        Hdf5Sink.open_for_resume(path, TABLES)


def test_unwritable_output_folder_is_a_clear_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot create output file"):
        Hdf5Sink(blocker / "out.h5", TABLES)


DISK_FULL_CHILD = r"""
import json, resource, signal, sys
import numpy as np
from sinks.hdf5 import Hdf5Sink, SinkError
T = np.dtype([("ts", "i8"), ("noise", "f8", (16,))])
sink = Hdf5Sink(sys.argv[1], {"t": T}, {}, require_positions=True, compression=None)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
offset, error = 0, ""
try:
    while offset < 10_000_000:
        rows = np.zeros(1000, T); rows["ts"] = np.arange(offset, offset + 1000)
        sink.append("t", rows)
        sink.flush(positions={("t", 0): offset + 1000})
        offset += 1000
except SinkError as exc:
    error = str(exc)
try:
    sink.flush(positions={("t", 0): offset + 2000})
    again = "flushed"
except SinkError as exc:
    again = str(exc)
sink.close()
print(json.dumps({"flushed": offset, "error": error, "again": again,
                  "positions": sink.resume_positions()[("t", 0)]}))
"""


def test_full_disk_raises_and_reports_nothing_unwritten_as_flushed(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes write(2) fail like a full disk (EFBIG instead of ENOSPC)."""
    path = tmp_path / "full.h5"
    proc = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CHILD, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["flushed"] > 0 and "failed" in result["error"]
    assert "restart and resume" in result["again"]
    assert result["positions"] == result["flushed"]  # the failed flush did not advance them
    rows = read_table(path, "t")  # the file is readable, holding exactly the flushed rows
    np.testing.assert_array_equal(rows["ts"], np.arange(len(rows)))
    assert len(rows) == result["flushed"]
    sink = Hdf5Sink.open_for_resume(path, {"t": np.dtype([("ts", "i8"), ("noise", "f8", (16,))])})
    assert sink.resume_positions() == {("t", 0): result["flushed"]}
    sink.close()


def test_file_of_an_older_sink_layout_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    Hdf5Sink(path, TABLES).close()
    with h5py.File(path, "r+") as f:
        f.attrs["sink_schema_version"] = 1
    with pytest.raises(SinkError, match=r"has sink layout 1 .*use a new output file"):
        Hdf5Sink.open_for_resume(path, TABLES)


@pytest.mark.parametrize("column", [("x", "O"), ("x", "U8"), ("x", ">i8"), ("x", "M8[ns]")])
def test_columns_other_readers_could_not_read_are_refused(tmp_path: Path, column: tuple) -> None:
    with pytest.raises(SinkError, match=r"stored portably|big-endian"):
        Hdf5Sink(tmp_path / "x.h5", {"t": np.dtype([column])})


def test_rows_appended_in_many_parts_are_written_in_order(tmp_path: Path) -> None:
    """Arrays, a slice of one (not contiguous) and row tuples, joined at one checkpoint."""
    path = tmp_path / "parts.h5"
    every_other = _candles(8, start=10)[::2]
    tuples = [tuple(row) for row in _candles(2, start=20)]
    with Hdf5Sink(path, TABLES) as sink:
        sink.append("candles_1m", _candles(3))
        sink.append("candles_1m", every_other)
        sink.append("candles_1m", tuples)
        sink.flush()
    expected = np.concatenate([_candles(3), every_other, _candles(2, start=20)])
    np.testing.assert_array_equal(read_table(path, "candles_1m"), expected)
