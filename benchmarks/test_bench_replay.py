"""Replay a recording at max speed through the Binance producer into ZeroMQ; report msg/s.

Target (issue 3): >= 100,000 trade messages/s on this machine. The producer runs the full path
per frame (orjson parse, schema validation, re-serialise the ``data`` object, envelope framing,
one zmq send); a consumer in *another process* drains PUSH/PULL over tcp and confirms that every
message arrived (sequence tracker: no gaps). Two figures: from frames already in memory (the
producer's own cost) and from the gzip file (adds decompression + JSON line decoding).
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.dead_letters import DeadLetters
from core.recording import RecordingWriter, read_recording
from producers.binance.schema import BinanceDecoder
from producers.binance.synthetic import SyntheticMarket
from producers.runtime.pacing import replayed_at_speed
from producers.runtime.producer import CHECK_EVERY, Producer, drive
from producers.runtime.stop import StopAfter
from transports import open_transport

N = 200_000
CONSUMER = """
import sys, time
from transports import open_transport
url, n = sys.argv[1], int(sys.argv[2])
with open_transport(url) as t, t.subscriber(["binance.trade"]) as sub:
    print("ready", flush=True)
    got, last = 0, time.monotonic()
    while got < n and time.monotonic() - last < 20:
        batch = sub.poll(10_000, 0.2)
        if batch:
            got += len(batch)
            last = time.monotonic()
    seq = sub.stats.sequence
    print(got, getattr(seq, "lost", "?"), getattr(seq, "duplicates", "?"), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "trades.jsonl.gz"
    market = SyntheticMarket(["btcusdt", "ethusdt"], ["trade"], seed=1)
    with RecordingWriter(path, flush_every=10_000) as writer:
        for f in itertools.islice(market.frames(), N):
            writer.write(f.raw, f.recv_ns)
    return path


def replay_once(recording: Path, preload: bool) -> tuple[float, str]:
    url = f"zmq+tcp://127.0.0.1:{free_port()}"
    with open_transport(url) as transport:
        publisher = transport.publisher("bench-replay")
        consumer = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, url, str(N)], stdout=subprocess.PIPE, text=True
        )
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == "ready"
        frames = list(read_recording(recording)) if preload else read_recording(recording)
        pipe = Producer(publisher, BinanceDecoder(), DeadLetters("bench"))
        start = time.perf_counter()
        drive(pipe, replayed_at_speed(frames, 0.0), StopAfter(), check_every=CHECK_EVERY)
        elapsed = time.perf_counter() - start
        publisher.close()
        out, _ = consumer.communicate(timeout=60)
    assert pipe.published == N
    received = out.split()
    assert int(received[0]) == N, out
    return N / elapsed, out.strip()


@pytest.mark.parametrize("preload", [True, False], ids=["in-memory", "from-gzip"])
def test_replay_max_speed_into_zmq(benchmark, recording: Path, preload: bool) -> None:  # type: ignore[no-untyped-def]
    rates: list[float] = []

    def run() -> None:
        rate, consumer_report = replay_once(recording, preload)
        rates.append(rate)
        benchmark.extra_info["consumer"] = consumer_report

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["msgs_per_s"] = [round(r) for r in rates]
    benchmark.extra_info["messages"] = N
    print(
        f"\nreplay {'in-memory' if preload else 'from-gzip'}: "
        f"{', '.join(f'{r:,.0f}' for r in rates)} trade msg/s (target >= 100,000)"
    )
