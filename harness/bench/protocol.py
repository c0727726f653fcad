"""Runner <-> worker messages: one JSON object per line, stdout up and stdin down.

Plain JSON (never pickle) so a worker can be any process, and a crashed worker's output is
still readable. Workers ignore SIGINT: Ctrl-C reaches the runner, which tells them to stop
and still collects what they measured.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
from typing import Any


def emit(kind: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"type": kind, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def read_config() -> dict[str, Any]:
    """The worker's settings: a JSON object passed as the only argument."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config: dict[str, Any] = json.loads(sys.argv[1])
    return config


class Control:
    """Commands from the runner, read on a thread so the measuring loop never blocks on stdin."""

    def __init__(self) -> None:
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stop = threading.Event()
        threading.Thread(target=self._read, name="bench-control", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                command = json.loads(line)
            except json.JSONDecodeError:
                continue
            if command.get("cmd") == "stop":
                self.stop.set()
            self.commands.put(command)
        self.stop.set()  # runner went away: finish and report what we have

    def wait_for(self, cmd: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until ``cmd`` arrives; None on stop or timeout."""
        while not self.stop.is_set():
            try:
                command = self.commands.get(timeout=timeout if timeout is not None else 0.2)
            except queue.Empty:
                if timeout is not None:
                    return None
                continue
            if command.get("cmd") == cmd:
                return command
        return None

    def poll(self) -> dict[str, Any] | None:
        try:
            return self.commands.get_nowait()
        except queue.Empty:
            return None


def run_worker(main: Any) -> None:
    """Entry point of a worker: config in, JSON lines out; failures become one ``error`` line."""
    try:
        main(read_config())
    except Exception as exc:  # reported to the runner, which marks the trial failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        emit("error", message=f"{type(exc).__name__}: {first}")
        raise SystemExit(1) from None
