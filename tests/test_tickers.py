"""Ticker and bookTicker window aggregates against pandas, on the shared windowing core."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pandas as pd
import pytest

from core.dead_letters import DeadLetters
from processors.candles import rows_to_array
from processors.tickers import (
    BOOK_TICKER_SPEC,
    LATE_TICKER_DTYPE,
    TICKER_SPEC,
    TickerAggregator,
)
from processors.trade_parsing import decode_ticker, decode_tickers

T0 = 1_700_000_000_000


def ticker_payload(symbol: str, t: int, last_id: int, price: float, rng: random.Random) -> bytes:
    bid = price - rng.random()
    ask = price + rng.random()
    return orjson.dumps(
        {"e": "24hrTicker", "E": t, "s": symbol, "p": f"{rng.uniform(-500, 500):.2f}",
         "P": f"{rng.uniform(-3, 3):.3f}", "w": f"{price:.2f}", "x": f"{price:.2f}",
         "c": f"{price:.2f}", "Q": "0.01", "b": f"{bid:.2f}", "B": f"{rng.random():.4f}",
         "a": f"{ask:.2f}", "A": f"{rng.random():.4f}", "o": "60000.00", "h": "65000.00",
         "l": "59000.00", "v": f"{1000 + t % 977:.3f}", "q": f"{6e7 + t % 991:.2f}",
         "O": t - 86_400_000, "C": t, "F": 1, "L": last_id, "n": last_id}
    )  # fmt: skip


def test_ticker_aggregates_match_pandas() -> None:
    rng = random.Random(1)
    payloads, t = [], T0
    for i in range(2_000):
        t += rng.choice((100, 250, 1_000, 1_000))
        sym = rng.choice(("BTCUSDT", "ETHUSDT"))
        payloads.append(ticker_payload(sym, t, i, 60_000 + rng.uniform(-100, 100), rng))
    updates = decode_tickers(((p, 0) for p in payloads), DeadLetters("t"))
    chunk = updates[500:520]  # out of order, within the grace (20 updates span <= 20 s)
    rng.shuffle(chunk)
    updates[500:520] = chunk
    agg = TickerAggregator(TICKER_SPEC, windows=("5s", "1m"), grace_ms=30_000)
    rows, late = [], []
    for i in range(0, len(updates), 64):
        out = agg.add_batch(updates[i : i + 64])
        rows += out.rows
        late += out.late
    rows += agg.flush().rows
    assert late == []
    assert len(rows_to_array(rows, agg.dtype)) == len(rows)

    df = pd.DataFrame(
        [{"symbol": u.symbol, "time_ms": u.time_ms, "id": u.update_id, **u.values} for u in updates]
    ).sort_values(["time_ms", "id"])
    # reset_index: pandas 3.1 groupby().resample(on=...) bins rows wrongly when the index
    # labels are out of order (as after sorting shuffled input); measured here, not assumed.
    df = df.reset_index(drop=True)
    df["dt"] = pd.to_datetime(df.time_ms, unit="ms")
    for size in agg.sizes_ms:
        ours = pd.DataFrame([r for r in rows if r["window_ms"] == size])
        ours = ours.sort_values(["symbol", "start_ms"]).reset_index(drop=True)
        res = df.groupby("symbol").resample(f"{size}ms", on="dt", origin="epoch")
        ref = pd.DataFrame(
            {
                "updates": res["c"].count(),
                "last_price_first": res["c"].first(),
                "last_price_last": res["c"].last(),
                "last_price_mean": res["c"].mean(),
                "last_price_max": res["c"].max(),
                "spread_mean": res["spread"].mean(),
                "spread_min": res["spread"].min(),
                "volume_24h_last": res["v"].last(),
                "price_change_pct_first": res["P"].first(),
                "bid_qty_mean": res["B"].mean(),
            }
        )
        ref = ref[ref.updates > 0].reset_index()
        assert list(ours.symbol) == list(ref.symbol)
        assert list(ours.start_ms) == list(ref.dt.astype("datetime64[ms]").astype("int64"))
        assert list(ours.updates) == list(ref.updates)
        for col in ref.columns.drop(["symbol", "dt", "updates"]):
            np.testing.assert_allclose(ours[col], ref[col], rtol=1e-12, err_msg=col)


def test_book_ticker_uses_fallback_time_and_reports_late() -> None:
    book = orjson.dumps({"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
                         "a": "25.36520000", "A": "40.66000000"})  # fmt: skip
    update = decode_ticker(book, fallback_time_ms=T0 + 10)
    assert (update.event, update.time_ms, update.update_id) == ("bookTicker", T0 + 10, 400900217)
    assert update.values["spread"] == pytest.approx(0.0133)
    agg = TickerAggregator(BOOK_TICKER_SPEC, windows=("1s",), grace_ms=0)
    first = agg.add_batch([update, decode_ticker(book, fallback_time_ms=T0 + 2_000)])
    assert [(r["start_ms"], r["updates"]) for r in first.rows] == [(T0, 1)]
    assert first.rows[0]["mid_first"] == pytest.approx((25.3519 + 25.3652) / 2)
    again = agg.add_batch([decode_ticker(book, fallback_time_ms=T0 + 20)])
    assert [r["lateness_ms"] for r in again.late] == [1_000]
    assert len(rows_to_array(again.late, LATE_TICKER_DTYPE)) == 1


def test_bad_ticker_payloads_are_dead_lettered() -> None:
    dead = DeadLetters("tickers-test")
    good = orjson.loads(ticker_payload("BTCUSDT", T0, 1, 100.0, random.Random(2)))
    bad = [
        orjson.dumps({**good, "c": "NaN"}),
        orjson.dumps({**good, "e": "kline"}),
        orjson.dumps({k: v for k, v in good.items() if k != "b"}),
    ]
    assert decode_tickers(((b, 0) for b in bad), dead) == []
    assert [d.kind for d in dead.kept] == ["bad_value", "unknown_event", "missing_field"]
