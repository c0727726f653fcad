"""Issue 18: signals, process lifetimes and stream ends, run as a user runs them.

- item 4: ``harness run`` sent SIGTERM, SIGINT or SIGKILL leaves no child behind; SIGTERM and
  SIGINT are a graceful stop (every processor writes its final checkpoint and summary); the
  Binance producer treats SIGTERM like Ctrl-C (flush, summary);
- item 8: a producer on a ZeroMQ PUSH socket with no consumer stops at its ``--duration``;
- item 12: the run's dead letters include what the producers refused;
- item 13: a standalone processor counts a lost tail from its producer's end announcement;
- item 14: ``--idle-exit`` also fires when no input ever arrives;
- item 15: a run stops its processors on the producers' end announcements (not on a quiet
  spell), and a processor's summary agrees with the run's loss.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import zmq

from core.recording import RecordingWriter
from harness.pipeline import row_counts
from producers.binance.synthetic import SyntheticMarket
from transports.base import END_HEADER
from transports.brokers import free_tcp_port
from transports.framing import encode_frame

HARNESS = [sys.executable, "-m", "harness.cli"]


def _children_of(pid: int) -> set[int]:
    """Direct children of ``pid``, from /proc (they run in sessions of their own)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _start_run(tmp_path: Path, transport: str = "zmq") -> tuple[subprocess.Popen[str], set[int]]:
    proc = subprocess.Popen(
        [*HARNESS, "run", "--transport", transport, "--duration", "60", "--trade-rate", "300",
         "--output-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "HARNESS_KAFKA_BOOTSTRAP"},
    )
    children: set[int] = set()
    stages = 5 if transport == "kafka" else 4  # the embedded broker is a child too

    def all_children() -> bool:
        children.update(_children_of(proc.pid))
        return len(children) >= stages

    _wait_for(all_children, 60, "the run's stages")
    # trades in the file: every stage is connected (a PUSH socket without its peer would
    # make the producer give up at the signal, and its processor get no end announcement)
    # (both processors: one still loading its models when the signal comes has no handler yet)
    market = tmp_path / "latest" / transport / "market.h5"
    sentiment = tmp_path / "latest" / transport / "sentiment.h5"
    _wait_for(lambda: row_counts(market).get("trades", 0) > 0, 60, "trades in the file")
    _wait_for(lambda: row_counts(sentiment).get("tweets", 0) > 0, 60, "tweets in the file")
    return proc, children


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_to_harness_run_is_a_graceful_stop(tmp_path: Path, sig: int) -> None:
    proc, children = _start_run(tmp_path)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    assert "market msgs published" in out  # the summary table is printed
    _wait_for(lambda: not any(_alive(p) for p in children), 5, "no child left")
    for stage in ("candles", "sentiment"):
        logs = tmp_path / "latest" / "zmq" / "logs"
        summary = json.loads((logs / f"{stage}.json").read_text())
        assert summary["stopped_by"] == "end_of_streams", summary  # producers announced
        assert summary["lost"] == 0 and summary["lost_exact"] and summary["flushes"] >= 1
    binance = json.loads((tmp_path / "latest" / "zmq" / "logs" / "binance.json").read_text())
    assert binance["published"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["zmq", "kafka"])
def test_sigkill_to_harness_run_leaves_no_survivor(tmp_path: Path, transport: str) -> None:
    proc, children = _start_run(tmp_path, transport)
    proc.kill()
    proc.wait(10)
    _wait_for(lambda: not any(_alive(p) for p in children), 30, "every child to die")
    # the kernel sent them SIGTERM: the processors still wrote their final checkpoint; on
    # Kafka the broker died with the runner, so committing the offsets after it is a one-line
    # error (the file, not the broker, holds the positions a restart resumes from)
    for stage in ("candles", "sentiment"):
        log = (tmp_path / "latest" / transport / "logs" / f"{stage}.log").read_text()
        assert "Traceback" not in log
        if transport == "zmq":
            assert (tmp_path / "latest" / transport / "logs" / f"{stage}.json").exists()


def test_binance_producer_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    summary = tmp_path / "binance.json"
    port = free_tcp_port()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(f"tcp://127.0.0.1:{port}")
    try:
        proc = subprocess.Popen(
            [*HARNESS, "produce", "binance", "--source", "synthetic", "--rate", "200",
             "--transport", f"zmq+tcp://127.0.0.1:{port}", "--output-dir", str(tmp_path),
             "--summary-json", str(summary)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        received = 0
        deadline = time.monotonic() + 20
        while received < 50 and time.monotonic() < deadline:
            if pull.poll(100):
                pull.recv()
                received += 1
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        pull.close(linger=0)
        ctx.term()
    assert proc.returncode == 0, err[-2000:]
    assert "binance synthetic: done in" in err
    assert json.loads(summary.read_text())["published"] > 0


@pytest.mark.slow
def test_producer_on_push_without_consumer_stops_at_its_duration(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [*HARNESS, "produce", "binance", "--source", "synthetic", "--rate", "100",
         "--duration", "1", "--transport", f"zmq+tcp://127.0.0.1:{free_tcp_port()}",
         "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.monotonic() - started < 20
    assert "no receiver took it" in proc.stderr


@pytest.mark.slow
def test_idle_exit_fires_when_no_input_ever_arrives(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [*HARNESS, "process", "candles", "--transport", f"zmq+tcp://127.0.0.1:{free_tcp_port()}",
         "--output", str(tmp_path / "m.h5"), "--idle-exit", "1", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.monotonic() - started < 30
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["stopped_by"] == "idle" and summary["received"] == 0
    help_text = subprocess.run([*HARNESS, "process", "candles", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    assert "if no input ever arrives" in " ".join(help_text.split())


def _trade(tid: int) -> bytes:
    now_ms = time.time_ns() // 1_000_000
    return orjson.dumps({"e": "trade", "E": now_ms, "s": "BTCUSDT", "t": tid, "p": "100.0",
                         "q": "0.5", "T": now_ms, "m": False, "M": True})


@pytest.mark.slow
def test_a_standalone_processor_counts_the_lost_tail(tmp_path: Path) -> None:
    """A sender published 10 trades, the last 3 never arrived; its end announcement says 10."""
    port = free_tcp_port()
    proc = subprocess.Popen(
        [*HARNESS, "process", "candles", "--transport",
         f"zmq+tcp://127.0.0.1:{port}?bind=subscriber", "--output", str(tmp_path / "m.h5"),
         "--end-after-producers", "1", "--end-grace", "2", "--idle-exit", "30", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    try:
        for seq in range(7):
            push.send(encode_frame("binance.trade", _trade(seq), b"BTCUSDT", (), "p-1", seq,
                                   0, time.time_ns()))
        end = orjson.dumps({"published": {"binance.trade": 10}})
        push.send(encode_frame("binance.trade", b"", None, ((END_HEADER, end),), "p-1", -1,
                               0, time.time_ns()))
        out, err = proc.communicate(timeout=60)
    finally:
        push.close(linger=0)
        ctx.term()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["received"] == 7 and summary["lost"] == 3 and summary["lost_exact"]
    assert summary["stopped_by"] == "end_deadline" and summary["end_missing"] == 3
    assert "never arrived" in err and "7..9" in err


@pytest.mark.slow
def test_a_negative_sequence_number_is_an_invalid_envelope(tmp_path: Path) -> None:
    port = free_tcp_port()
    proc = subprocess.Popen(
        [*HARNESS, "process", "candles", "--transport",
         f"zmq+tcp://127.0.0.1:{port}?bind=subscriber", "--output", str(tmp_path / "m.h5"),
         "--idle-exit", "3", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    try:
        for seq in (0, -5, 1):
            push.send(encode_frame("binance.trade", _trade(abs(seq)), b"BTCUSDT", (), "p-1",
                                   seq, 0, time.time_ns()))
        out, _err = proc.communicate(timeout=60)
    finally:
        push.close(linger=0)
        ctx.term()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["received"] == 2 and summary["rejected"] == {"bad_seq": 1}
    assert summary["rows"]["trades"] == 2 and summary["lost"] == 0


def _recording_with_junk(path: Path, junk: int) -> int:
    market = SyntheticMarket(["btcusdt"], ["trade"], seed=3, start_ms=time.time_ns() // 10**6,
                             rate=1000)
    frames = market.frames()
    with RecordingWriter(path) as rec:
        for i in range(2000):
            frame = next(frames)
            rec.write(frame.raw, frame.recv_ns)
            if i % (2000 // junk) == 0:
                rec.write('{"stream": "btcusdt@trade", "data": {"e": "trade", "p": "1_000"}}')
    return junk


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["zmq", "kafka"])
def test_a_run_ends_on_the_producers_announcements_and_counts_their_dead_letters(
    tmp_path: Path, transport: str
) -> None:
    junk = _recording_with_junk(tmp_path / "rec.jsonl.gz", 10)
    proc = subprocess.run(
        [*HARNESS, "run", "--transport", transport, "--source", "replay", "--speed", "0",
         "--binance-recording", str(tmp_path / "rec.jsonl.gz"), "--no-twitter",
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "HARNESS_KAFKA_BOOTSTRAP"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "latest" / transport
    run_summary = json.loads((out / "summary.json").read_text())
    assert run_summary["market_published"] == 2000 and run_summary["market_lost"] == 0
    assert run_summary["dead_letters"] == junk == run_summary["producer_dead_letters"]
    candles = json.loads((out / "logs" / "candles.json").read_text())
    assert candles["stopped_by"] == "end_of_streams" and candles["lost_exact"]
    assert candles["lost"] == run_summary["market_lost"] and candles["received"] == 2000


def test_end_announcements_on_a_real_socket_close_streams_and_bogus_ones_close_nothing() -> None:
    from transports import open_transport

    url = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?bind=subscriber"
    with open_transport(url) as transport, transport.subscriber(["binance.trade"]) as sub:
        pub = transport.publisher("real")
        raw = zmq.Context.instance().socket(zmq.PUSH)
        raw.connect(url.split("?")[0].replace("zmq+", ""))
        try:
            for i in range(5):
                pub.publish("binance.trade", _trade(i))
            pub.end_streams()
            for body in (b'{"published": {}}', b'{"published": {"other": 3}}', b"not json"):
                raw.send(encode_frame("binance.trade", b"", None, ((END_HEADER, body),),
                                      "intruder", -1, 0, time.time_ns()))
            got: list[object] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (len(got) < 5 or not sub.stats.rejected):
                got += sub.poll(100, 0.1)
        finally:
            raw.close(linger=0)
            pub.close()
        assert len(got) == 5  # the announcement is not data
        assert sub.stats.ended == {"real": {"binance.trade": 5}}
        assert sub.stats.end_missing() == 0
        assert sub.stats.rejected_by_kind == {"bad_end": 1}
