"""Message bodies for load: fixed-size bytes, synthetic Binance trade or depth frames.

A pool is built before the clock starts, so the send loop measures the transport and not
payload generation.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

POOL_SIZE = 1024


def fixed_payloads(size: int) -> list[bytes]:
    """Incompressible-looking bytes of exactly ``size`` (no accidental compression wins)."""
    rng = random.Random(size)
    return [rng.randbytes(size) for _ in range(min(POOL_SIZE, 64))]


def binance_trade_payloads(seed: int = 0, count: int = POOL_SIZE) -> list[bytes]:
    """Combined-stream ``@trade`` frames shaped like the real ones (~170 B, same field set).

    Uses ``producers.binance.synthetic`` when that module is present, so the bench sends what
    the pipeline's producer sends; otherwise builds frames with the same shape here.
    """
    try:
        from producers.binance import synthetic  # owned by the producer; optional here

        frames = _from_synthetic(synthetic, seed, count)
        if frames:
            return frames
    except (ImportError, AttributeError, TypeError, ValueError):
        pass  # module absent or changed shape: the frames below have the same form
    rng = random.Random(seed)
    price = 64_000.0
    event_ms = 1_723_000_000_000
    trade_id = 3_700_000_000
    frames = []
    for _ in range(count):
        price *= 1 + rng.gauss(0, 0.0001)
        event_ms += rng.randrange(0, 50)
        trade_id += 1
        qty = min(rng.lognormvariate(-7.3, 1.8), 6.9)
        data = {
            "e": "trade",
            "E": event_ms,
            "s": "BTCUSDT",
            "t": trade_id,
            "p": f"{price:.2f}000000",
            "q": f"{qty:.8f}",
            "T": event_ms - rng.randrange(0, 3),
            "m": rng.random() < 0.54,
            "M": True,
        }
        frame = {"stream": "btcusdt@trade", "data": data}
        frames.append(json.dumps(frame, separators=(",", ":")).encode())
    return frames


def _from_synthetic(module: Any, seed: int, count: int) -> list[bytes]:
    market = module.SyntheticMarket(["btcusdt"], ["trade"], seed=seed + 1)
    return [frame.raw.encode() for frame in itertools.islice(market.frames(), count)]


def binance_depth_payloads(seed: int = 0, count: int = 2 * POOL_SIZE) -> list[bytes]:
    """Combined-stream ``@depth@100ms`` diff frames of one symbol, in the order generated, so
    their sizes follow the synthetic book's heavy tail (see ``producers.binance.synthetic_depth``;
    the README gives the pool's median and maximum with their command)."""
    from producers.binance.synthetic import SyntheticMarket

    market = SyntheticMarket(["btcusdt"], ["depth@100ms"], seed=seed + 1)
    diffs = (f.raw.encode() for f in market.frames() if '@depth@100ms"' in f.raw[:40])
    return list(itertools.islice(diffs, count))


def make_payloads(kind: str, size: int, seed: int = 0) -> list[bytes]:
    if kind == "binance":
        return binance_trade_payloads(seed)
    if kind == "depth":
        return binance_depth_payloads(seed)
    return fixed_payloads(size)
