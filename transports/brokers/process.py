"""What every broker the harness starts shares: free ports, a Kafka readiness probe, and a child
process that cannot outlive the harness.

A broker is a child in its own process group (Ctrl-C in the terminal reaches the harness, which
stops it in order), asked by Linux to die with the thread that started it (PR_SET_PDEATHSIG), and
stopped at interpreter exit, so a crashed run never leaves an orphan JVM or Tansu holding a port.
``stop()`` sends the engine's polite signal, waits a bounded time, then SIGKILLs the group.
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
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from core.errors import UserError
from transports.base import TransportError

log = logging.getLogger("transports.brokers")

STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1
_LIVE: weakref.WeakSet[BrokerProcess] = weakref.WeakSet()


class BrokerUnavailableError(UserError, TransportError):
    """This machine cannot run the requested broker engine (no binary, no Java, no jars)."""


class BrokerStartError(TransportError):
    """The broker did not come up: port taken, process crashed, or not ready in time."""


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

    Hand-encoded (12 bytes) so a probe does not depend on a client's bootstrap retries.
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


def _die_with_parent_thread(sig: int) -> None:
    """preexec_fn: ask Linux to signal the broker if the thread that started it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


class BrokerProcess:
    """One broker child process with its log file; ``polite`` is the signal that stops it
    cleanly (Tansu: SIGINT; the JVM: SIGTERM runs Kafka's controlled shutdown)."""

    def __init__(self, name: str, log_path: Path, polite: int) -> None:
        self.name = name
        self.log_path = log_path
        self.polite = polite
        self.proc: subprocess.Popen[bytes] | None = None
        #: called once the process has exited after ``stop()`` (not after ``kill()``)
        self.on_stopped: Callable[[], None] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        in_main = threading.current_thread() is threading.main_thread()
        polite = self.polite
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: the harness stops it in order
                preexec_fn=(lambda: _die_with_parent_thread(polite)) if in_main else None,
            )
        _LIVE.add(self)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Polite signal to the group, wait up to ``timeout``, then SIGKILL; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            signal_group(proc.pid, self.polite)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s pid %s did not stop in %.0f s; killing it", self.name, proc.pid,
                            timeout)
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)
        elif proc is not None:
            proc.wait(0)
        _LIVE.discard(self)
        if proc is not None and self.on_stopped is not None:
            callback, self.on_stopped = self.on_stopped, None
            callback()

    def kill(self) -> None:
        """SIGKILL, no shutdown at all (what a crash or ``kill -9`` does)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
        _LIVE.discard(self)

    def log_tail(self, lines: int = 3) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(empty log)"


def wait_answering(process: BrokerProcess, host: str, port: int, deadline: float) -> None:
    """Until ``host:port`` answers ApiVersions; a clear error if the process exits first or the
    deadline passes (with the end of its log)."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = process.exit_code()
        if code is not None:
            raise BrokerStartError(f"{process.name} exited with code {code} while starting on "
                                   f"{host}:{port}: {process.log_tail()}")
        try:
            kafka_api_versions(host, port, timeout=1.0)
            return
        except (OSError, ConnectionError) as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.05)
    raise BrokerStartError(f"{process.name} on {host}:{port} did not answer ApiVersions in time "
                           f"({last}); log: {process.log_tail()}")


class BrokerHandle:
    """What a started broker offers beside start/stop: its address and its processes."""

    host: str
    port: int | None

    def _processes(self) -> list[BrokerProcess]:
        raise NotImplementedError

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
        procs = self._processes()
        return bool(procs) and all(p.running for p in procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes() if p.pid is not None]

    @property
    def pid(self) -> int | None:
        return self.pids[0] if self.pids else None

    def start(self, timeout: float) -> BrokerHandle:
        raise NotImplementedError

    def stop(self, timeout: float) -> None:
        raise NotImplementedError

    def __enter__(self) -> BrokerHandle:
        return self.start()  # type: ignore[call-arg]

    def __exit__(self, *exc: object) -> None:
        self.stop()  # type: ignore[call-arg]


def stop_all(processes: Sequence[BrokerProcess], timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop several at once: every polite signal first, so none waits for another to go."""
    for child in processes:
        if child.proc is not None and child.proc.poll() is None:
            signal_group(child.proc.pid, child.polite)
    deadline = time.monotonic() + timeout
    for child in processes:
        child.stop(max(0.1, deadline - time.monotonic()))


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@atexit.register
def _stop_all_at_exit() -> None:
    for child in list(_LIVE):
        with contextlib.suppress(Exception):
            child.stop(timeout=3.0)
