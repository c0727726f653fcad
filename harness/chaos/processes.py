"""Start, signal and wait for the real stage commands as subprocesses (what users run)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.chaos.accounting import trade_rows

HARNESS = [sys.executable, "-m", "harness.cli"]


class Stage:
    """One stage process with its log file; kill/stop/cont by pid, never by name."""

    def __init__(self, name: str, args: list[str], log_dir: Path,
                 preexec: Callable[[], None] | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ harness {' '.join(args)}\n".encode())
            self.proc = subprocess.Popen(
                [*HARNESS, *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=preexec, cwd=Path(__file__).resolve().parents[2],
            )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after ``timeout`` (then it is killed)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
            return None

    def last_line(self) -> str:
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def file_size_limit(limit_bytes: int) -> Callable[[], None]:
    """A child preexec: writes past ``limit_bytes`` fail with EFBIG, like a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def wait_rows_above(output: Path, rows: int, timeout: float, proc: Stage | None = None,
                    *, enough: int | None = None, feeder: Stage | None = None) -> float:
    """Seconds until the file holds more than ``rows`` trades (or ``enough``); ``nan`` if not.

    Gives up early when ``proc`` exits, or when ``feeder`` (the producer) has finished and the
    file has not changed for 2 s: then no recovery can be observed any more.
    """
    start = last_change = time.monotonic()
    last = -1
    while time.monotonic() - start < timeout:
        now_rows = trade_rows(output)
        now = time.monotonic()
        if now_rows > rows or (enough is not None and now_rows >= enough):
            return now - start
        if now_rows != last:
            last, last_change = now_rows, now
        if proc is not None and proc.proc.poll() is not None:
            break
        if feeder is not None and feeder.proc.poll() is not None and now - last_change > 2.0:
            break
        time.sleep(0.05)
    return float("nan")


class UnservedTradeCounter:
    """Counts trade frames an emulator's market produced while no client was subscribed to them.

    The emulator's feed drops a frame when nobody subscribes to its stream (like Binance, it does
    not replay), and keeps no count of those; this wraps its per-frame routing to count them, so
    frames lost at the source during a disconnect are a number rather than "unknown".
    """

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.unserved = 0
        route = emulator._route

        def counting_route(raw: str) -> None:
            end = raw.find('"', 11)
            stream = raw[11:end] if raw.startswith('{"stream":"') else ""
            if stream.endswith("@trade") and not any(
                stream in c.streams for c in list(emulator.clients)
            ):
                self.unserved += 1
            route(raw)

        emulator._route = counting_route  # looked up per frame by the emulator's feed task


def wait_reconnected(emulator: Any, connections_before: int, timeout: float) -> float:
    """Seconds until the emulator accepts a connection beyond ``connections_before``; or nan."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if emulator.stats.connections > connections_before:
            return time.monotonic() - start
        time.sleep(0.01)
    return float("nan")
