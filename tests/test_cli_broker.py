"""``harness broker`` as a user runs it: a real subprocess, a real client, Ctrl-C to stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transports import open_transport
from transports.embedded_broker import port_is_free

pytestmark = pytest.mark.kafka

HARNESS = Path(sys.executable).with_name("harness")


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not printed; got {seen!r}")


def test_broker_command_serves_kafka_and_exits_cleanly_on_ctrl_c(free_tcp_port: int):
    port = free_tcp_port
    proc = subprocess.Popen(
        [str(HARNESS), "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        settings = wait_for_line(proc, "settings")
        assert f"port = {port}" in settings
        ready = wait_for_line(proc, "listening on")
        assert f"use kafka://127.0.0.1:{port}" in ready and "tansu" in ready
        with open_transport(f"kafka://127.0.0.1:{port}") as t:
            sub = t.subscriber(["cli-check"])
            with t.publisher() as pub:
                pub.publish("cli-check", b"hello")
            got = []
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                got = sub.poll(10, 0.2)
            sub.close()
        assert [e.value for e in got] == [b"hello"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert port_is_free("127.0.0.1", port)


def test_broker_command_reports_a_taken_port_in_one_line(free_tcp_port: int):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_tcp_port))
        holder.listen()
        done = subprocess.run(
            [str(HARNESS), "broker", "--port", str(free_tcp_port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "already in use" in done.stderr
