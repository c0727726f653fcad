"""The candle stage on real envelopes: rows land in the right tables of a real HDF5 file, bad
payloads are dead-lettered (counted, kept), late trades and tickers go to the late_* tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from core.dead_letters import DeadLetters
from processors.trade_parsing import decode_trade
from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_reader import open_snapshot
from stages.candles import TRADES_DTYPE, CandleStage, trade_rows
from transports import Envelope

T0 = 1_700_000_000_000
GRACE = 1000


def trade_env(
    seq: int, t_ms: int, price: float, symbol: str = "BTCUSDT", pid: str = "p-1"
) -> Envelope:
    value = orjson.dumps({"e": "trade", "E": t_ms + 1, "s": symbol, "t": 100 + seq,
                          "p": f"{price:.2f}", "q": "0.50000", "T": t_ms, "m": seq % 2 == 0,
                          "M": True})  # fmt: skip
    return Envelope("binance.trade", value, producer_id=pid, seq=seq,
                    event_time_ns=(t_ms + 1) * 1_000_000, publish_time_ns=5, partition=0,
                    offset=seq, receive_time_ns=9)  # fmt: skip


def book_env(seq: int, t_ms: int) -> Envelope:
    value = orjson.dumps({"u": seq, "s": "BTCUSDT", "b": "99.5", "B": "1", "a": "100.5", "A": "2"})
    return Envelope("binance.bookTicker", value, producer_id="p-1", seq=seq,
                    event_time_ns=t_ms * 1_000_000)  # fmt: skip


def run_stage_into_file(path: Path, batches: list[list[Envelope]]) -> DeadLetters:
    holder: list[Hdf5Sink] = []
    dead = DeadLetters("candles", store=lambda letter: holder[0].add_dead_letter(letter))
    stage = CandleStage(dead, ("1s", "1m"), GRACE)
    with Hdf5Sink.open_for_resume(path, stage.tables(), {}, require_positions=False) as sink:
        holder.append(sink)
        for batch in batches:
            for table, rows in stage.process(batch).items():
                sink.append(table, rows)
        for table, rows in stage.finish().items():
            sink.append(table, rows)
        sink.flush()
    return dead


def test_trades_candles_late_and_dead_letters_land_in_their_tables(tmp_path: Path) -> None:
    path = tmp_path / "market.h5"
    first = [trade_env(i, T0 + i * 100, 100.0 + i) for i in range(30)]  # 3 s of trades
    bad = [
        Envelope("binance.trade", b"{not json", producer_id="p-1", seq=30),
        Envelope("binance.trade", orjson.dumps({"e": "trade", "s": "BTCUSDT"}), seq=31),
        Envelope("binance.bookTicker", b"[]", seq=32),
    ]
    late = [trade_env(33, T0 + 50, 1.0)]  # window [T0, T0+1s) closed long ago (watermark T0+1.9s)
    books = [book_env(40 + i, T0 + i * 400) for i in range(10)] + [book_env(60, T0)]
    dead = run_stage_into_file(path, [first, bad + late, books])

    assert dead.counts == {"malformed_json": 1, "missing_field": 1, "bad_type": 1}
    snap = open_snapshot(path)
    try:
        trades = snap.read("trades")
        assert trades.dtype == TRADES_DTYPE
        assert trades["seq"].tolist() == [*range(30), 33]  # bad ones are not trades
        assert trades["symbol"][0] == b"BTCUSDT" and trades["producer_id"][0] == b"p-1"
        assert trades["offset"].tolist() == trades["seq"].tolist()
        assert trades["publish_time_ns"][0] == 5 and trades["receive_time_ns"][0] == 9
        candles = snap.read("candles_1s")
        assert candles["trade_count"].tolist() == [10, 10, 10]
        assert candles["open"].tolist() == [100.0, 110.0, 120.0]
        # late for 1 s only: its 1 min window is still open, so it counts there
        assert snap.read("candles_1m")["trade_count"].tolist() == [31]
        late_rows = snap.read("late_trades")
        assert late_rows["trade_id"].tolist() == [133]
        assert late_rows["window"].tolist() == [b"1s"]
        assert late_rows["lateness_ms"][0] > 0
        assert len(snap.read("book_1s")) > 0
        assert len(snap.read("late_tickers")) == 1  # the bookTicker back at T0
        assert len(snap.read("dead_letters")) == 3
    finally:
        snap.close()


def test_trade_rows_match_the_row_by_row_layout() -> None:
    envs = [trade_env(i, T0 + i, 100.0 + i, symbol="ETHUSDT" if i % 2 else "BTCUSDT")
            for i in range(50)]  # fmt: skip
    trades = [decode_trade(e.value) for e in envs]
    rows = trade_rows(trades, envs)
    assert isinstance(rows, np.ndarray)
    expected = np.array(
        [(t.symbol.encode(), t.time_ms, t.trade_id, t.price, t.qty, t.buyer_is_maker,
          e.event_time_ns, e.publish_time_ns, e.receive_time_ns, e.producer_id.encode(), e.seq,
          e.partition, e.offset, False, True) for t, e in zip(trades, envs, strict=True)],
        dtype=TRADES_DTYPE,
    )  # fmt: skip
    np.testing.assert_array_equal(rows, expected)


@pytest.mark.parametrize("pid", ["p-ü", "p" * 65])
def test_odd_producer_ids_take_the_checked_path_that_counts_cuts(tmp_path: Path, pid: str) -> None:
    envs = [trade_env(i, T0 + i, 100.0, pid=pid) for i in range(3)]
    rows = trade_rows([decode_trade(e.value) for e in envs], envs)
    assert isinstance(rows, list)
    stage = CandleStage(DeadLetters("x"), ("1s",), GRACE)
    with Hdf5Sink(tmp_path / "x.h5", stage.tables(), {}) as sink:
        sink.append("trades", rows)
        sink.flush()
        stored = pid.encode()[:64]
        assert sink.truncated_values.get("trades", 0) == (3 if len(pid) > 64 else 0)
    snap = open_snapshot(tmp_path / "x.h5")
    try:
        assert snap.read("trades")["producer_id"].tolist() == [stored] * 3
    finally:
        snap.close()


def test_a_trade_far_in_the_future_is_dead_lettered_not_folded() -> None:
    """One bad record must not push the watermark ahead and make every later trade late."""
    import time as _time

    import orjson

    from core.dead_letters import DeadLetters
    from stages.candles import CandleStage
    from transports import Envelope

    now_ms = _time.time_ns() // 1_000_000
    dead = DeadLetters("test")
    stage = CandleStage(dead, windows=("1s",), grace_ms=0)

    def trade(t_ms: int, tid: int) -> Envelope:
        obj = {"e": "trade", "E": t_ms, "s": "BTCUSDT", "t": tid, "p": "1.0", "q": "1.0",
               "T": t_ms, "m": False, "M": True}
        return Envelope("binance.trade", orjson.dumps(obj), receive_time_ns=now_ms * 1_000_000)

    out = stage.process([trade(now_ms + 10 * 3_600_000, 1), trade(now_ms, 2), trade(now_ms + 1, 3)])
    assert dead.counts == {"future_time": 1}
    assert "late_trades" not in out
    assert len(out["trades"]) == 2


def _fill(tid: int, t_ms: int, qty: str = "0.02", price: str = "100.0") -> Envelope:
    value = orjson.dumps({"e": "trade", "E": t_ms, "s": "BTCUSDT", "t": tid, "p": price,
                          "q": qty, "T": t_ms, "m": False, "M": True})  # fmt: skip
    return Envelope("binance.trade", value)


def _agg(aid: int, first: int, last: int, t_ms: int, qty: str, price: str = "100.0") -> Envelope:
    value = orjson.dumps({"e": "aggTrade", "E": t_ms, "s": "BTCUSDT", "a": aid, "p": price,
                          "q": qty, "f": first, "l": last, "T": t_ms, "m": False, "M": True})
    return Envelope("binance.aggTrade", value)


def _closed_candle(batches: list[list[Envelope]]) -> dict:
    stage = CandleStage(DeadLetters("x"), ("1s",), 0)
    for batch in batches:
        stage.process(batch)
    (row,) = stage.finish()["candles_1s"]
    return row


FILLS = [_fill(100, T0), _fill(101, T0), _fill(102, T0 + 1), _fill(103, T0 + 2, "0.5")]
AGGS = [_agg(50, 100, 101, T0, "0.04"), _agg(51, 102, 102, T0 + 1, "0.02"),
        _agg(52, 103, 103, T0 + 2, "0.5")]


@pytest.mark.parametrize(
    "batches",
    [
        [FILLS + AGGS],  # both streams on (the producer's default), trades first
        [AGGS + FILLS],  # aggTrades first in one batch
        [AGGS[:2], FILLS[:3], [FILLS[3], AGGS[2]]],  # the trade stream takes over mid-way
        [AGGS[:1], FILLS[2:], AGGS[1:], FILLS[:2]],  # late trades of fills already folded
        [FILLS],  # trade stream alone
        [AGGS],  # aggTrade stream alone: its fills are counted from f..l
    ],
)
def test_each_fill_counts_once_whatever_streams_carry_it(batches: list[list[Envelope]]) -> None:
    """Issue 18 item 11: with trade and aggTrade both on, one fill of q=0.02 made a candle with
    volume 0.04 and 2 trades. Candles come from one stream, switched exactly by trade id."""
    row = _closed_candle(batches)
    assert row["volume"] == pytest.approx(0.56)
    assert row["trade_count"] == 4
    assert (row["first_trade_id"], row["last_trade_id"]) == (100, 103)
    assert row["close"] == 100.0


def test_the_trades_table_says_which_rows_made_the_candles() -> None:
    stage = CandleStage(DeadLetters("x"), ("1s",), 0)
    rows = stage.process(FILLS + AGGS)["trades"]
    assert list(rows["aggregate"]) == [False] * 4 + [True] * 3
    assert list(rows["in_candles"]) == [True] * 4 + [False] * 3
    restored = CandleStage(DeadLetters("x"), ("1s",), 0)
    restored.restore(stage.snapshot())
    assert not any(restored.process([_agg(53, 104, 104, T0 + 3, "1")])["trades"]["in_candles"])


def test_the_columns_fast_path_writes_the_rows_of_the_general_path() -> None:
    """A batch of well-formed trades takes the numpy path (``trade_column_rows``, candles by
    ``add_columns``); the same batches forced down the tuple path give the very same rows."""
    batches = [
        [trade_env(i, T0 + i * 37 - (i % 7) * 400, 100.0 + (i * 13) % 17,
                   symbol="ETHUSDT" if i % 3 else "BTCUSDT") for i in range(j, j + 250)]
        for j in range(0, 2000, 250)
    ]  # fmt: skip
    outputs = []
    for fast in (True, False):
        stage = CandleStage(DeadLetters("x"), ("1s", "1m"), GRACE)
        if not fast:
            stage.trade_streams.trades_only = lambda symbols: False  # type: ignore[method-assign]
        rows: dict[str, list] = {}
        for batch in [*batches, None]:
            out = stage.finish() if batch is None else stage.process(batch)
            for table, part in out.items():
                rows.setdefault(table, []).extend(
                    part.tolist() if isinstance(part, np.ndarray) else part
                )
        outputs.append(rows)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]["trades"]) == 2000 and outputs[0]["late_trades"]
