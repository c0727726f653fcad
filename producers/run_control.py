"""What every producer's main loop needs besides its source: when to stop, pacing, progress.

Shared by the Binance and Twitter producers so ``--duration``, ``--max-messages``, ``--rate``
and the progress line behave the same for both. Pacing gives each item an *intended* time from
one start instant (like OMB's rate limiter), so a slow publish catches up instead of drifting.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TextIO, TypeVar

from transports.base import Publisher, PublishInterrupted, TransportError

if TYPE_CHECKING:
    from core.heartbeat import Heartbeat

T = TypeVar("T")
#: How long a producer that stops cleanly may take to announce the end of its streams (a PUSH
#: socket whose receiver is gone would otherwise hold it for ever).
END_ANNOUNCE_S = 10.0


class StopAfter:
    """Stop when ``duration_s`` elapsed, ``max_messages`` published, or ``event`` is set."""

    def __init__(
        self,
        duration_s: float | None = None,
        max_messages: int | None = None,
        event: threading.Event | None = None,
    ) -> None:
        self.duration_s = duration_s if duration_s and duration_s > 0 else None
        self.max_messages = max_messages if max_messages and max_messages > 0 else None
        self.event = event or threading.Event()
        self.started = time.monotonic()

    def remaining_s(self) -> float | None:
        if self.duration_s is None:
            return None
        return self.duration_s - (time.monotonic() - self.started)

    def reached(self, published: int) -> bool:
        if self.event.is_set():
            return True
        if self.max_messages is not None and published >= self.max_messages:
            self.event.set()
            return True
        left = self.remaining_s()
        if left is not None and left <= 0:
            self.event.set()
            return True
        return False

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (cut short by the deadline or the event); True if stopping."""
        left = self.remaining_s()
        if left is not None:
            seconds = min(seconds, max(left, 0.0))
        if self.event.wait(max(seconds, 0.0)):
            return True
        return self.reached(0)


@contextlib.contextmanager
def stop_on_signals(stop: StopAfter) -> Iterator[None]:
    """Context: SIGTERM or a first Ctrl-C set ``stop.event`` (flush, close, final progress line);
    a second Ctrl-C raises ``KeyboardInterrupt`` for a user who does not want to wait."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_int = signal.getsignal(signal.SIGINT)
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and stop.event.is_set():
            signal.signal(signal.SIGINT, previous_int)
            raise KeyboardInterrupt
        stop.event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


@contextlib.contextmanager
def publishing(publisher: Publisher, stop: StopAfter, label: str) -> Iterator[None]:
    """Context for a producer's publishing loop, the one stop mechanism both producers share.

    SIGTERM and SIGINT stop it gracefully (``stop_on_signals``); a publish blocked on a receiver
    that takes nothing gives up once ``stop`` is reached (its duration, a signal); and a loop
    that ends without an error announces the end of every stream it used, so receivers count a
    lost tail exactly. The caller closes the publisher afterwards.
    """
    publisher.interrupt = lambda: stop.reached(0)
    with stop_on_signals(stop):
        try:
            yield
        except PublishInterrupted as exc:
            print(f"{label}: {exc}", file=sys.stderr, flush=True)
        stop.event.set()
        announce_end(publisher, label)


def announce_end(publisher: Publisher, label: str, timeout: float = END_ANNOUNCE_S) -> bool:
    """``publisher.end_streams`` within ``timeout``; a failure is reported, never raised."""
    deadline = time.monotonic() + timeout
    publisher.interrupt = lambda: time.monotonic() > deadline
    try:
        publisher.end_streams(timeout)
    except TransportError as exc:
        print(f"{label}: end of streams not announced ({exc}); receivers cannot count a lost "
              "tail", file=sys.stderr, flush=True)
        return False
    return True


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


def paced(
    items: Iterable[T], rate: float, stop: StopAfter | None = None,
    tracker: PaceTracker | None = None,
) -> Iterator[T]:
    """Yield ``items`` at ``rate``/s against one start instant; ``rate <= 0``: unpaced."""
    if rate <= 0:
        for item in items:
            if tracker is not None:
                tracker.item(None)
            yield item
        return
    interval_ns = 1e9 / rate
    start = time.perf_counter_ns()
    for i, item in enumerate(items):
        delay = (start + i * interval_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            if stop is not None:
                if stop.wait(delay):
                    return
            else:
                time.sleep(delay)
        if tracker is not None:
            tracker.item(i * interval_ns)
        yield item


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


def write_summary(
    path: str | None, producer_id: str, published_by_topic: Mapping[str, int],
    counters: Mapping[str, object], pace: PaceTracker | None = None,
) -> None:
    """The producer's final counts as JSON, for ``harness run`` to compute exact loss, and its
    pace (target vs achieved msg/s) so a run can tell a slow machine from a slow transport."""
    if not path:
        return
    import json
    from pathlib import Path

    Path(path).write_text(
        json.dumps(
            {"producer_id": producer_id, "published_by_topic": dict(published_by_topic),
             **counters, "pace": (pace or PaceTracker()).summary()},
            sort_keys=True,
        )
    )
