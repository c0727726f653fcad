"""A liveness signal for long-running services: a file touched while the main loop turns.

``harness produce ... --heartbeat FILE`` and ``harness process ... --heartbeat FILE`` touch
FILE every few seconds from their main loop (never from a side thread, so a loop stuck in a
blocking call stops the beat); ``harness health FILE --max-age S`` exits 0 while the last beat
is younger than S seconds. That is the compose healthcheck of every application service.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("core.heartbeat")

#: Seconds between touches: cheap (one utime) and far below any sensible --max-age.
BEAT_EVERY_S = 5.0


class Heartbeat:
    """``beat()`` is cheap enough to call per message: one clock read until a touch is due."""

    def __init__(self, path: Path | str | None, every_s: float = BEAT_EVERY_S) -> None:
        self.path = Path(path) if path else None
        self.every_s = every_s
        self._next = 0.0
        self._failed = False
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.beat()

    def beat(self) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        try:
            self.path.touch()
            os.utime(self.path)
        except OSError as exc:
            if not self._failed:  # a full or read-only disk: say it once, keep working
                log.error("cannot touch heartbeat file %s: %s", self.path, exc)
                self._failed = True


def heartbeat_age_s(path: Path) -> float | None:
    """Seconds since the last beat, or None when there is no heartbeat file."""
    try:
        return max(time.time() - path.stat().st_mtime, 0.0)
    except FileNotFoundError:
        return None
