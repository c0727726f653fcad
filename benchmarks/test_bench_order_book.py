"""Order-book stage throughput (depth frames/s): decode + Binance's procedure + depth_1s rows.

Run: ``.venv/bin/pytest benchmarks/test_bench_order_book.py -s``. The frames are what the
producer publishes for synthetic depth@100ms of two symbols (heavy-tailed sizes, snapshots
among them); the frames/s and MB/s figures are in ``extra_info`` and printed by ``-s``.
"""

from __future__ import annotations

import itertools

import orjson

from core.dead_letters import DeadLetters
from producers.binance.schema import MarketEvent, parse_frame
from producers.binance.synthetic import SyntheticMarket
from stages.depth import DepthStage
from transports import Envelope

N_FRAMES = 20_000
BATCH = 1_000


def published_depth(n: int) -> list[Envelope]:
    market = SyntheticMarket(["btcusdt", "ethusdt"], ["depth@100ms"], seed=3)
    out = []
    for frame in itertools.islice(market.frames(), n):
        ev = parse_frame(frame.raw, frame.recv_ns // 1_000_000)
        assert isinstance(ev, MarketEvent)
        time_ms = ev.event_time_ms if ev.event_time_ms is not None else frame.recv_ns // 10**6
        out.append(Envelope(topic=ev.topic, value=orjson.dumps(ev.data), key=ev.symbol.encode(),
                            event_time_ns=time_ms * 1_000_000))  # fmt: skip
    return out


def test_order_book_stage_throughput(benchmark) -> None:
    envs = published_depth(N_FRAMES)
    batches = [envs[i : i + BATCH] for i in range(0, N_FRAMES, BATCH)]

    def run(stage: DepthStage) -> int:
        rows = 0
        for batch in batches:
            rows += len(stage.process(batch).get("depth_1s", []))
        return rows + len(stage.finish()["depth_1s"])

    rows = benchmark.pedantic(run, setup=lambda: ((DepthStage(DeadLetters("bench")),), {}),
                              rounds=3)  # fmt: skip
    assert rows > 0
    per_s = N_FRAMES / benchmark.stats.stats.median
    mb_s = sum(len(e.value) for e in envs) / benchmark.stats.stats.median / 1e6
    benchmark.extra_info.update(frames_per_s=round(per_s), mb_per_s=round(mb_s, 1))
    print(f"\n{benchmark.name}: {per_s:,.0f} depth frames/s, {mb_s:.1f} MB/s")
