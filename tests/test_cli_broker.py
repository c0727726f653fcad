"""``harness broker`` as a user runs it: a real subprocess, real clients, Ctrl-C to stop; one
Apache Kafka broker, the 3-broker cluster, and the Tansu fallback on a machine without Java."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transports import open_transport
from transports.brokers import REQUIRE_APACHE_ENV, port_is_free

pytestmark = pytest.mark.kafka

HARNESS = Path(sys.executable).with_name("harness")


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 120) -> str:
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


def round_trip(url: str, topic: str) -> list[bytes]:
    """Publish one record and read it back through ``url`` (kafka:// or kafka+confluent://)."""
    with open_transport(url) as t:
        sub = t.subscriber([topic])
        with t.publisher() as pub:
            pub.publish(topic, b"hello")
        got = []
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            got = sub.poll(10, 0.2)
        sub.close()
    return [e.value for e in got]


def start_broker(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([str(HARNESS), "broker", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def stop_with_ctrl_c(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_broker_command_serves_kafka_and_exits_cleanly_on_ctrl_c(
    free_tcp_port: int, tmp_path: Path
):
    port = free_tcp_port
    proc = start_broker("--port", str(port), "--data-dir", str(tmp_path / "kafka"))
    try:
        settings = wait_for_line(proc, "settings")
        assert f"port = {port}" in settings
        ready = wait_for_line(proc, "listening on")
        assert f"use kafka://127.0.0.1:{port}" in ready
        assert "Apache Kafka 4." in ready or "tansu" in ready
        assert round_trip(f"kafka://127.0.0.1:{port}", "cli-check") == [b"hello"]
    finally:
        code = stop_with_ctrl_c(proc)
    assert code == 0
    assert port_is_free("127.0.0.1", port)
    if "Apache Kafka" in ready:  # the log is on disk, in the folder asked for
        assert (tmp_path / "kafka" / "data" / "meta.properties").is_file()


@pytest.mark.slow
def test_three_broker_cluster_serves_both_clients(tmp_path: Path):
    proc = start_broker("--engine", "apache", "--brokers", "3")
    try:
        ready = wait_for_line(proc, "listening on", timeout=240)
        assert "3 brokers" in ready and "RF 3" in ready
        url = re.search(r"use (kafka://\S+)", ready)
        assert url is not None and url.group(1).count(",") == 2
        for scheme in ("kafka", "kafka+confluent"):
            cluster_url = url.group(1).replace("kafka://", f"{scheme}://", 1) + "?replication=3"
            topic = "cluster-" + scheme.replace("+", "-")
            assert round_trip(cluster_url, topic) == [b"hello"]
    finally:
        code = stop_with_ctrl_c(proc)
    assert code == 0


def test_without_java_the_broker_is_tansu_and_says_so_in_one_line(tmp_path: Path):
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java"), "PATH": str(tmp_path)}
    env.pop(REQUIRE_APACHE_ENV, None)
    env.pop("HARNESS_KAFKA_ENGINE", None)
    proc = start_broker(env=env)
    try:
        ready = wait_for_line(proc, "listening on", timeout=60)
        assert "tansu" in ready and "Apache" not in ready
        port = int(re.search(r"127\.0\.0\.1:(\d+) ", ready).group(1))  # type: ignore[union-attr]
        assert round_trip(f"kafka://127.0.0.1:{port}", "fallback-check") == [b"hello"]
    finally:
        code = stop_with_ctrl_c(proc)
    assert proc.stderr is not None
    warnings = [line for line in proc.stderr.read().splitlines() if "Java" in line]
    assert len(warnings) == 1, warnings
    assert "no Java" in warnings[0] and "Tansu" in warnings[0]
    assert code == 0


def test_without_java_and_apache_required_it_is_one_line_and_exit_2(tmp_path: Path):
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java"), REQUIRE_APACHE_ENV: "1"}
    done = subprocess.run([str(HARNESS), "broker"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "cannot run Apache Kafka" in done.stderr and "no Java" in done.stderr


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
