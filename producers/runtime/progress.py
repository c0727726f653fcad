"""What a running producer tells the outside: a progress line, a heartbeat, a final summary."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from producers.runtime.pacing import PaceTracker

if TYPE_CHECKING:
    from core.heartbeat import Heartbeat


class ProgressReporter:
    """Prints one line every ``every_s`` seconds (and a final one) to stderr; never per message.

    With a ``heartbeat`` (``core.heartbeat.Heartbeat``) it also keeps the service's liveness
    file fresh: the main loop's ticks are what the compose healthcheck sees.
    """

    def __init__(
        self,
        label: str,
        counters: Callable[[], Mapping[str, object]],
        every_s: float = 5.0,
        stream: TextIO | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.label = label
        self._counters = counters
        self.every_s = every_s
        self._stream = stream
        self._heartbeat = heartbeat
        self._start = time.monotonic()
        self._next = self._start + every_s
        self._due = min(self._next, self._start + (heartbeat.every_s if heartbeat else every_s))
        self._last_published = 0
        self._last_time = self._start

    def tick(self) -> None:
        """Cheap to call per message: compares one clock reading."""
        now = time.monotonic()
        if now >= self._due:
            if self._heartbeat is not None:
                self._heartbeat.beat()
            if now >= self._next:
                self._next = now + self.every_s
                self._report(now, final=False)
            beat = now + self._heartbeat.every_s if self._heartbeat else self._next
            self._due = min(self._next, beat)

    def final(self) -> None:
        self._report(time.monotonic(), final=True)

    def _report(self, now: float, final: bool) -> None:
        counters = dict(self._counters())
        published = int(counters.get("published", 0))  # type: ignore[call-overload]
        if final:
            elapsed = now - self._start
            rate = published / elapsed if elapsed > 0 else 0.0
            head = f"{self.label}: done in {elapsed:.1f} s, {rate:,.0f} msg/s"
        else:
            window = now - self._last_time
            rate = (published - self._last_published) / window if window > 0 else 0.0
            head = f"{self.label}: {rate:,.0f} msg/s"
        self._last_published, self._last_time = published, now
        body = ", ".join(
            f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counters.items()
        )
        print(f"{head}; {body}", file=self._stream or sys.stderr, flush=True)


def nonzero_counts(
    counts: Mapping[str, int | float] | object, prefix: str = "", only: Iterable[str] = ()
) -> dict[str, object]:
    """The non-zero counts (a mapping, or the fields of a dataclass; ``only`` some of them) as
    ``{prefix + name: count}``: what progress lines and summaries show of a source's counters."""
    if isinstance(counts, Mapping):
        pairs = list(counts.items())
    else:
        names = only or [f.name for f in dataclasses.fields(counts)]  # type: ignore[arg-type]
        pairs = [(name, getattr(counts, name)) for name in names]
    return {prefix + name: n for name, n in pairs if n}


def write_summary(
    path: Path | str | None, producer_id: str, published_by_topic: Mapping[str, int],
    counters: Mapping[str, object], pace: PaceTracker | None = None,
) -> None:
    """The producer's final counts as JSON, for ``harness run`` to compute exact loss, and its
    pace (target vs achieved msg/s) so a run can tell a slow machine from a slow transport."""
    if not path:
        return
    Path(path).write_text(
        json.dumps(
            {"producer_id": producer_id, "published_by_topic": dict(published_by_topic),
             **counters, "pace": (pace or PaceTracker()).summary()},
            sort_keys=True,
        )
    )
