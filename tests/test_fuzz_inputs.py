"""Property-based and table tests: every bad input has a defined outcome, none crashes a stage.

Fixed seed (``derandomize=True``) and bounded examples, so CI runs the same cases every time.
Valid frames come from the real generators (``SyntheticMarket`` for every Binance stream type,
``TweetGenerator`` for tweets) and are then mutated; a stage may *accept* a frame or reject it
with a *named kind* (which the dead-letter store counts), and nothing else.

Outcome table (producer = ``producers.*.schema`` at the edge; processor = the decoders in
``processors.trade_parsing`` / ``processors.sentiment``; transport = ``transports.*``):

=================================  ==========================  ================================
bad input                          producer (Binance/Twitter)  processor decoder / transport
=================================  ==========================  ================================
not JSON / truncated JSON          malformed_json              malformed_json
invalid UTF-8 bytes                invalid_utf8                malformed_json
JSON that is not an object         bad_type / bad_body         bad_type
missing required field             missing_field              missing_field
field of the wrong JSON type       bad_type / wrong_type       bad_type
price/qty "NaN", "inf", "1e5",     bad_value (plain decimals   bad_value (the same plain
"-1", "1_000", " 1 ", "" (strings) only)                       decimals; 1..18 integer digits)
price "0" / qty "0"                accepted                    bad_value (trades: > 0)
id >= 2**63 or < 0                 bad_value                   bad_value
symbol with NUL, blank, > 24 bytes bad_value                   bad_symbol
timestamp E far future/past        stale_timestamp (|E-recv|   accepted (the producer is the
                                   > max_skew_ms, 1 h)         guard; see note below)
trade time T > 40 days from E      bad_value                   accepted
bookTicker E not an integer        bad_type                    bad_type
tweet created_at far future/past   bad_created_at outside the  accepted (ms fit int64)
                                   int64-ns range 1678..2262
unknown extra fields               accepted, counted in        accepted (ignored)
                                   unknown_fields
unknown event type                 unknown_event               unknown_event
oversize frame (> 64 KiB Binance,  oversize / oversize_body /  transport: oversize (ZeroMQ and
16 MiB body, 256 KiB tweet)        oversize_tweet              Kafka, > max_message_bytes)
ZeroMQ frame from unknown sender   --                          no_topic, bad_magic, bad_version,
                                                               truncated, invalid_utf8,
                                                               length_mismatch, multipart
Kafka record without x-harness     --                          missing_meta
x-harness shorter than 24 bytes /  --                          bad_meta
non-UTF-8 producer id
x-harness garbled but parseable    --                          accepted with a wrong seq: shows
                                                               up as a sequence gap/duplicate
=================================  ==========================  ================================

Every rejection is counted per kind, logged once per kind and kept (raw bytes) in a dead-letter
store: gzip JSONL for producers, the ``dead_letters`` table of the HDF5 sink for processors.
Note: a trade whose T is far ahead would push a processor's watermark forward; the producer's
``max_skew_ms`` bound on E and the 40-day bound on T-E are what keep such frames out.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.dead_letters import DeadLetters
from core.recording import Frame
from processors.depth_parsing import decode_depth
from processors.sentiment import decode_tweet
from processors.trade_parsing import DecodeError, decode_ticker, decode_trade, decode_trade_batch
from producers.binance.schema import (
    BinanceDecoder,
    ControlReply,
    MarketEvent,
    ServerShutdown,
    ValidationError,
    parse_frame,
)
from producers.binance.synthetic import SUPPORTED_STREAM_TYPES, SyntheticMarket
from producers.binance.topics import ALL_TOPICS
from producers.runtime.producer import Producer
from producers.twitter.schema import TOPIC as TWEET_TOPIC
from producers.twitter.schema import TweetDecoder, TweetRejected, check_tweet, decode_body
from producers.twitter.synthetic import TweetGenerator
from transports import Subscriber, open_transport

BINANCE_KINDS = {
    "malformed_json",
    "invalid_utf8",
    "oversize",
    "unknown_event",
    "missing_field",
    "bad_type",
    "bad_value",
    "stale_timestamp",
    "stream_mismatch",
}
DECODE_KINDS = {
    "malformed_json", "bad_type", "bad_value", "missing_field", "unknown_event", "bad_symbol"
}
TWEET_DECODE_KINDS = DECODE_KINDS | {"bad_id", "bad_created_at"}
TWEET_KINDS = {
    "invalid_utf8",
    "malformed_json",
    "oversize_body",
    "bad_body",
    "api_error",
    "missing_field",
    "wrong_type",
    "bad_id",
    "bad_created_at",
    "oversize_tweet",
    "too_large_for_transport",
}
START_MS = 1_723_456_789_000
FUZZ = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _valid_binance_frames() -> dict[str, list[dict[str, Any]]]:
    """A few real-format frames per stream type, from the seeded synthetic market."""
    market = SyntheticMarket(
        ["btcusdt", "ethusdt"], list(SUPPORTED_STREAM_TYPES), seed=7, start_ms=START_MS
    )
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in SUPPORTED_STREAM_TYPES}
    for frame in market.frames():
        obj = orjson.loads(frame.raw)
        stream_type = obj["stream"].split("@", 1)[1]
        if stream_type in by_type and len(by_type[stream_type]) < 3:  # not depthSnapshot
            by_type[stream_type].append(obj)
        if all(len(v) == 3 for v in by_type.values()):
            return by_type
    raise AssertionError("unreachable: the market is endless")


VALID = _valid_binance_frames()
ALL_VALID = [f for frames in VALID.values() for f in frames]
RECV_MS = START_MS + 5_000

junk_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["NaN", "nan", "inf", "-inf", "Infinity", "-1", "-0.5", "1e5", "0x10", "", " 1", "1,5",
         "\u0661\u0662", "0", "0.0", "99999999999999999999999999999999999"]
    ),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
far_times = st.sampled_from(
    [0, 1, -1, 2**63 - 1, 2**31, START_MS - 10 * 86_400_000, START_MS + 10 * 86_400_000,
     START_MS + 100 * 365 * 86_400_000, 253_402_300_799_000]
)
bad_bytes = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xf4\x90\x80\x80"])


def _field_paths(data: dict[str, Any]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [(k,) for k in data]
    if isinstance(data.get("k"), dict):
        paths += [("k", k) for k in data["k"]]
    return paths


@st.composite
def mutated_binance(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """(raw frame bytes, the mutated ``data`` object) from a valid frame and 1-3 mutations."""
    frame = json.loads(json.dumps(draw(st.sampled_from(ALL_VALID))))
    data = frame["data"]
    for _ in range(draw(st.integers(1, 3))):
        paths = _field_paths(data)
        op = draw(st.sampled_from(["delete", "set", "unknown", "time", "stream"]))
        if op == "stream":
            frame["stream"] = draw(st.sampled_from(["", "ethusdt@trade", "x", "btcusdt@trade"]))
            continue
        if op == "unknown":
            data[draw(st.text(min_size=1, max_size=6))] = draw(junk_values)
            continue
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        target = data if len(path) == 1 else data["k"]
        if not isinstance(target, dict) or path[-1] not in target:
            continue
        if op == "delete":
            del target[path[-1]]
        elif op == "time":
            target[path[-1]] = draw(far_times)
        else:
            target[path[-1]] = draw(junk_values)
    raw = json.dumps(frame).encode()  # stdlib: writes NaN/Infinity and >64-bit ints verbatim
    how = draw(st.sampled_from(["as_is", "as_is", "truncate", "bad_utf8", "oversize"]))
    if how == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif how == "bad_utf8":
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + draw(bad_bytes) + raw[pos:]
    elif how == "oversize":
        raw = raw[:-1] + b', "pad": "' + b"x" * 70_000 + b'"}'
    return raw, data


def _binance_outcome(raw: bytes | str) -> str:
    try:
        parsed = parse_frame(raw, RECV_MS)
    except ValidationError as exc:
        assert exc.kind in BINANCE_KINDS, exc
        return exc.kind
    assert isinstance(parsed, MarketEvent | ControlReply | ServerShutdown)
    return "accepted"


def _decoder_outcome(decoder: Any, value: bytes, kinds: set[str]) -> str:
    try:
        decoder(value)
    except DecodeError as exc:
        assert exc.kind in kinds, exc
        return exc.kind
    return "accepted"


# -- Binance producer ------------------------------------------------------------------------


@pytest.mark.parametrize("stream_type", SUPPORTED_STREAM_TYPES)
def test_every_valid_stream_type_is_accepted(stream_type: str) -> None:
    for frame in VALID[stream_type]:
        raw = orjson.dumps(frame)
        assert _binance_outcome(raw) == "accepted"
        assert _binance_outcome(raw.decode()) == "accepted"


@FUZZ
@given(mutated_binance())
def test_mutated_binance_frames_are_accepted_or_rejected_with_a_named_kind(
    case: tuple[bytes, dict[str, Any]],
) -> None:
    raw, _data = case
    _binance_outcome(raw)
    try:
        as_text = raw.decode()
    except UnicodeDecodeError:
        pass
    else:
        _binance_outcome(as_text)  # the websocket hands text frames over as str


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_binance_parser(raw: bytes) -> None:
    _binance_outcome(raw)


@FUZZ
@given(mutated_binance())
def test_processor_decoders_raise_only_decode_errors(case: tuple[bytes, dict[str, Any]]) -> None:
    _raw, data = case
    value = json.dumps(data).encode()
    _decoder_outcome(decode_trade, value, DECODE_KINDS)
    _batch_agrees_with_single_values(value)
    _decoder_outcome(decode_ticker, value, DECODE_KINDS)
    _decoder_outcome(decode_tweet, value, TWEET_DECODE_KINDS)
    _decoder_outcome(lambda v: decode_depth(v, START_MS), value, DECODE_KINDS)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_processor_decoders(value: bytes) -> None:
    _decoder_outcome(decode_trade, value, DECODE_KINDS)
    _decoder_outcome(decode_ticker, value, DECODE_KINDS)
    _decoder_outcome(decode_tweet, value, TWEET_DECODE_KINDS)
    _decoder_outcome(lambda v: decode_depth(v, START_MS), value, DECODE_KINDS)


def _trade(**changes: Any) -> dict[str, Any]:
    data = dict(VALID["trade"][0]["data"])
    data.update(changes)
    return data


def _frame_bytes(data: dict[str, Any], stream: str = "btcusdt@trade") -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


@pytest.mark.parametrize(
    ("data", "producer", "processor"),
    [
        (_trade(p="NaN"), "bad_value", "bad_value"),
        (_trade(p="nan"), "bad_value", "bad_value"),
        (_trade(p="inf"), "bad_value", "bad_value"),
        (_trade(p="-Infinity"), "bad_value", "bad_value"),
        (_trade(p="-1.5"), "bad_value", "bad_value"),
        (_trade(q="-0.001"), "bad_value", "bad_value"),
        (_trade(q="NaN"), "bad_value", "bad_value"),
        (_trade(p="1e5"), "bad_value", "bad_value"),  # Binance sends plain decimals only
        (_trade(p="1_000"), "bad_value", "bad_value"),  # float() would read 1000.0
        (_trade(p=" 1 "), "bad_value", "bad_value"),  # float() would read 1.0
        (_trade(p="١٢"), "bad_value", "bad_value"),  # Arabic-Indic digits: float() reads 12.0
        (_trade(p="1" * 19), "bad_value", "bad_value"),  # more integer digits than any price
        (_trade(p="0"), "accepted", "bad_value"),  # a zero price never makes a candle
        (_trade(q="0"), "accepted", "bad_value"),  # nor does a zero quantity
        (_trade(p=61000.5), "bad_type", "bad_type"),  # Binance sends strings
        (_trade(p=math.nan), "malformed_json", "malformed_json"),  # stdlib writes bare NaN
        (_trade(E=START_MS + 7_200_000), "stale_timestamp", "accepted"),  # 2 h in the future
        (_trade(E=START_MS - 7_200_000), "stale_timestamp", "accepted"),  # 2 h in the past
        (_trade(E=2**63 - 1), "bad_value", "accepted"),  # E*1e6 would not fit int64 ns
        (_trade(T=START_MS + 50 * 86_400_000), "bad_value", "accepted"),
        (_trade(T=-5), "bad_value", "bad_value"),
        (_trade(t=2**63), "bad_value", "bad_value"),  # an int64 column cannot hold it
        (_trade(t=-(2**63)), "bad_value", "bad_value"),
        (_trade(s="BTCUSDT\x00X"), "bad_value", "bad_symbol"),
        (_trade(s="B" * 25), "bad_value", "bad_symbol"),  # would be cut to 24 bytes
        (_trade(s="币安人生USDT"), "stream_mismatch", "accepted"),  # a real Binance symbol
        (_trade(t="12"), "bad_type", "bad_type"),
        (_trade(m="true"), "bad_type", "bad_type"),
        (_trade(extra_field=[1, 2]), "accepted", "accepted"),
        (_trade(e="liquidation"), "unknown_event", "unknown_event"),
        ({k: v for k, v in _trade().items() if k != "p"}, "missing_field", "missing_field"),
    ],
)
def test_named_bad_trade_inputs_have_the_documented_outcome(
    data: dict[str, Any], producer: str, processor: str
) -> None:
    assert _binance_outcome(_frame_bytes(data)) == producer
    assert _decoder_outcome(decode_trade, json.dumps(data).encode(), DECODE_KINDS) == processor
    _batch_agrees_with_single_values(json.dumps(data).encode())


def _batch_agrees_with_single_values(value: bytes) -> None:
    """The candle stage's batch fast path accepts a batch only if every value in it gets the
    very same Trade one by one; a value the single path refuses sends the batch there."""
    good = json.dumps(_trade()).encode()
    batch = [good, value, good]
    singles = []
    for v in batch:
        try:
            singles.append(decode_trade(v))
        except DecodeError:
            singles.append(None)
    fast = decode_trade_batch(batch, max_time_ms=START_MS + 3_600_000)
    assert fast is None or fast.trades() == singles, (value, fast, singles)


def test_unknown_fields_are_accepted_and_counted() -> None:
    parsed = parse_frame(_frame_bytes(_trade(x1=1, x2="a")), RECV_MS)
    assert isinstance(parsed, MarketEvent) and parsed.unknown_fields == 2


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (_frame_bytes(_trade())[:-3], "malformed_json"),
        (b'{"stream": "btcusdt@trade", "data": {"s": "\xff\xfe"}}', "invalid_utf8"),
        (b"[1, 2]", "bad_type"),
        (_frame_bytes(_trade(pad="x" * 70_000)), "oversize"),
        (_frame_bytes(_trade(), stream="ethusdt@trade"), "stream_mismatch"),
        (_frame_bytes({"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1", "E": "x"},
                      stream="btcusdt@bookTicker"), "bad_type"),
    ],
)
def test_named_bad_frames_have_the_documented_kind(raw: bytes, kind: str) -> None:
    assert _binance_outcome(raw) == kind


@pytest.mark.parametrize("bad_e", ["x", [1], 1.5, None])
def test_book_ticker_with_a_non_integer_event_time_is_a_decode_error(bad_e: Any) -> None:
    book = {"u": 1, "s": "BTCUSDT", "b": "1.0", "B": "2", "a": "1.1", "A": "3", "E": bad_e}
    outcome = _decoder_outcome(decode_ticker, json.dumps(book).encode(), DECODE_KINDS)
    assert outcome == ("accepted" if bad_e is None else "bad_type")


# -- pipelines: publish what is good, dead-letter the rest, never raise -----------------------


@pytest.fixture
def inproc_link() -> Iterator[tuple[Any, Subscriber]]:
    """A real ZeroMQ inproc PUSH/PULL pair: what the pipelines publish is really encoded."""
    url = f"zmq+inproc://fuzz-{uuid.uuid4().hex[:8]}?pattern=pushpull"
    with open_transport(url) as transport:
        publisher = transport.publisher("fuzz")
        topics = [*ALL_TOPICS, TWEET_TOPIC]
        subscriber = transport.subscriber(topics)
        try:
            yield publisher, subscriber
        finally:
            subscriber.close()
            publisher.close(timeout=1.0)


def _drain(sub: Subscriber) -> int:
    got = 0
    while batch := sub.poll(10_000, timeout=0.01):
        got += len(batch)
    return got


@pytest.mark.slow
@FUZZ
@given(st.lists(mutated_binance(), min_size=1, max_size=5))
def test_binance_pipeline_publishes_or_dead_letters_every_frame(
    inproc_link: tuple[Any, Subscriber], cases: list[tuple[bytes, dict[str, Any]]]
) -> None:
    publisher, sub = inproc_link
    dead = DeadLetters("fuzz")
    decoder = BinanceDecoder()
    pipeline = Producer(publisher, decoder, dead)
    for raw, _ in cases:
        pipeline.handle(Frame(RECV_MS * 1_000_000, raw))
    assert pipeline.received == len(cases)
    assert pipeline.published + dead.total + decoder.control_replies + decoder.server_shutdowns \
        == len(cases)
    assert set(dead.counts) <= BINANCE_KINDS | {"too_large_for_transport"}
    assert [letter.raw for letter in dead.kept] == [
        raw for raw, _ in cases if raw in {letter.raw for letter in dead.kept}
    ]
    assert _drain(sub) == pipeline.published


def _valid_tweets() -> list[dict[str, Any]]:
    return [t.tweet for t in TweetGenerator(seed=3).take(5)]


VALID_TWEETS = _valid_tweets()


@st.composite
def mutated_tweet_body(draw: st.DrawFn) -> bytes:
    tweets = json.loads(json.dumps(VALID_TWEETS[: draw(st.integers(1, 3))]))
    for _ in range(draw(st.integers(0, 3))):
        tweet = draw(st.sampled_from(tweets))
        field = draw(st.sampled_from([*sorted(tweet), "new_field"]))
        op = draw(st.sampled_from(["delete", "set", "time"]))
        if op == "delete":
            tweet.pop(field, None)
        elif op == "time":
            tweet["created_at"] = draw(
                st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                 "2262-04-12T00:00:00Z", "1677-09-21T00:00:00Z",
                                 "2024-08-01T12:00:00", "yesterday", "2024-13-01T00:00:00Z"])
            )
        else:
            tweet[field] = draw(junk_values)
    shape = draw(st.sampled_from(["page", "line", "not_object", "errors"]))
    body: Any = {"data": tweets}
    if shape == "line":
        body = {"data": tweets[0]}
    elif shape == "not_object":
        body = tweets
    elif shape == "errors":
        body = {"errors": [{"title": "x"}]}
    raw = json.dumps(body).encode()
    how = draw(st.sampled_from(["as_is", "as_is", "truncate", "bad_utf8"]))
    if how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "bad_utf8":
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + draw(bad_bytes) + raw[pos:]
    return raw


@pytest.mark.slow
@FUZZ
@given(mutated_tweet_body())
def test_tweet_bodies_are_published_or_dead_lettered_never_raise(
    inproc_link: tuple[Any, Subscriber], raw: bytes
) -> None:
    publisher, sub = inproc_link
    dead = DeadLetters("fuzz")
    pipeline = Producer(publisher, TweetDecoder(dead), dead)
    published = pipeline.handle(Frame(0, raw))
    assert set(dead.counts) <= TWEET_KINDS
    assert _drain(sub) == published
    for letter in dead.kept:  # what the processor would see from a dead tweet: still defined
        _decoder_outcome(decode_tweet, letter.raw, TWEET_DECODE_KINDS)


@pytest.mark.parametrize(
    ("created_at", "outcome"),
    [
        ("2024-08-01T12:00:00.000Z", "accepted"),
        ("9999-12-31T23:59:59Z", "bad_created_at"),  # would overflow int64 nanoseconds
        ("0001-01-01T00:00:00Z", "bad_created_at"),
        ("2024-08-01T12:00:00", "bad_created_at"),  # no time zone
        ("not a date", "bad_created_at"),
    ],
)
def test_tweet_timestamps_have_a_defined_outcome(created_at: str, outcome: str) -> None:
    tweet = {**VALID_TWEETS[0], "created_at": created_at}
    try:
        ns = check_tweet(tweet)
    except TweetRejected as exc:
        assert exc.kind == outcome
    else:
        assert outcome == "accepted" and -(2**63) <= ns < 2**63


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"\xff" + json.dumps({"data": VALID_TWEETS}).encode(), "invalid_utf8"),
        (b'{"data": [', "malformed_json"),
        (b"[]", "bad_body"),
        (b'{"errors": [{"title": "Unauthorized"}]}', "api_error"),
    ],
)
def test_named_bad_tweet_bodies_have_the_documented_kind(raw: bytes, kind: str) -> None:
    with pytest.raises(TweetRejected) as info:
        decode_body(raw)
    assert info.value.kind == kind


def test_oversize_tweet_body_is_rejected_before_parsing() -> None:
    with pytest.raises(TweetRejected) as info:
        decode_body(b" " * 2048, max_bytes=1024)
    assert info.value.kind == "oversize_body"
