"""HdrHistogram recorders per 1 s interval, exchanged between processes as encoded text.

Values are microseconds in [1 us, 60 s]; anything outside is *clamped* before recording because
hdrh silently ignores out-of-range values, which would make the worst latencies disappear.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def clamp_us(value_ns: int) -> int:
    us = value_ns // 1000
    if us < LOWEST_US:
        return LOWEST_US
    if us > HIGHEST_US:
        return HIGHEST_US
    return us


def encode(hist: HdrHistogram) -> str:
    """Compressed, base64 text (JSON-safe); the standard HdrHistogram interchange format."""
    return hist.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    total = new_histogram()
    for text in encoded:
        if text:
            total.add(decode(text))
    return total


def summarize(hist: HdrHistogram) -> dict[str, float]:
    """Percentiles and max in milliseconds; NaN when nothing was recorded."""
    count = hist.get_total_count()
    out: dict[str, float] = {"count": float(count)}
    for name, pct in PERCENTILES:
        out[name] = hist.get_value_at_percentile(pct) / 1000.0 if count else float("nan")
    out["max"] = hist.get_max_value() / 1000.0 if count else float("nan")
    out["mean"] = hist.get_mean_value() / 1000.0 if count else float("nan")
    return out


class IntervalRecorder:
    """One histogram plus counters per interval of the run, keyed by interval index.

    Interval ``i`` covers ``[start + i s, start + (i+1) s)``; the runner drops warm-up intervals
    when it builds the cumulative view, which is the same as resetting recorders after warm-up.
    """

    def __init__(self, start_ns: int, interval_ns: int = 1_000_000_000) -> None:
        self.start_ns = start_ns
        self.interval_ns = interval_ns
        self.index = 0
        self.hist = new_histogram()
        self.count = 0
        self.bytes = 0

    def index_at(self, now_ns: int) -> int:
        return max(0, (now_ns - self.start_ns) // self.interval_ns)

    def roll(self, now_ns: int) -> list[dict[str, object]]:
        """Close every interval that ended before ``now_ns``; returns them as JSON rows."""
        target = self.index_at(now_ns)
        done = []
        while self.index < target:
            done.append(self.snapshot())
            self.index += 1
            self.hist = new_histogram()
            self.count = 0
            self.bytes = 0
        return done

    def snapshot(self) -> dict[str, object]:
        return {
            "i": self.index, "count": self.count, "bytes": self.bytes, "hist": encode(self.hist)
        }
