"""Window state survives snapshot -> JSON -> restore exactly: a restarted aggregator continues as if
it had never stopped (same closed rows, same late rows), for candles, tickers and sentiment.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.candles import CandleAggregator, CandleState
from processors.sentiment import ScoredTweet, SentimentAggregator, SentimentState, Tweet
from processors.tickers import BOOK_TICKER_SPEC, TICKER_SPEC, TickerAggregator, TickerState
from processors.trade_parsing import TickerUpdate, Trade
from processors.window_state import restore_windows, snapshot_windows

T0 = 1_700_000_000_000
WINDOWS = ("1s", "1m", "1h")
GRACE = 1500


def trades(n: int, seed: int) -> list[Trade]:
    rng = random.Random(seed)
    out, t = [], T0
    for i in range(n):
        t += rng.choice((0, 0, 1, 7, 120, 800))
        when = t - rng.randint(0, 3000) if rng.random() < 0.05 else t  # some late, some in grace
        price = 100 + rng.random() * 10  # full float precision must survive JSON
        out.append(Trade(rng.choice(("BTCUSDT", "ETHUSDT")), when, i, price, rng.random(),
                         rng.random() < 0.5, i, i))  # fmt: skip
    return out


def tickers(n: int, seed: int, book: bool) -> list[TickerUpdate]:
    rng = random.Random(seed)
    spec = BOOK_TICKER_SPEC if book else TICKER_SPEC
    out, t = [], T0
    for i in range(n):
        t += rng.choice((0, 5, 90, 400))
        when = t - rng.randint(0, 3000) if rng.random() < 0.05 else t
        values = {src: rng.random() * 100 for src, _name, _aggs in spec}
        values.update(b=rng.random() * 100, a=rng.random() * 100 + 100)
        values.update(spread=values["a"] - values["b"], mid=(values["a"] + values["b"]) / 2)
        event = "bookTicker" if book else "24hrTicker"
        out.append(TickerUpdate(event, rng.choice(("BTCUSDT", "ETHUSDT")), when, i, values))
    return out


def scored_tweets(n: int, seed: int) -> list[ScoredTweet]:
    rng = random.Random(seed)
    out, t = [], T0
    for i in range(n):
        t += rng.choice((0, 30, 700, 2500))
        when = t - rng.randint(0, 4000) if rng.random() < 0.05 else t
        tweet = Tweet(i, when, "text", "en", 7, {})
        compound = rng.uniform(-1, 1)
        coins = rng.sample(["BTC", "ETH", "SOL"], rng.randint(0, 2))
        out.append(ScoredTweet(tweet, 0.1, 0.8, 0.1, compound, coins, ["text"]))
    return out


# (make aggregator, state class, feed one batch -> (closed rows, late rows), finish -> rows)
Case = tuple[Callable[[], Any], type, Callable[[Any, list[Any]], tuple[list, list]],
             Callable[[Any], list], Callable[[int, int], list[Any]]]  # fmt: skip

CASES: dict[str, Case] = {
    "candles": (
        lambda: CandleAggregator(WINDOWS, GRACE),
        CandleState,
        lambda agg, batch: (lambda r: (r.candles, r.late))(agg.add_batch(batch)),
        lambda agg: agg.flush().candles,
        trades,
    ),
    "tickers": (
        lambda: TickerAggregator(TICKER_SPEC, WINDOWS, GRACE),
        TickerState,
        lambda agg, batch: (lambda r: (r.rows, r.late))(agg.add_batch(batch)),
        lambda agg: agg.flush().rows,
        lambda n, seed: tickers(n, seed, book=False),
    ),
    "book": (
        lambda: TickerAggregator(BOOK_TICKER_SPEC, WINDOWS, GRACE),
        TickerState,
        lambda agg, batch: (lambda r: (r.rows, r.late))(agg.add_batch(batch)),
        lambda agg: agg.flush().rows,
        lambda n, seed: tickers(n, seed, book=True),
    ),
    "sentiment": (
        lambda: SentimentAggregator(WINDOWS, GRACE),
        SentimentState,
        lambda agg, batch: agg.add_scored(batch),
        lambda agg: agg.rows(agg.flush(), closed=True),
        scored_tweets,
    ),
}


def feed(case: Case, agg: Any, events: Sequence[Any], batch: int) -> tuple[list, list]:
    _make, _cls, add, _finish, _gen = case
    rows: list[Any] = []
    late: list[Any] = []
    for i in range(0, len(events), batch):
        closed, late_rows = add(agg, list(events[i : i + batch]))
        rows += closed
        late += late_rows
    return rows, late


def uninterrupted(case: Case, events: Sequence[Any], batch: int) -> tuple[list, list]:
    agg = case[0]()
    rows, late = feed(case, agg, events, batch)
    return rows + case[3](agg), late


def with_restart(case: Case, events: Sequence[Any], batch: int, cut: int) -> tuple[list, list]:
    """Process ``events[:cut]``, snapshot through JSON text, restore into a new aggregator."""
    make, cls, _add, finish, _gen = case
    first = make()
    rows, late = feed(case, first, events[:cut], batch)
    text = json.dumps(snapshot_windows(first, cls))
    second = make()
    restore_windows(second, cls, json.loads(text))
    more_rows, more_late = feed(case, second, events[cut:], batch)
    return rows + more_rows + finish(second), late + more_late


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restore_mid_stream_continues_exactly(kind: str, seed: int) -> None:
    case = CASES[kind]
    events = case[4](3000, seed)
    want = uninterrupted(case, events, batch=100)
    assert want[0] and want[1], "the input should close windows and have late events"
    for cut in (100, 1300, 2900):  # at batch boundaries: where checkpoints happen
        assert with_restart(case, events, 100, cut) == want


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 40), batch=st.integers(1, 50))
def test_candle_restore_at_any_batch_boundary(seed: int, cut: int, batch: int) -> None:
    case = CASES["candles"]
    events = case[4](600, seed)
    cut_at = min(cut * batch, len(events))
    assert with_restart(case, events, batch, cut_at) == uninterrupted(case, events, batch)


def test_snapshot_is_plain_json_with_exact_floats() -> None:
    agg = CandleAggregator(WINDOWS, GRACE)
    agg.add_batch([Trade("BTCUSDT", T0, 1, 0.1 + 0.2, 1 / 3, False, 1, 1)])
    data = json.loads(json.dumps(snapshot_windows(agg, CandleState)))
    restored = CandleAggregator(WINDOWS, GRACE)
    restore_windows(restored, CandleState, data)
    assert restored.flush().candles == agg.flush().candles


@pytest.mark.parametrize(
    ("windows", "grace"), [(("1s", "1m"), GRACE), (WINDOWS, GRACE + 1), (("1m", "1h", "1d"), 0)]
)
def test_snapshot_from_other_window_settings_is_refused(
    windows: tuple[str, ...], grace: int
) -> None:
    agg = CandleAggregator(WINDOWS, GRACE)
    agg.add_batch(trades(50, 1))
    data = json.loads(json.dumps(snapshot_windows(agg, CandleState)))
    with pytest.raises(ValueError, match="restart with the same settings or a new output file"):
        restore_windows(CandleAggregator(windows, grace), CandleState, data)


def test_snapshot_of_another_aggregator_kind_is_refused() -> None:
    agg = CandleAggregator(WINDOWS, GRACE)
    data = snapshot_windows(agg, CandleState)
    with pytest.raises(ValueError, match="not a TickerState window snapshot"):
        restore_windows(TickerAggregator(TICKER_SPEC, WINDOWS, GRACE), TickerState, data)
