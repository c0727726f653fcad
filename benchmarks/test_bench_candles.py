"""Candle throughput (trades/s) through the aggregation logic alone, and with JSON decoding.

Run: ``.venv/bin/pytest benchmarks/test_bench_candles.py``. The trades/s figure is in each
benchmark's ``extra_info`` (``--benchmark-json``) and printed by ``-s``. Target: >= 200,000
trades/s for the candle logic alone. Bursty input on purpose: real trades come in bursts of up
to 735 per millisecond (figures.md), and 3 symbols interleave.
"""

from __future__ import annotations

import random

import orjson
import pytest

from core.dead_letters import DeadLetters
from processors.candles import DEFAULT_WINDOWS, CandleAggregator
from processors.trade_parsing import Trade, decode_trade, decode_trade_batch, decode_trades

N_TRADES = 100_000
BATCH = 1_000
T0 = 1_700_000_000_000


def bursty_trades(n: int, seed: int = 7) -> list[Trade]:
    rng = random.Random(seed)
    out, t = [], T0
    for i in range(n):
        t += rng.choice((0, 0, 0, 0, 1, 2, 5, 30, 120))
        # A few out-of-order trades within the grace period.
        t_event = t - rng.randint(1, 500) if rng.random() < 0.02 else t
        price = 60_000 + rng.uniform(-50, 50)
        out.append(Trade(rng.choice(("BTCUSDT", "ETHUSDT", "SOLUSDT")), t_event, i, price,
                         # a quantity that prints as 0.00000 would be dead-lettered
                         max(rng.random(), 1e-5), rng.random() < 0.54, i, i))  # fmt: skip
    return out


def as_payloads(trades: list[Trade]) -> list[bytes]:
    def payload(tr: Trade) -> bytes:
        return orjson.dumps(
            {"e": "trade", "E": tr.time_ms + 1, "s": tr.symbol, "t": tr.trade_id,
             "p": f"{tr.price:.2f}", "q": f"{tr.qty:.5f}", "T": tr.time_ms,
             "m": tr.buyer_is_maker, "M": True}
        )  # fmt: skip

    return [payload(tr) for tr in trades]


def _report(benchmark, n: int) -> None:
    per_s = n / benchmark.stats.stats.median
    benchmark.extra_info["trades_per_s"] = round(per_s)
    print(f"\n{benchmark.name}: {per_s:,.0f} trades/s (median of {benchmark.stats.stats.rounds})")


@pytest.mark.parametrize("windows", [DEFAULT_WINDOWS, ("1s", "5s", "1m", "15m", "1h", "1d")])
def test_candle_logic_throughput(benchmark, windows) -> None:
    trades = bursty_trades(N_TRADES)
    batches = [trades[i : i + BATCH] for i in range(0, N_TRADES, BATCH)]

    def run(agg: CandleAggregator) -> int:
        closed = 0
        for batch in batches:
            closed += len(agg.add_batch(batch).candles)
        return closed + len(agg.flush().candles)

    closed = benchmark.pedantic(
        run, setup=lambda: ((CandleAggregator(windows, grace_ms=1_000),), {}), rounds=7
    )
    assert closed > 0
    _report(benchmark, N_TRADES)


@pytest.mark.parametrize("batch", [BATCH, 5_000])
def test_candle_columns_throughput(benchmark, batch: int) -> None:
    """The candle stage's path for batches of well-formed trades: decode into columns
    (``decode_trade_batch``) and fold them with numpy (``add_columns``)."""
    payloads = as_payloads(bursty_trades(N_TRADES))
    batches = [payloads[i : i + batch] for i in range(0, N_TRADES, batch)]
    for payload in payloads[:10]:  # the symbols' first trades take the checked path
        decode_trade(payload)

    def run(agg: CandleAggregator) -> int:
        taken = 0
        for values in batches:
            cols = decode_trade_batch(values, max_time_ms=T0 + 10**9)
            assert cols is not None
            agg.add_columns(cols)
            taken += len(values)
        agg.flush()
        return taken

    assert benchmark.pedantic(run, setup=lambda: ((CandleAggregator(),), {}), rounds=5) == N_TRADES
    _report(benchmark, N_TRADES)


def test_decode_and_candles_throughput(benchmark) -> None:
    payloads = as_payloads(bursty_trades(N_TRADES))
    batches = [payloads[i : i + BATCH] for i in range(0, N_TRADES, BATCH)]

    def run(agg: CandleAggregator) -> int:
        dead = DeadLetters("bench")
        for batch in batches:
            agg.add_batch(decode_trades(batch, dead))
        agg.flush()
        return dead.total

    dead = benchmark.pedantic(run, setup=lambda: ((CandleAggregator(),), {}), rounds=5)
    assert dead == 0
    _report(benchmark, N_TRADES)
