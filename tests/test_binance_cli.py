"""``harness produce binance`` as a user runs it: subprocess, real ZeroMQ, one-line errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from transports import open_transport

HARNESS = str(Path(sys.executable).with_name("harness"))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HARNESS, "produce", "binance", *args], capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_synthetic_run_publishes_into_zeromq(tmp_path: Path) -> None:
    url = f"zmq+tcp://127.0.0.1:{free_port()}?bind=subscriber"
    with open_transport(url) as transport, transport.subscriber(["binance.trade"]) as sub:
        proc = run_cli(
            "--source",
            "synthetic",
            "--transport",
            url,
            "--symbols",
            "btcusdt,ethusdt",
            "--streams",
            "trade",
            "--max-messages",
            "5000",
            "--output-dir",
            str(tmp_path),
            "--seed",
            "3",
        )
        assert proc.returncode == 0, proc.stderr
        got = []
        while len(got) < 5000:
            batch = sub.poll(5000, 5.0)
            assert batch, f"only {len(got)} messages arrived"
            got.extend(batch)
    assert len(got) == 5000
    assert {e.key for e in got} == {b"BTCUSDT", b"ETHUSDT"}
    assert sub.stats.sequence is not None
    assert "source = 'synthetic'" in proc.stderr  # resolved settings printed at start
    assert "binance synthetic: done in" in proc.stderr and "published 5,000" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "btc-usdt"], "bad symbol 'btc-usdt'"),
        (["--streams", "trade,depth7"], "unknown stream type 'depth7'"),
        (["--source", "replay", "--recording", "/nonexistent/rec.jsonl.gz"], "does not exist"),
    ],
)
def test_one_line_errors(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("harness produce: error:") and message in last
    assert "Traceback" not in proc.stderr


def test_unknown_symbol_from_the_exchange_is_one_line(tmp_path: Path) -> None:
    from emulators.binance import emulator_thread

    with emulator_thread(rate=10) as emu:
        proc = run_cli(
            "--endpoint",
            emu.url,
            "--symbols",
            "nosuchcoin",
            "--streams",
            "trade",
            "--transport",
            f"zmq+tcp://127.0.0.1:{free_port()}",
            "--output-dir",
            str(tmp_path),
        )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "exchange refused the subscription" in last and "nosuchcoin" in last
