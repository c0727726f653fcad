"""Event-time tumbling windows with a watermark: the one windowing core candles, ticker and
sentiment aggregates share, so their windows line up to the millisecond.

Window math: a window of ``size`` ms containing event time ``t`` starts at ``t - t % size``
(aligned to the Unix epoch, UTC, like pandas ``resample(origin="epoch")``) and covers
``[start, start + size)``.

Watermark: ``max event time seen - grace_ms``. A window closes (its row is emitted, its state
dropped) once the watermark reaches its end. An event whose window has ended at or before the
watermark *in force when the event arrives* is LATE for that window: it is returned as a late
row, never folded in and never silently dropped. The decision depends only on the order of
events, not on how they are split into batches, so a replay gives the same rows however the
transport batches it. Out-of-order events within the grace period are folded in normally.

One watermark per aggregator, across all keys (symbols, coins): exchange and tweet timestamps
share one clock, and a per-key watermark would keep a quiet symbol's window open forever.

Panes ("No pane, no gain", Li et al. 2005): events are folded once, into a pane of
``gcd(window sizes)`` ms; a closed pane is merged into every configured window it belongs to.
So a trade costs one state update however many window sizes are configured. An event late for
its pane but not for a larger window is folded straight into that window's state.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S")  # per-key aggregate state
E = TypeVar("E")  # one input event

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_WINDOW_RE = re.compile(r"(\d{1,9})(ms|s|m|h|d)")
#: The watermark before any event: every window is still open.
NO_WATERMARK = -(2**62)


class WindowSpecError(ValueError):
    """A window spec such as ``"90x"`` that cannot be turned into a size in milliseconds (the
    command that read it turns it into its one-line user error)."""


def parse_window(spec: str | int) -> int:
    """``"1s"``, ``"5s"``, ``"1m"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"250ms"`` -> size in ms.

    Months and weeks are refused on purpose: months have no fixed length, and an epoch-aligned
    week starts on a Thursday, which nobody expects.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec <= 0:
            raise WindowSpecError(f"window size must be positive, got {spec} ms")
        return spec
    text = str(spec).strip()
    match = _WINDOW_RE.fullmatch(text)
    if match is None:
        raise WindowSpecError(
            f"bad window {spec!r}: use a positive integer and one of ms, s, m, h, d "
            "(e.g. 1s, 5s, 1m, 15m, 1h, 1d)"
        )
    size = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if size <= 0:
        raise WindowSpecError(f"bad window {spec!r}: size must be positive")
    return size


def window_label(size_ms: int) -> str:
    """The shortest spec naming ``size_ms`` (``60000 -> "1m"``); labels rows and HDF5 tables."""
    for unit in ("d", "h", "m", "s"):
        if size_ms % _UNIT_MS[unit] == 0:
            return f"{size_ms // _UNIT_MS[unit]}{unit}"
    return f"{size_ms}ms"


def window_start(t_ms: int, size_ms: int) -> int:
    """Start of the epoch-aligned window of ``size_ms`` containing ``t_ms`` (floor, also < 0)."""
    return t_ms - t_ms % size_ms


def parse_windows(windows: Iterable[str | int]) -> tuple[int, ...]:
    """Sizes in ms, ascending, duplicates refused (they would emit every row twice)."""
    sizes = [parse_window(w) for w in windows]
    if not sizes:
        raise WindowSpecError("at least one window is required")
    if len(set(sizes)) != len(sizes):
        raise WindowSpecError(f"duplicate window sizes in {list(windows)!r}")
    return tuple(sorted(sizes))


@dataclass(frozen=True, slots=True)
class LateEvent(Generic[E]):
    """An event that arrived after its window closed; the aggregator turns it into a row."""

    key: str
    window_ms: int
    window_start_ms: int
    event_time_ms: int
    watermark_ms: int
    event: E

    @property
    def lateness_ms(self) -> int:
        """How far the watermark had passed the window's end when the event came."""
        return self.watermark_ms - (self.window_start_ms + self.window_ms)


class PanedWindows(abc.ABC, Generic[S, E]):
    """Watermark, panes, window states, closing and late detection; subclasses define the state.

    Subclasses implement ``new_state(event)``, ``fold(state, event)`` and ``merge(into, other)``
    (``merge`` must be associative and order-independent *given* the state keeps its own
    tie-break keys, e.g. the earliest trade's time and id). Hot paths may fold into
    ``self.panes[pane_start][key]`` directly, as long as they call ``is_late_for_pane`` first
    and ``observe`` after, exactly like ``add``.
    """

    def __init__(self, windows: Sequence[str | int], grace_ms: int) -> None:
        if grace_ms < 0:
            raise WindowSpecError(f"grace_ms must be >= 0, got {grace_ms}")
        self.sizes_ms = parse_windows(windows)
        self.labels = {size: window_label(size) for size in self.sizes_ms}
        self.grace_ms = int(grace_ms)
        self.pane_ms = math.gcd(*self.sizes_ms)
        self.max_event_ms = NO_WATERMARK
        self.watermark_ms = NO_WATERMARK
        #: pane start -> key -> state (events fold here)
        self.panes: dict[int, dict[str, S]] = {}
        #: window size -> window start -> key -> state (closed panes merge here)
        self.windows: dict[int, dict[int, dict[str, S]]] = {size: {} for size in self.sizes_ms}
        self.late_count = 0
        self.late_by_window: dict[int, int] = dict.fromkeys(self.sizes_ms, 0)
        self.flushed = False

    # -- what a subclass defines -------------------------------------------------------------
    @abc.abstractmethod
    def new_state(self, event: E) -> S:
        """A state holding exactly one event."""

    @abc.abstractmethod
    def fold(self, state: S, event: E) -> None:
        """Add one event to ``state`` in place."""

    @abc.abstractmethod
    def merge(self, into: S, other: S) -> None:
        """Add everything in ``other`` to ``into`` in place (``other`` is not modified)."""

    @abc.abstractmethod
    def copy_state(self, state: S) -> S:
        """An independent copy (a pane's state is merged into several windows)."""

    # -- event path ----------------------------------------------------------------------------
    def observe(self, t_ms: int) -> None:
        """Advance the watermark after an event with event time ``t_ms`` was handled."""
        if t_ms > self.max_event_ms:
            self.max_event_ms = t_ms
            self.watermark_ms = t_ms - self.grace_ms

    def add(self, key: str, t_ms: int, event: E, late: list[LateEvent[E]]) -> None:
        """Fold one event (the generic path; candles inline this for speed)."""
        pane = self.pane_ms
        start = t_ms - t_ms % pane
        if start + pane <= self.watermark_ms:
            self.fold_late(key, t_ms, event, late)
        else:
            bucket = self.panes.get(start)
            if bucket is None:
                bucket = self.panes[start] = {}
            state = bucket.get(key)
            if state is None:
                bucket[key] = self.new_state(event)
            else:
                self.fold(state, event)
        self.observe(t_ms)

    def fold_late(self, key: str, t_ms: int, event: E, late: list[LateEvent[E]]) -> None:
        """An event whose pane has closed: fold into each window still open, report the rest."""
        wm = self.watermark_ms
        for size in self.sizes_ms:
            start = t_ms - t_ms % size
            if start + size <= wm:
                late.append(LateEvent(key, size, start, t_ms, wm, event))
                self.late_count += 1
                self.late_by_window[size] += 1
                continue
            by_key = self.windows[size].setdefault(start, {})
            state = by_key.get(key)
            if state is None:
                by_key[key] = self.new_state(event)
            else:
                self.fold(state, event)

    # -- closing -------------------------------------------------------------------------------
    def close_ready(self) -> list[tuple[str, int, int, S]]:
        """Close every pane and window whose end is at or before the watermark."""
        return self._close_until(self.watermark_ms)

    def flush(self) -> list[tuple[str, int, int, S]]:
        """Close everything still open, at shutdown or the end of a replay; terminal.

        The last windows are usually incomplete (the stream would have continued), which is
        why this is a separate call and not part of ``close_ready``. Afterwards the aggregator
        refuses events (``check_open`` raises): accepting more would emit those windows twice.
        A restarted processor resumes from the sink's stored positions instead.
        """
        self.flushed = True
        return self._close_until(None)

    def check_open(self) -> None:
        if self.flushed:
            raise RuntimeError("aggregator was flushed (shut down); create a new one")

    def _close_until(self, wm: int | None) -> list[tuple[str, int, int, S]]:
        pane = self.pane_ms
        ready = sorted(s for s in self.panes if wm is None or s + pane <= wm)
        for pane_start in ready:
            for key, state in self.panes.pop(pane_start).items():
                for size in self.sizes_ms:
                    self._merge_into_window(size, pane_start - pane_start % size, key, state)
        closed: list[tuple[str, int, int, S]] = []
        for size in self.sizes_ms:
            by_start = self.windows[size]
            for start in sorted(s for s in by_start if wm is None or s + size <= wm):
                by_key = by_start.pop(start)
                for key in sorted(by_key):
                    closed.append((key, size, start, by_key[key]))
        return closed

    def _merge_into_window(self, size: int, start: int, key: str, state: S) -> None:
        by_key = self.windows[size].get(start)
        if by_key is None:
            by_key = self.windows[size][start] = {}
        existing = by_key.get(key)
        if existing is None:
            by_key[key] = self.copy_state(state)
        else:
            self.merge(existing, state)

    def open_snapshot(self, keys: Iterable[str] | None = None) -> list[tuple[str, int, int, S]]:
        """Copies of the still-open windows (merged with their open panes), for live views.

        Nothing is changed: the same windows are emitted again, complete, when they close.
        """
        wanted = None if keys is None else set(keys)
        partial: dict[tuple[int, int, str], S] = {}
        for size in self.sizes_ms:
            for start, by_key in self.windows[size].items():
                for key, state in by_key.items():
                    if wanted is None or key in wanted:
                        partial[(size, start, key)] = self.copy_state(state)
        for pane_start, by_key in self.panes.items():
            for key, state in by_key.items():
                if wanted is not None and key not in wanted:
                    continue
                for size in self.sizes_ms:
                    slot = (size, pane_start - pane_start % size, key)
                    existing = partial.get(slot)
                    if existing is None:
                        partial[slot] = self.copy_state(state)
                    else:
                        self.merge(existing, state)
        return [
            (key, size, start, state)
            for (size, start, key), state in sorted(partial.items(), key=_slot_order)
        ]

    def open_window_count(self) -> int:
        """Open (key, window) states plus open panes: the memory a processor holds."""
        return sum(len(k) for w in self.windows.values() for k in w.values()) + sum(
            len(k) for k in self.panes.values()
        )


def _slot_order(item: tuple[tuple[int, int, str], Any]) -> tuple[int, int, str]:
    return item[0]
