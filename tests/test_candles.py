"""Candles checked against pandas resample on the same trades, plus the watermark's edge cases.

The late set is recomputed independently (a direct simulation of "window end <= max event time
seen so far - grace") and those trades are excluded from the pandas side per window size.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dead_letters import DeadLetters
from processors.candles import (
    CANDLE_DTYPE,
    LATE_TRADE_DTYPE,
    CandleAggregator,
    CandleState,
    rows_to_array,
)
from processors.trade_parsing import Trade, TradeColumns, decode_trade, decode_trades
from processors.window_state import snapshot_windows
from processors.windowing import WindowSpecError, parse_window, window_label, window_start

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
DAY = 86_400_000


def make_trades(
    n: int, seed: int, symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=T0
) -> list[Trade]:
    rng = random.Random(seed)
    out, t = [], start
    for i in range(n):
        t += rng.choice((0, 0, 1, 3, 17, 250, 900))
        sym = rng.choice(symbols)
        price = round(100 + rng.random() * 10, 2)
        qty = round(rng.random() * 2, 5)
        out.append(Trade(sym, t, 1000 + i, price, qty, rng.random() < 0.54, 1000 + i, 1000 + i))
    return out


def run(agg: CandleAggregator, trades: Sequence[Trade], batch: int) -> tuple[list, list]:
    candles, late = [], []
    for i in range(0, len(trades), batch):
        out = agg.add_batch(trades[i : i + batch])
        candles += out.candles
        late += out.late
    candles += agg.flush().candles
    return candles, late


def expected_late(trades: Sequence[Trade], size: int, grace: int) -> set[int]:
    """Trade ids late for ``size``: their window ended at or before the watermark on arrival."""
    newest, late = None, set()
    for tr in trades:
        if newest is not None and window_start(tr.time_ms, size) + size <= newest - grace:
            late.add(tr.trade_id)
        newest = tr.time_ms if newest is None else max(newest, tr.time_ms)
    return late


def pandas_candles(trades: Sequence[Trade], size: int, exclude: set[int]) -> pd.DataFrame:
    df = pd.DataFrame(trades, columns=Trade._fields)
    df = df[~df.trade_id.isin(exclude)].sort_values(["time_ms", "trade_id"])
    df["dt"] = pd.to_datetime(df.time_ms, unit="ms")
    df["pq"] = df.price * df.qty
    df["taker"] = np.where(df.buyer_is_maker, 0.0, df.qty)
    frames = []
    for sym, part in df.groupby("symbol"):
        res = part.resample(f"{size}ms", on="dt", origin="epoch")
        ohlc = res["price"].ohlc()
        sums = res[["qty", "pq", "taker"]].sum()
        counts = res["price"].count().rename("count")
        ids = res["trade_id"].agg(["min", "max"])
        frame = pd.concat([ohlc, sums, counts, ids], axis=1)
        frame = frame[frame["count"] > 0]
        frame["symbol"] = sym
        frame["start_ms"] = frame.index.astype("datetime64[ms]").astype("int64")
        frames.append(frame.reset_index(drop=True))
    out = pd.concat(frames, ignore_index=True)
    out["vwap"] = out.pq / out.qty
    return out.sort_values(["start_ms", "symbol"]).reset_index(drop=True)


def assert_matches_pandas(
    trades: Sequence[Trade], candles: list[dict[str, Any]], late: list[dict[str, Any]], agg
) -> None:
    for size in agg.sizes_ms:
        exclude = expected_late(trades, size, agg.grace_ms)
        got_late = {row["trade_id"] for row in late if row["window_ms"] == size}
        assert got_late == exclude, f"late set differs for window {size}"
        ours = pd.DataFrame([c for c in candles if c["window_ms"] == size])
        ref = pandas_candles(trades, size, exclude)
        assert len(ours) == len(ref), f"window {size}: {len(ours)} candles vs pandas {len(ref)}"
        assert list(ours.symbol) == list(ref.symbol)
        assert list(ours.start_ms) == list(ref.start_ms)
        for col, ref_col in [
            ("open", "open"),
            ("high", "high"),
            ("low", "low"),
            ("close", "close"),
            ("volume", "qty"),
            ("quote_volume", "pq"),
            ("vwap", "vwap"),
            ("taker_buy_volume", "taker"),
        ]:
            np.testing.assert_allclose(ours[col], ref[ref_col], rtol=1e-12, atol=1e-9, err_msg=col)
        assert list(ours.trade_count) == list(ref["count"])
        assert list(ours.first_trade_id) == list(ref["min"])
        assert list(ours.last_trade_id) == list(ref["max"])
        assert (ours.end_ms == ours.start_ms + size).all()


FLOAT_SUMS = ("volume", "quote_volume", "vwap", "taker_buy_volume", "taker_buy_quote_volume")


def candle_key(c: dict[str, Any]) -> tuple[int, int, str]:
    return (c["window_ms"], c["start_ms"], c["symbol"])


def assert_same_candles(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Equal, except sums may differ in the last bits (float addition order differs).

    Emission order may differ: when a window closes depends on how the watermark advanced.
    """
    assert len(a) == len(b)
    a = sorted(a, key=candle_key)
    b = sorted(b, key=candle_key)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if k in FLOAT_SUMS:
                same = math.isclose(x[k], y[k], rel_tol=1e-12, abs_tol=1e-12)
                assert same or (math.isnan(x[k]) and math.isnan(y[k])), (k, x, y)
            else:
                assert x[k] == y[k], (k, x, y)


def test_parse_window() -> None:
    cases = {"1s": 1_000, "5s": 5_000, "1m": 60_000, "15m": 900_000, "1h": 3_600_000, "1d": DAY}
    for spec, ms in cases.items():
        assert parse_window(spec) == ms
        assert window_label(ms) == spec
    assert parse_window("250ms") == 250
    for bad in ("", "1", "1w", "1M", "0s", "-1s", "1.5s", "s", "1 s x"):
        with pytest.raises(WindowSpecError, match="window"):
            parse_window(bad)
    with pytest.raises(WindowSpecError, match="duplicate"):
        CandleAggregator(windows=("1m", "60s"))


@pytest.mark.parametrize("batch", [1, 7, 1000, 100_000])
def test_in_order_multi_symbol_matches_pandas(batch: int) -> None:
    trades = make_trades(5_000, seed=batch)
    agg = CandleAggregator(windows=("1s", "5s", "1m", "15m", "1h"), grace_ms=500)
    candles, late = run(agg, trades, batch)
    assert late == []
    assert_matches_pandas(trades, candles, late, agg)


def test_out_of_order_within_grace_is_folded_in() -> None:
    trades = make_trades(5_000, seed=3)
    rng = random.Random(4)
    # Displace each trade by up to 400 ms of event time: all within a 1 s grace.
    shuffled = sorted(trades, key=lambda tr: tr.time_ms + rng.uniform(-400, 400))
    assert shuffled != trades
    agg = CandleAggregator(windows=("1s", "1m"), grace_ms=1_000)
    candles, late = run(agg, shuffled, 64)
    assert late == []
    assert_matches_pandas(shuffled, candles, late, agg)
    # Same candles as the in-order run: open/close follow event time, not arrival.
    in_order, _ = run(CandleAggregator(windows=("1s", "1m"), grace_ms=1_000), trades, 64)
    assert_same_candles(candles, in_order)


def test_late_beyond_grace_counted_returned_and_excluded() -> None:
    trades = make_trades(4_000, seed=5)
    rng = random.Random(6)
    stream = list(trades)
    for _ in range(60):  # re-deliver old trades 2-90 s late, under fresh ids
        i = rng.randrange(len(stream))
        old = rng.choice(trades[: max(1, i - 50)])
        stream.insert(i, old._replace(trade_id=10**9 + i, first_trade_id=10**9 + i,
                                      last_trade_id=10**9 + i))
    agg = CandleAggregator(windows=("1s", "1m", "1h"), grace_ms=2_000)
    candles, late = run(agg, stream, 100)
    assert late, "the stream must contain late trades"
    assert agg.late_count == len(late)
    assert agg.late_by_window[1_000] >= agg.late_by_window[60_000] >= agg.late_by_window[3_600_000]
    assert_matches_pandas(stream, candles, late, agg)
    arr = rows_to_array(late, LATE_TRADE_DTYPE)
    assert (arr["lateness_ms"] >= 0).all()
    assert (arr["window_start_ms"] + arr["window_ms"] <= arr["watermark_ms"]).all()


def test_window_boundaries_and_close_exactly_at_watermark() -> None:
    agg = CandleAggregator(windows=("1s",), grace_ms=100)
    b = T0 + 5_000  # a window boundary
    out = agg.add_batch(
        [Trade("X", b - 1, 1, 10.0, 1.0, False, 1, 1), Trade("X", b, 2, 20.0, 1.0, True, 2, 2)]
    )
    assert out.candles == []
    # Watermark b - 1: the window [b - 1000, b) is still open (it closes when watermark >= b).
    out = agg.add_batch([Trade("X", b + 99, 3, 30.0, 1.0, True, 3, 3)])
    assert out.candles == []
    out = agg.add_batch([Trade("X", b + 100, 4, 40.0, 1.0, True, 4, 4)])  # watermark == b
    assert [(c["start_ms"], c["end_ms"], c["open"], c["trade_count"]) for c in out.candles] == [
        (b - 1_000, b, 10.0, 1)
    ]
    out = agg.add_batch([Trade("X", b - 1, 5, 50.0, 1.0, True, 5, 5)])  # its window just closed
    assert [(r["trade_id"], r["window_start_ms"], r["lateness_ms"]) for r in out.late] == [
        (5, b - 1_000, 0)
    ]
    rest = agg.flush().candles
    assert [(c["start_ms"], c["open"], c["close"], c["trade_count"]) for c in rest] == [
        (b, 20.0, 40.0, 3)
    ]
    with pytest.raises(RuntimeError, match="flushed"):
        agg.add_batch([Trade("X", b + 5_000, 6, 1.0, 1.0, True, 6, 6)])


def test_same_millisecond_ties_break_by_trade_id() -> None:
    t = T0 + 123
    burst = [Trade("X", t, tid, float(tid), 1.0, False, tid, tid) for tid in (7, 3, 9, 5)]
    agg = CandleAggregator(windows=("1s",), grace_ms=0)
    candle = agg.add_batch(burst).candles + agg.flush().candles
    assert (candle[0]["open"], candle[0]["close"]) == (3.0, 9.0)
    assert (candle[0]["first_trade_id"], candle[0]["last_trade_id"]) == (3, 9)


def test_day_window_splits_at_utc_midnight() -> None:
    midnight = (T0 // DAY + 1) * DAY
    trades = make_trades(3_000, seed=8, start=midnight - 400_000)
    assert trades[0].time_ms < midnight < trades[-1].time_ms
    agg = CandleAggregator(windows=("1h", "1d"), grace_ms=5_000)
    candles, late = run(agg, trades, 500)
    days = [c for c in candles if c["window"] == "1d"]
    assert {c["start_ms"] for c in days} == {midnight - DAY, midnight}
    assert sum(c["trade_count"] for c in days) == len(trades)
    assert_matches_pandas(trades, candles, late, agg)


def test_emit_open_snapshots_do_not_change_the_result() -> None:
    trades = make_trades(2_000, seed=9)
    live = CandleAggregator(windows=("1s", "1m"), grace_ms=500, emit_open=True)
    candles, opens = [], []
    for i in range(0, len(trades), 100):
        out = live.add_batch(trades[i : i + 100])
        candles += out.candles
        opens += out.open
    final = candles + live.flush().candles
    plain, _ = run(CandleAggregator(windows=("1s", "1m"), grace_ms=500), trades, 100)
    assert final == plain
    assert opens and not any(row["closed"] for row in opens)
    # The last snapshot of each window never exceeds its final count.
    final_count = {(c["symbol"], c["window_ms"], c["start_ms"]): c["trade_count"] for c in final}
    for row in opens:
        assert row["trade_count"] <= final_count[(row["symbol"], row["window_ms"], row["start_ms"])]


def test_rows_fit_the_documented_dtype() -> None:
    candles, _ = run(CandleAggregator(), make_trades(500, seed=10), 50)
    arr = rows_to_array(candles, CANDLE_DTYPE)
    assert arr.dtype == CANDLE_DTYPE and len(arr) == len(candles)
    assert arr["symbol"][0] == candles[0]["symbol"].encode()
    assert set(np.unique(arr["window"])) == {b"1s", b"1m", b"1h", b"1d"}


def test_decode_trade_and_aggtrade_payloads() -> None:
    trade = {"e": "trade", "E": T0 + 2, "s": "BTCUSDT", "t": 42, "p": "61234.56000000",
             "q": "0.00067000", "T": T0, "m": True, "M": True}
    agg = {"e": "aggTrade", "E": T0 + 2, "s": "BTCUSDT", "a": 7, "p": "61234.5", "q": "1.5",
           "f": 100, "l": 105, "T": T0, "m": False, "M": True}
    assert decode_trade(orjson.dumps(trade)) == Trade("BTCUSDT", T0, 42, 61234.56, 0.00067,
                                                      True, 42, 42)
    assert decode_trade(orjson.dumps(agg)) == Trade("BTCUSDT", T0, 7, 61234.5, 1.5, False, 100,
                                                    105)
    bad = [
        (b"{not json", "malformed_json"),
        (b"[1,2]", "bad_type"),
        (orjson.dumps({**trade, "p": "NaN"}), "bad_value"),
        (orjson.dumps({**trade, "p": "-1"}), "bad_value"),
        (orjson.dumps({**trade, "q": "inf"}), "bad_value"),
        (orjson.dumps({**trade, "p": "1e5x"}), "bad_value"),
        (orjson.dumps({**trade, "T": "now"}), "bad_type"),
        (orjson.dumps({k: v for k, v in trade.items() if k != "t"}), "missing_field"),
        (orjson.dumps({**trade, "e": "kline"}), "unknown_event"),
    ]
    dead = DeadLetters("candles-test")
    good = decode_trades([orjson.dumps(trade), *(raw for raw, _ in bad)], dead)
    assert len(good) == 1
    assert [letter.kind for letter in dead.kept] == [kind for _, kind in bad]
    assert [letter.raw for letter in dead.kept] == [raw for raw, _ in bad]


trade_streams = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C"]),
        st.integers(0, 200_000),  # event time offset (ms)
        st.floats(0.01, 1_000, allow_nan=False),
        # Binance's smallest quantity step is 1e-8 (no subnormals: VWAP would round wildly).
        st.one_of(st.just(0.0), st.floats(1e-8, 50)),
        st.booleans(),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(trade_streams, st.integers(0, 30_000), st.integers(1, 50), st.integers(1, 50))
def test_property_totals_bounds_and_batch_independence(
    raw: list, grace: int, batch_a: int, batch_b: int
) -> None:
    trades = [Trade(s, T0 + off, i, p, q, m, i, i) for i, (s, off, p, q, m) in enumerate(raw)]
    windows = ("1s", "5s", "1m")
    agg = CandleAggregator(windows=windows, grace_ms=grace)
    candles, late = run(agg, trades, batch_a)
    again, late_again = run(CandleAggregator(windows=windows, grace_ms=grace), trades, batch_b)
    assert_same_candles(candles, again)  # batch boundaries change emission order only
    assert late == late_again
    for size in agg.sizes_ms:
        ours = [c for c in candles if c["window_ms"] == size]
        n_late = sum(1 for row in late if row["window_ms"] == size)
        assert sum(c["trade_count"] for c in ours) + n_late == len(trades)
        on_time = {tr.trade_id for tr in trades} - {
            row["trade_id"] for row in late if row["window_ms"] == size
        }
        volume = math.fsum(tr.qty for tr in trades if tr.trade_id in on_time)
        assert math.isclose(sum(c["volume"] for c in ours), volume, rel_tol=1e-9, abs_tol=1e-9)
        for c in ours:
            assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
            assert c["start_ms"] <= c["open_time_ms"] <= c["close_time_ms"] < c["end_ms"]
            assert c["taker_buy_volume"] <= c["volume"] + 1e-9
            if c["volume"] > 0:
                assert c["low"] - 1e-9 <= c["vwap"] <= c["high"] + 1e-9


def as_columns(trades: Sequence[Trade]) -> TradeColumns:
    return TradeColumns(
        [tr.symbol for tr in trades], np.array([tr.time_ms for tr in trades], np.int64),
        np.array([tr.trade_id for tr in trades], np.int64),
        np.array([tr.price for tr in trades]), np.array([tr.qty for tr in trades]),
        np.array([tr.buyer_is_maker for tr in trades], np.bool_),
    )  # fmt: skip


def run_both_ways(
    trades: Sequence[Trade], windows: Sequence[str], grace: int, batches: Sequence[int]
) -> tuple[tuple, tuple]:
    """(candles, late rows, state) of ``add_batch`` and of ``add_columns`` over the same
    batches (sizes taken in turn from ``batches``)."""
    results = []
    for columns in (False, True):
        agg = CandleAggregator(windows=windows, grace_ms=grace)
        candles, late, i, k = [], [], 0, 0
        while i < len(trades):
            part = trades[i : i + batches[k % len(batches)]]
            out = agg.add_columns(as_columns(part)) if columns else agg.add_batch(part)
            candles += out.candles
            late += out.late
            i, k = i + len(part), k + 1
        state = snapshot_windows(agg, CandleState)
        candles += agg.flush().candles
        results.append((candles, late, state, agg.watermark_ms, agg.trades_in))
    return results[0], results[1]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C"]),
            st.integers(0, 20_000),  # event time offset (ms): out of order, some late
            st.integers(0, 30),  # trade id: repeats make (T, id) ties
            st.floats(0.01, 1_000, allow_nan=False),
            st.floats(1e-8, 50),
            st.booleans(),
        ),
        max_size=300,
    ),
    st.integers(0, 3_000),
    st.lists(st.integers(1, 120), min_size=1, max_size=4),
)
def test_columns_fold_bit_for_bit_like_the_trade_loop(
    raw: list, grace: int, batches: list[int]
) -> None:
    """The candle stage's numpy path gives exactly the trade loop's candles, late rows and
    state: equal floats, not close ones, because a resumed run must match an unbroken one."""
    trades = [Trade(s, T0 + off, i, p, q, m, i, i) for s, off, i, p, q, m in raw]
    loop, columns = run_both_ways(trades, ("1s", "5s", "1m"), grace, batches)
    assert columns == loop
