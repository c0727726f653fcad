"""Pacing: frames are handed out at a multiple of the pace of their receive times.

Every frame carries a receive time: a recording keeps the real one, a synthetic generator stamps
the time it intends the frame to arrive (its rate is in those times). So one function paces
both: ``replayed_at_speed(frames, 1.0)`` reproduces the recorded (or generated) pace, ``2.0``
twice as fast, ``0`` flat out. Intended times count from one start instant (like OMB's rate
limiter), so a slow publish catches up instead of drifting, and ``PaceTracker`` records how far
behind the producer fell.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from core.recording import Frame
from producers.runtime.stop import StopAfter

#: A producer more than this share below its target rate did not keep pace (as in bench).
PACE_TOLERANCE = 0.05


class PaceTracker:
    """Whether a producer kept its source's intended pace: target vs achieved rate, lag.

    A paced source gives every item an intended time from one start instant. A producer that
    cannot keep up (a busy machine, a slow publish) yields items late; the lag at the last item
    says by how much. Rates use the span from the first to the last item, so start-up before
    the first item and waiting after the last one do not count:
    target = items / intended span, achieved = items / actual span. A run whose producer missed
    its target compares machines, not transports, so ``harness run`` and ``demo`` say so.
    """

    def __init__(self) -> None:
        self.items = 0
        self.paced = False
        self._start_ns = 0
        self._last_intended_ns = 0
        self._last_actual_ns = 0
        self.max_lag_ns = 0

    def item(self, intended_offset_ns: float | None) -> None:
        """One item handed out; ``intended_offset_ns`` after the first item (None: unpaced)."""
        now = time.perf_counter_ns()
        if self.items == 0:
            self._start_ns = now
        self.items += 1
        actual = now - self._start_ns
        self._last_actual_ns = actual
        if intended_offset_ns is None:
            return
        self.paced = True
        intended = int(intended_offset_ns)
        self._last_intended_ns = intended
        self.max_lag_ns = max(self.max_lag_ns, actual - intended)

    def summary(self, tolerance: float = PACE_TOLERANCE) -> dict[str, object]:
        """JSON-ready: target/achieved msg/s (None when unknown), lag, and whether on pace."""
        intervals = self.items - 1
        achieved = intervals / (self._last_actual_ns / 1e9) if intervals and \
            self._last_actual_ns > 0 else None
        target = intervals / (self._last_intended_ns / 1e9) if intervals and self.paced and \
            self._last_intended_ns > 0 else None
        on_pace = None if target is None or achieved is None else \
            achieved >= (1.0 - tolerance) * target
        return {
            "items": self.items,
            "target_rate": target,
            "achieved_rate": achieved,
            "lag_s": max(self._last_actual_ns - self._last_intended_ns, 0) / 1e9
            if self.paced else None,
            "max_lag_s": self.max_lag_ns / 1e9 if self.paced else None,
            "on_pace": on_pace,
        }


def replayed_at_speed(
    frames: Iterable[Frame],
    speed: float,
    stop: StopAfter | None = None,
    tracker: PaceTracker | None = None,
) -> Iterator[Frame]:
    """Yield ``frames`` at ``speed`` x the pace of their receive times; ``speed <= 0``: flat out.

    A wait ends early when ``stop`` is reached (a signal, the duration), so a long gap in a
    recording never delays a graceful stop. ``tracker`` records each frame's intended and actual
    time (did the producer keep pace?).
    """
    if speed <= 0:
        if tracker is None:
            yield from frames
            return
        count = 0
        try:  # unpaced: no clock read per frame, only at the first and the last one
            for frame in frames:
                if count == 0:
                    tracker.item(None)
                count += 1
                yield frame
        finally:
            if count > 1:
                tracker.items += count - 2
                tracker.item(None)  # the last frame's time: the achieved rate's span
        return
    start = time.perf_counter_ns()
    first_recv: int | None = None
    for frame in frames:
        if first_recv is None:
            first_recv = frame.recv_ns
        offset = (frame.recv_ns - first_recv) / speed
        delay = (start + offset - time.perf_counter_ns()) / 1e9
        if delay > 0:
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                return
        if tracker is not None:
            tracker.item(offset)
        yield frame
