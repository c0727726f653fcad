"""Open-loop send schedules: the *intended* time of every message, fixed before the run.

Latency is measured from these times (as OMB's rate limiter does), so a sender that stalls or
falls behind shows up as latency instead of silently sending less: no coordinated omission.
Offsets are integer nanoseconds from the common start instant.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

NS = 1_000_000_000


def uniform(rate: float) -> Iterator[int]:
    """Evenly spaced messages at ``rate`` msg/s, computed from the index (no drift)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    i = 0
    while True:
        yield int(i * NS / rate)
        i += 1


def bursts(rate: float, burst_size: int) -> Iterator[int]:
    """``burst_size`` messages share one intended instant; bursts are spaced to average ``rate``.

    One market order sweeping the book produces hundreds of trades in the same millisecond;
    a smooth rate hides what that does to queues.
    """
    if rate <= 0 or burst_size < 1:
        raise ValueError("rate must be positive and burst_size >= 1")
    period = burst_size * NS / rate
    i = 0
    while True:
        yield int((i // burst_size) * period)
        i += 1


def binance_like(rate: float, seed: int = 0, mean_burst: float = 4.0) -> Iterator[int]:
    """Bursty trade arrivals with mean ``rate``: per-second counts vary, trades cluster in ms.

    Each second holds a Poisson number of orders whose size is geometric with mean
    ``mean_burst`` (real BTCUSDT: mean 31/s, p99 second 209, up to 735 trades in one ms), and
    each order's trades share one random millisecond. Deterministic for a given seed.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(seed)
    orders_per_s = max(rate / mean_burst, 1e-9)
    p = 1.0 / mean_burst
    second = 0
    while True:
        n_orders = _poisson(rng, orders_per_s)
        instants: list[int] = []
        for _ in range(n_orders):
            size = 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - p)) if p < 1 else 1
            at = second * NS + rng.randrange(1000) * 1_000_000
            instants.extend([at] * size)
        instants.sort()
        yield from instants
        second += 1


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 50:  # normal approximation: exact enough for counts per second, and O(1)
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def make_schedule(kind: str, rate: float, burst_size: int = 1, seed: int = 0) -> Iterator[int]:
    """The schedule a workload names, for one producer sending ``rate`` msg/s."""
    if kind == "uniform":
        return uniform(rate)
    if kind == "bursts":
        return bursts(rate, burst_size)
    if kind == "binance":
        return binance_like(rate, seed=seed)
    raise ValueError(f"unknown schedule {kind!r}")
