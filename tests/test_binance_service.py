"""The Binance source on the producer runtime: publish contract, dead letters, record -> replay,
synthetic determinism."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from pathlib import Path

import orjson
from test_binance_helpers import CollectingPublisher, binance_producer

from core.dead_letters import DeadLetters, JsonlDeadLetterStore, read_jsonl_dead_letters
from core.recording import Frame, RecordingWriter, read_recording
from producers.binance.synthetic import SyntheticMarket
from producers.runtime.pacing import replayed_at_speed
from producers.runtime.producer import CHECK_EVERY, drive
from producers.runtime.stop import StopAfter

START_MS = 1_723_456_789_000


def market_frames(n: int, seed: int = 7, types: list[str] | None = None) -> list[Frame]:
    market = SyntheticMarket(["btcusdt", "ethusdt"], types or ["trade", "bookTicker"], seed=seed)
    return list(itertools.islice(market.frames(), n))


def test_publish_contract_topic_key_value_times_headers() -> None:
    pub = CollectingPublisher()
    pipe = binance_producer(pub)
    frames = market_frames(2000)
    drive(pipe, frames, StopAfter(), check_every=CHECK_EVERY)
    assert pipe.published == 2000 == len(pub.messages)
    for f, env in zip(frames, pub.messages, strict=True):
        data = orjson.loads(f.raw)["data"]
        assert orjson.loads(env.value) == data
        assert env.key == data["s"].encode()
        assert env.header("recv_ns") == str(f.recv_ns).encode()
        if env.topic == "binance.trade":
            assert env.event_time_ns == data["E"] * 1_000_000
            assert isinstance(data["p"], str)
        else:
            assert env.topic == "binance.bookTicker"
            assert env.event_time_ns == f.recv_ns  # spot bookTicker has no E
    seqs = Counter(env.topic for env in pub.messages)
    for topic, count in seqs.items():
        assert [e.seq for e in pub.messages if e.topic == topic] == list(range(count))


def test_bad_frames_dead_lettered_while_good_ones_flow(tmp_path: Path) -> None:
    store = JsonlDeadLetterStore(tmp_path / "dl.jsonl.gz")
    dead = DeadLetters("binance-producer", store.write)
    pub = CollectingPublisher(max_message_bytes=125)
    pipe = binance_producer(pub, dead)
    good = market_frames(200, types=["trade"])
    bad: list[bytes | str] = [
        b"{not json",
        b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"\xc3\x28"}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1}}',
        '{"stream":"btcusdt@avgPrice","data":{"e":"avgPrice","E":1,"s":"BTCUSDT"}}',
    ]
    for i, f in enumerate(good):
        pipe.handle(f)
        if i % 50 == 0:
            pipe.handle(Frame(f.recv_ns, bad[i // 50]))
    store.close()
    kinds = dict(dead.counts)
    assert kinds.pop("malformed_json") == 1 and kinds.pop("invalid_utf8") == 1
    assert kinds.pop("missing_field") == 1 and kinds.pop("unknown_event") == 1
    # values over the publisher's limit (125 B here) are dead-lettered, not raised
    assert set(kinds) <= {"too_large_for_transport"}
    assert pipe.published + kinds.get("too_large_for_transport", 0) == 200
    letters = read_jsonl_dead_letters(tmp_path / "dl.jsonl.gz")
    assert len(letters) == dead.total
    assert kinds.get("too_large_for_transport", 0) > 0  # tight enough to hit some trades
    by_kind = {letter.kind: letter for letter in letters}
    assert by_kind["malformed_json"].raw == b"{not json"
    assert by_kind["invalid_utf8"].raw == bad[1]  # invalid UTF-8 kept byte-exact


def test_record_then_replay_round_trips_byte_exact(tmp_path: Path) -> None:
    frames = market_frames(3000, types=["trade", "aggTrade", "kline_1m", "ticker", "bookTicker"])
    rec = tmp_path / "rec.jsonl.gz"
    live_pub, live_dead = CollectingPublisher(), DeadLetters("t")
    with RecordingWriter(rec) as writer:
        pipe = binance_producer(live_pub, live_dead, recorder=writer)
        for f in frames:
            pipe.handle(Frame(f.recv_ns, f.raw.encode()))  # live frames arrive as bytes
        pipe.handle(Frame(frames[-1].recv_ns, b"{broken"))
        pipe.handle(Frame(frames[-1].recv_ns, b'{"stream":"btcusdt@trade","data":"\xff"}'))
    assert [r.raw for r in read_recording(rec)][:-2] == [f.raw for f in frames]
    replay_pub, replay_dead = CollectingPublisher(), DeadLetters("t")
    replay = binance_producer(replay_pub, replay_dead)
    drive(replay, replayed_at_speed(read_recording(rec), 0.0), StopAfter())
    assert replay_dead.counts == live_dead.counts == {"malformed_json": 1, "invalid_utf8": 1}
    # not UTF-8: kept byte for byte in the recording, and in the dead letters of both runs
    assert replay_dead.kept[-1].raw == live_dead.kept[-1].raw == (
        b'{"stream":"btcusdt@trade","data":"\xff"}')

    def view(pub: CollectingPublisher) -> list[tuple[object, ...]]:
        return [(e.topic, e.key, e.value, e.headers, e.event_time_ns, e.seq) for e in pub.messages]

    assert view(replay_pub) == view(live_pub)


def test_max_messages_stops_exactly() -> None:
    pub = CollectingPublisher()
    stop = StopAfter(max_messages=1234)
    pipe = binance_producer(pub, limit=1234)
    market = SyntheticMarket(["btcusdt"], seed=1)
    drive(pipe, market.frames(), stop, check_every=CHECK_EVERY)
    assert pipe.published == 1234 == len(pub.messages) and stop.event.is_set()


def test_synthetic_is_deterministic_under_a_seed() -> None:
    a = [f.raw for f in market_frames(3000, seed=11)]
    b = [f.raw for f in market_frames(3000, seed=11)]
    c = [f.raw for f in market_frames(3000, seed=12)]
    assert a == b != c


def test_synthetic_trade_statistics_match_measured_flow() -> None:
    market = SyntheticMarket(["btcusdt"], ["trade"], seed=5, start_ms=START_MS)
    trades = [orjson.loads(f.raw) for f in itertools.islice(market.frames(), 60_000)]
    data = [t["data"] for t in trades]
    assert all(130 <= len(f) <= 200 for f in (orjson.dumps(t) for t in trades[:1000]))
    ids = [d["t"] for d in data]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    span_s = (data[-1]["E"] - data[0]["E"]) / 1000
    assert 20 < len(data) / span_s < 45  # ~30 trades/s mean
    assert max(Counter(d["E"] for d in data).values()) >= 100  # bursts share one ms
    qty = sorted(float(d["q"]) for d in data)
    assert 0.0004 < statistics.median(qty) < 0.001
    assert 0.15 < qty[int(len(qty) * 0.99)] < 0.6
    assert 0.5 < sum(d["m"] for d in data) / len(data) < 0.58
    assert all(0 <= d["E"] - d["T"] <= 2 for d in data)


def test_unpaced_runs_in_lists_publish_and_dead_letter_what_frame_by_frame_does() -> None:
    """``drive`` with ``check_every`` > 1 hands frames to ``Producer.handle_many`` in lists;
    the messages, their numbers and the dead letters (bad frames, values over the transport's
    limit) are the ones frame-by-frame handling gives."""
    frames = market_frames(3000, types=["trade", "aggTrade", "ticker", "bookTicker"])
    frames[100:100] = [Frame(frames[99].recv_ns, b"{not json")]
    frames[2000:2000] = [Frame(frames[1999].recv_ns, '{"stream":"x@trade","data":{"e":"trade"}}')]
    runs = []
    for check_every in (1, CHECK_EVERY):
        pub, dead = CollectingPublisher(max_message_bytes=150), DeadLetters("t")
        pipe = binance_producer(pub, dead)
        drive(pipe, iter(frames), StopAfter(), check_every=check_every)
        view = [(e.topic, e.key, e.value, e.headers, e.event_time_ns, e.seq) for e in pub.messages]
        runs.append((view, dict(dead.counts), [d.raw for d in dead.kept], pipe.counters()))
    assert runs[1] == runs[0]
    assert runs[0][1]["too_large_for_transport"] > 0 and runs[0][1]["malformed_json"] == 1
