"""Issue 18: every integer, float and string field of every event the processors accept, set to
hostile values (int64 and float64 bounds, NaN/inf, odd Unicode), through the real stages into a
real HDF5 file: nothing crashes, the bad record is dead-lettered (or, if it is a valid value,
stored), and the records before and after it are kept.

Before this, one trade id of 2**63 (valid JSON) crashed ``harness process candles`` at its int64
column: on Kafka at every restart, on the same record. The Kafka test at the end sends such a
poison record through a real broker and checks it is dead-lettered once and the partition
moves on. Fixed seed (``derandomize``) and bounded examples, so CI runs the same cases.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.dead_letters import DeadLetters
from processors.sentiment import TweetScorer
from producers.binance.schema import ValidationError, parse_frame
from producers.binance.synthetic import SyntheticMarket
from producers.twitter.synthetic import TweetGenerator
from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_reader import open_snapshot
from stages.candles import CandleStage
from stages.runner import Stage
from stages.sentiment import SentimentStage
from transports import Envelope

START_MS = 1_723_456_789_000
FUZZ = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: The events the candle stage reads, as the producer publishes them (the ``data`` object).
TOPIC_OF = {
    "trade": "binance.trade",
    "aggTrade": "binance.aggTrade",
    "ticker": "binance.ticker",
    "bookTicker": "binance.bookTicker",
}


def _valid_events() -> dict[str, list[dict[str, Any]]]:
    market = SyntheticMarket(["btcusdt"], list(TOPIC_OF), seed=11, start_ms=START_MS)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TOPIC_OF}
    for frame in market.frames():
        obj = orjson.loads(frame.raw)
        kind = obj["stream"].split("@", 1)[1]
        if len(out[kind]) < 3:
            out[kind].append(obj["data"])
        if all(len(v) == 3 for v in out.values()):
            return out
    raise AssertionError("unreachable")


EVENTS = _valid_events()
TWEETS = [t.tweet for t in TweetGenerator(seed=5, start_ms=START_MS).take(3)]

odd_text = st.one_of(
    st.sampled_from([
        "", " ", "\x00", "BTC\x00USDT", "1_000", " 1 ", "\u0661\u0662", "1e5", "NaN", "-0",
        "+1", "0x10", "\u202eUSDT", "B\u0308TC", "\U0001f600", "\ufeffBTCUSDT", "A" * 25,
        "币安人生USDT", "9" * 40, "1." + "0" * 40, "-1", "Infinity",
    ]),
    st.text(max_size=30).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
)
BOUNDARY_INTS = [2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64 - 1, -1, 0, 2**53 + 1]
odd_int = st.one_of(
    st.sampled_from(BOUNDARY_INTS), st.integers(min_value=-(2**64), max_value=2**64 - 1)
)
odd_float = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1.7976931348623157e308, 5e-324, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
#: Every boundary value is tried on every field first (explicit examples), then random ones.
hostile = st.one_of(odd_int, odd_float, odd_text, st.booleans(), st.none())


def _with_boundaries(test: Any) -> Any:
    for value in [*BOUNDARY_INTS, math.nan, math.inf, -math.inf, "1_000", " 1 ", "\x00", "",
                  "币安人生USDT", "A" * 25]:
        test = example(value=value)(test)
    return test


def _encode(obj: dict[str, Any]) -> bytes:
    """What a hostile writer can put on a topic: stdlib JSON writes NaN, Infinity and
    integers past 64 bits as they are (orjson would refuse them)."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _run_through_stage(
    stage: Stage, dead: DeadLetters, sink: Hdf5Sink, batch: list[Envelope]
) -> list[int]:
    """One batch through the stage and a real sink, as ``run_stage`` does it; the ``seq`` of
    the rows the stage made of the envelopes themselves (trades or tweets)."""
    seqs: list[int] = []
    for table, rows in [*stage.process(batch).items(), *stage.finish().items()]:
        sink.append(table, rows)
        if table in ("trades", "tweets"):
            seqs += [_seq(row, stage.tables()[table]) for row in rows]
    for letter in dead.kept:
        sink.add_dead_letter(letter)
    sink.flush()
    return seqs


def _seq(row: Any, dtype: Any) -> int:
    """A row's ``seq``: rows come as a structured array, as dicts, or (names that are not
    ASCII) as tuples in the dtype's order."""
    return int(row[dtype.names.index("seq")] if isinstance(row, tuple) else row["seq"])


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Hdf5Sink]]:
    """One real file per stage for all examples (a file per example would take minutes); each
    example appends and flushes, and the files must read back whole at the end."""
    folder = tmp_path_factory.mktemp("fuzz")
    dead = DeadLetters("x")
    opened = {
        "market": Hdf5Sink(folder / "market.h5", CandleStage(dead, ("1s",)).tables(), {}),
        "sentiment": Hdf5Sink(folder / "sentiment.h5",
                              SentimentStage(dead, ("1s",), scorer=_scorer()).tables(), {}),
    }
    yield opened
    for name, sink in opened.items():
        sink.close()
        snap = open_snapshot(folder / f"{name}.h5")
        try:
            assert len(snap.read("trades" if name == "market" else "tweets")) > 0
        finally:
            snap.close()


_SCORERS: list[TweetScorer] = []


def _scorer() -> TweetScorer:
    if not _SCORERS:
        _SCORERS.append(TweetScorer())  # VADER's lexicon loads once
    return _SCORERS[0]


def _sandwich(topic: str, good: list[dict[str, Any]], bad: dict[str, Any]) -> list[Envelope]:
    values = [_encode(good[0]), _encode(bad), _encode(good[1])]
    return [Envelope(topic, v, producer_id="p", seq=i, receive_time_ns=1) for i, v in
            enumerate(values)]


BINANCE_FIELDS = [(kind, field) for kind in sorted(TOPIC_OF) for field in sorted(EVENTS[kind][2])]
PER_FIELD = settings(FUZZ, max_examples=6)  # plus the 18 boundary values


@pytest.mark.parametrize(("kind", "field"), BINANCE_FIELDS)
@PER_FIELD
@_with_boundaries
@given(value=hostile)
def test_hostile_binance_fields_never_crash_the_candle_stage(
    sinks: dict[str, Hdf5Sink], kind: str, field: str, value: Any
) -> None:
    good = json.loads(json.dumps(EVENTS[kind]))
    bad = {**good[2], field: value}
    dead = DeadLetters("candles")
    stage = CandleStage(dead, ("1s",), 1000)
    seqs = _run_through_stage(stage, dead, sinks["market"], _sandwich(TOPIC_OF[kind], good, bad))
    assert dead.total <= 1, dead.counts
    _producer_never_crashes(bad)
    if kind in ("trade", "aggTrade"):
        assert seqs == ([0, 2] if dead.total else [0, 1, 2]), (field, value, dead.counts)


def _producer_never_crashes(data: dict[str, Any]) -> None:
    frame = _encode({"stream": f"{str(data.get('s', 'x')).lower()}@trade", "data": data})
    with contextlib.suppress(ValidationError):
        parse_frame(frame, START_MS)


@pytest.mark.parametrize(
    ("kind", "field", "value", "dead_kind"),
    [
        ("trade", "t", 2**63, "bad_value"),  # the reported crash
        ("trade", "t", -(2**63), "bad_value"),
        ("aggTrade", "l", 2**63, "bad_value"),
        ("bookTicker", "u", 2**63, "bad_value"),
        ("ticker", "E", 2**63 - 1, "bad_value"),
        ("trade", "p", "1_000", "bad_value"),
        ("trade", "p", " 1 ", "bad_value"),
        ("trade", "s", "B" * 25, "bad_symbol"),
        ("trade", "s", "BTC\x00USDT", "bad_symbol"),
    ],
)
def test_named_hostile_values_are_dead_lettered(
    sinks: dict[str, Hdf5Sink], kind: str, field: str, value: Any, dead_kind: str
) -> None:
    good = json.loads(json.dumps(EVENTS[kind]))
    bad = {**good[2], field: value}
    dead = DeadLetters("candles")
    _run_through_stage(CandleStage(dead, ("1s",), 1000), dead, sinks["market"],
                       _sandwich(TOPIC_OF[kind], good, bad))
    assert dead.counts == {dead_kind: 1}


TWEET_FIELDS = [*sorted(TWEETS[2]), "includes_users"]


@pytest.mark.parametrize("field", TWEET_FIELDS)
@PER_FIELD
@_with_boundaries
@given(value=hostile)
def test_hostile_tweet_fields_never_crash_the_sentiment_stage(
    sinks: dict[str, Hdf5Sink], field: str, value: Any
) -> None:
    good = json.loads(json.dumps(TWEETS))
    bad = {**good[2], field: value}
    dead = DeadLetters("sentiment")
    stage = SentimentStage(dead, ("1s",), 1000, scorer=_scorer())
    seqs = _run_through_stage(stage, dead, sinks["sentiment"],
                              _sandwich("twitter.tweet", good, bad))
    assert dead.total <= 1, dead.counts
    assert seqs == ([0, 2] if dead.total else [0, 1, 2]), (field, value, dead.counts)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "9223372036854775808"), ("id", "\u0661\u0662"), ("id", "-1"),
     ("author_id", "9" * 19), ("created_at", "9999-12-31T23:59:59+14:00")],
)
def test_named_hostile_tweets(sinks: dict[str, Hdf5Sink], field: str, value: str) -> None:
    good = json.loads(json.dumps(TWEETS))
    dead = DeadLetters("sentiment")
    stage = SentimentStage(dead, ("1s",), 1000, scorer=_scorer())
    _run_through_stage(stage, dead, sinks["sentiment"],
                       _sandwich("twitter.tweet", good, {**good[2], field: value}))
    assert dead.total <= 1  # an author id past int64 is dropped (-1), not a crash


# -- Kafka: a poison record is dead-lettered once and the partition moves on -----------------


def test_a_poison_record_on_kafka_is_dead_lettered_once_and_the_partition_moves_on(
    tmp_path: Path,
) -> None:
    from transports import open_transport
    from transports.brokers import make_broker

    good = json.loads(json.dumps(EVENTS["trade"]))
    poison = {**good[2], "t": 2**63}
    output = tmp_path / "market.h5"
    with make_broker(log_path=tmp_path / "broker.log") as broker:  # its own topics
        url = f"kafka://{broker.bootstrap}"
        with open_transport(url) as transport, transport.publisher("poisoner") as pub:
            for obj in (good[0], poison, good[1]):
                pub.publish("binance.trade", _encode(obj), key=b"BTCUSDT")
            pub.end_streams()
        for _ in range(2):  # the second run resumes from the file: nothing is read twice
            proc = subprocess.run(
                [sys.executable, "-m", "harness.cli", "process", "candles", "--transport", url,
                 "--output", str(output), "--end-after-producers", "1", "--end-grace", "10",
                 "--idle-exit", "20", "--quiet", "--flush-interval", "0.2"],
                capture_output=True, text=True, timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["stopped_by"] == "end_of_streams" and summary["received"] == 0
    snap = open_snapshot(output)
    try:
        assert snap.read("trades")["seq"].tolist() == [0, 2]
        letters = snap.read("dead_letters")
        assert len(letters) == 1 and letters["kind"][0] == b"bad_value"
    finally:
        snap.close()
