"""When a producer stops, and how it stops cleanly: limits, signals, the end announcement.

Every source stops the same way: ``--duration``, ``--max-messages``, the end of its frames,
SIGTERM or a first Ctrl-C. Each is a graceful stop (flush, close, final progress line and
summary) that announces the end of every stream the producer used, so receivers count a lost
tail exactly.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

from transports.base import Publisher, PublishInterrupted, TransportError

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
    """Context for a producer's publishing loop.

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
