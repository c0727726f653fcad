"""``harness produce twitter`` as a user runs it: a real process publishing over ZeroMQ."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from emulators.twitter import TwitterEmulator
from transports import open_transport
from transports.base import Envelope

HARNESS = str(Path(sys.executable).with_name("harness"))
TOKEN = "cli-secret-token-5b1e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def produce(args: list[str], env_extra: dict[str, str] | None = None,
            expect: int | None = None, cwd: Path | None = None
            ) -> tuple[subprocess.CompletedProcess[str], list[Envelope]]:
    """Run the CLI; if ``expect`` is given, receive that many messages from its transport."""
    env = {k: v for k, v in os.environ.items() if k != "TWITTER_BEARER_TOKEN"
           and not k.startswith("HARNESS_")}
    env.update(env_extra or {})
    url = f"zmq+tcp://127.0.0.1:{free_port()}"
    got: list[Envelope] = []
    cmd = [HARNESS, "produce", "twitter", "--transport", url, *args]
    if expect is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60,
                              cwd=cwd), got
    with open_transport(url) as transport, transport.subscriber(["twitter.tweet"]) as sub:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=cwd)
        deadline = time.monotonic() + 60
        while len(got) < expect and time.monotonic() < deadline:
            got += sub.poll(1000, 0.2)
        out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), got


@pytest.mark.slow
def test_synthetic_then_replay_over_zeromq_byte_exact(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl.gz"
    first, got = produce(["--source", "synthetic", "--max-messages", "50", "--rate", "0",
                          "--seed", "4", "--record", str(rec), "--output-dir", str(tmp_path)],
                         expect=50)
    assert first.returncode == 0, first.stderr
    assert len(got) == 50 and [e.seq for e in got] == list(range(50))
    tweet = orjson.loads(got[0].value)
    assert got[0].key == tweet["id"].encode() and tweet["includes_users"]
    assert "published 50" in first.stderr and "done in" in first.stderr
    replay, again = produce(["--source", "replay", "--recording", str(rec), "--speed", "max",
                             "--output-dir", str(tmp_path)], expect=50)
    assert replay.returncode == 0, replay.stderr
    assert [(e.key, e.value, e.event_time_ns, e.headers) for e in again] == [
        (e.key, e.value, e.event_time_ns, e.headers) for e in got]


def test_live_against_emulator_never_prints_the_token(tmp_path: Path) -> None:
    with TwitterEmulator(bearer_token=TOKEN) as emu:
        emu.add_tweets(30)
        emu.inject("malformed_json")
        done, got = produce(["--source", "live", "--api-url", emu.url, "--interval", "0.2",
                             "--max-messages", "30", "--first-poll-pages", "5",
                             "--max-results", "10", "--output-dir", str(tmp_path)],
                            {"TWITTER_BEARER_TOKEN": TOKEN}, expect=30)
    assert done.returncode == 0, done.stderr
    assert len({e.key for e in got}) == 30
    assert "bearer_token = ***" in done.stderr
    assert "malformed_json" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert list((tmp_path / "dead_letters").glob("twitter-*.jsonl.gz"))


def test_verbose_logging_does_not_leak_the_token(tmp_path: Path) -> None:
    with TwitterEmulator(bearer_token=TOKEN) as emu:
        emu.add_tweets(10)
        result = subprocess.run(
            [HARNESS, "-v", "produce", "twitter", "--source", "live", "--api-url", emu.url,
             "--transport", f"zmq+tcp://127.0.0.1:{free_port()}?pattern=pubsub",
             "--max-messages", "10", "--output-dir", str(tmp_path)],
            env={**os.environ, "TWITTER_BEARER_TOKEN": TOKEN}, capture_output=True, text=True,
            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "published 10" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_missing_token_is_one_line(tmp_path: Path) -> None:
    result, _ = produce(["--source", "live", "--output-dir", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "harness produce: error: TWITTER_BEARER_TOKEN is not set (needed for --source live)")


@pytest.mark.parametrize("echo", [False, True])
def test_wrong_token_is_one_line_without_the_token(tmp_path: Path, echo: bool) -> None:
    """Issue 18 item 2: a 401 reply that quotes the refused token must not put it in the
    error line."""
    with TwitterEmulator(bearer_token=TOKEN, echo_token_on_401=echo) as emu:
        result, _ = produce(["--source", "live", "--api-url", emu.url,
                             "--output-dir", str(tmp_path)],
                            {"TWITTER_BEARER_TOKEN": "wrong-" + TOKEN})
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert "401 Unauthorized" in last and "Traceback" not in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    if echo:
        assert "Invalid credentials: Bearer ***" in last


def test_unreadable_recording_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jsonl.gz"
    junk.write_bytes(b"not gzip at all")
    result, _ = produce(["--source", "replay", "--recording", str(junk)])
    assert result.returncode == 2
    assert "unreadable" in result.stderr.splitlines()[-1]
    missing, _ = produce(["--source", "replay", "--recording", str(tmp_path / "nope")])
    assert "does not exist" in missing.stderr.splitlines()[-1]
