"""The local order book follows Binance's documented procedure on exchange-shaped depth frames.

Frames go the way they go in production: wire JSON -> the producer's validation -> the published
value -> the stage's decoder -> ``LocalBook``. Ids and prices look like BTCUSDT's.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import orjson
import pytest

from core.dead_letters import DeadLetters
from processors.depth_parsing import decode_depth
from processors.order_book import DepthDiff, DepthSnapshot, LocalBook, Outcome
from producers.binance.schema import MarketEvent, parse_frame
from stages.depth import DepthStage, books_from_state
from transports import Envelope

E0 = 1_723_456_789_000


def px(ticks: int) -> str:
    return f"{ticks / 100:.8f}"


def diff_frame(first: int, final: int, e_ms: int, bids=(), asks=(), symbol="BTCUSDT") -> bytes:
    data = {
        "e": "depthUpdate", "E": e_ms, "s": symbol, "U": first, "u": final,
        "b": [[px(p), f"{q:.8f}"] for p, q in bids],
        "a": [[px(p), f"{q:.8f}"] for p, q in asks],
    }  # fmt: skip
    return orjson.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data})


def snapshot_frame(last: int, bids, asks, symbol="BTCUSDT") -> bytes:
    data = {
        "lastUpdateId": last,
        "bids": [[px(p), f"{q:.8f}"] for p, q in bids],
        "asks": [[px(p), f"{q:.8f}"] for p, q in asks],
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@depthSnapshot", "data": data})


def published(raw: bytes, recv_ms: int = E0) -> tuple[str, bytes, int]:
    """(topic, value, event time ms) exactly as the producer publishes the frame."""
    event = parse_frame(raw, recv_ms)
    assert isinstance(event, MarketEvent), event
    time_ms = event.event_time_ms if event.event_time_ms is not None else recv_ms
    return event.topic, orjson.dumps(event.data), time_ms


def decoded(raw: bytes) -> DepthDiff | DepthSnapshot:
    _, value, time_ms = published(raw)
    return decode_depth(value, time_ms)


BIDS = [(6_000_000, 1.5), (5_999_999, 0.2), (5_999_990, 3.0)]
ASKS = [(6_000_001, 0.7), (6_000_005, 1.1)]


def synced_book(last: int = 1000) -> LocalBook:
    book = LocalBook("BTCUSDT")
    assert book.on_snapshot(decoded(snapshot_frame(last, BIDS, ASKS))) is Outcome.SYNCED
    return book


def test_buffered_diffs_then_a_snapshot_they_straddle() -> None:
    book = LocalBook("BTCUSDT")
    frames = [
        diff_frame(995, 999, E0, bids=[(5_999_999, 9.0)]),  # u <= lastUpdateId: dropped
        diff_frame(1000, 1004, E0 + 100, bids=[(6_000_000, 2.5)]),  # straddles 1001
        diff_frame(1005, 1010, E0 + 200, asks=[(6_000_001, 0.0)]),  # removes the best ask
    ]
    for f in frames:
        assert book.on_diff(decoded(f)) is Outcome.BUFFERED
    assert book.on_snapshot(decoded(snapshot_frame(1001, BIDS, ASKS))) is Outcome.SYNCED
    assert book.synced and book.last_update_id == 1010
    assert book.book.top_bids(2) == [(60000.0, 2.5), (59999.99, 0.2)]  # 9.0 never applied
    assert book.book.top_asks(5) == [(60000.05, 1.1)]
    assert book.counters.applied == 2 and book.counters.gaps == 0


def test_snapshot_older_than_the_buffer_waits_for_the_next() -> None:
    book = LocalBook("BTCUSDT")
    book.on_diff(decoded(diff_frame(1200, 1204, E0)))
    assert book.on_snapshot(decoded(snapshot_frame(1100, BIDS, ASKS))) is Outcome.SNAPSHOT_TOO_OLD
    assert not book.synced and book.counters.snapshots_too_old == 1
    assert book.on_snapshot(decoded(snapshot_frame(1202, BIDS, ASKS))) is Outcome.SYNCED
    assert book.last_update_id == 1204


def test_first_diff_must_straddle_the_snapshot() -> None:
    book = synced_book(1000)  # nothing buffered: the next diff must contain 1001
    assert book.on_diff(decoded(diff_frame(1003, 1005, E0))) is Outcome.GAP
    assert book.counters.gaps == 1 and not book.synced


def test_gap_discards_the_book_and_a_snapshot_resyncs_it() -> None:
    book = synced_book(1000)
    assert book.on_diff(decoded(diff_frame(1001, 1003, E0))) is Outcome.APPLIED
    assert book.on_diff(decoded(diff_frame(1004, 1004, E0))) is Outcome.APPLIED  # U == u + 1
    assert book.on_diff(decoded(diff_frame(1010, 1012, E0, bids=[(6_000_000, 4.0)]))) is (
        Outcome.GAP
    )
    assert not book.synced and book.book.bids == {} and book.counters.gaps == 1
    assert book.on_diff(decoded(diff_frame(1013, 1015, E0))) is Outcome.BUFFERED
    # a snapshot at 1011 keeps the gap diff (u=1012) and the one after it
    assert book.on_snapshot(decoded(snapshot_frame(1011, BIDS, ASKS))) is Outcome.SYNCED
    assert book.last_update_id == 1015 and book.book.bids[60000.0] == 4.0
    assert book.counters.resyncs == 1 and book.counters.syncs == 2


def test_stale_and_overlapping_diffs() -> None:
    book = synced_book(1000)
    book.on_diff(decoded(diff_frame(1001, 1010, E0)))
    assert book.on_diff(decoded(diff_frame(1005, 1009, E0))) is Outcome.STALE
    assert book.on_diff(decoded(diff_frame(1008, 1012, E0))) is Outcome.APPLIED  # overlap
    assert book.counters.stale == 1 and book.counters.overlaps == 1 and book.counters.gaps == 0


def test_synced_book_ignores_a_periodic_snapshot() -> None:
    book = synced_book(1000)
    book.on_diff(decoded(diff_frame(1001, 1002, E0, bids=[(6_000_000, 9.0)])))
    assert book.on_snapshot(decoded(snapshot_frame(1001, BIDS, ASKS))) is Outcome.SNAPSHOT_IGNORED
    assert book.book.bids[60000.0] == 9.0


def test_crossed_book_is_detected_once_per_episode() -> None:
    book = synced_book(1000)
    book.on_diff(decoded(diff_frame(1001, 1001, E0, bids=[(6_000_001, 0.1)])))  # bid == ask
    assert book.is_crossed and book.counters.crossed == 1
    book.on_diff(decoded(diff_frame(1002, 1002, E0, bids=[(6_000_002, 0.1)])))
    assert book.counters.crossed == 1  # still the same crossed episode
    book.on_diff(decoded(diff_frame(1003, 1003, E0, bids=[(6_000_001, 0), (6_000_002, 0)])))
    assert not book.is_crossed
    book.on_diff(decoded(diff_frame(1004, 1004, E0, asks=[(5_999_000, 1.0)])))
    assert book.is_crossed and book.counters.crossed == 2


def test_removing_an_unknown_level_is_normal() -> None:
    book = synced_book(1000)
    assert book.on_diff(decoded(diff_frame(1001, 1001, E0, bids=[(1, 0.0)]))) is Outcome.APPLIED
    assert len(book.book.bids) == 3


def test_state_round_trip_keeps_levels_ids_buffer_and_counters() -> None:
    book = synced_book(1000)
    book.on_diff(decoded(diff_frame(1001, 1001, E0, bids=[(6_000_001, 0.1)])))
    book.on_diff(decoded(diff_frame(1005, 1006, E0)))  # gap: buffered for the next snapshot
    copy = LocalBook.from_state(orjson.loads(orjson.dumps(book.export_state())))
    assert copy.export_state() == book.export_state()
    book = synced_book(1000)
    copy = LocalBook.from_state(orjson.loads(orjson.dumps(book.export_state())))
    assert copy.book.bids == book.book.bids and copy.book.ask_prices == book.book.ask_prices


def env(raw: bytes, seq: int) -> Envelope:
    topic, value, time_ms = published(raw)
    return Envelope(topic=topic, value=value, key=b"BTCUSDT", headers=(), producer_id="p",
                    seq=seq, event_time_ns=time_ms * 1_000_000, publish_time_ns=0,
                    receive_time_ns=0, partition=0, offset=seq)  # fmt: skip


def stage_input() -> list[Envelope]:
    frames = [diff_frame(990, 1000, E0 + 50)]  # before the snapshot: buffered, then dropped
    frames.append(snapshot_frame(1000, BIDS, ASKS))
    update = 1000
    for i in range(40):  # four seconds of depth@100ms
        bids = [(6_000_000 - i % 3, 1.0 + i)]
        frames.append(diff_frame(update + 1, update + 2, E0 + 100 * (i + 1), bids=bids))
        update += 2
        if i == 25:
            update += 5  # the transport lost a diff: gap, unsynced until the next snapshot
        if i == 31:
            frames.append(snapshot_frame(update, BIDS, ASKS))
    return [env(f, i) for i, f in enumerate(frames)]


def test_depth_stage_rows_per_second_with_gap_and_resync() -> None:
    stage = DepthStage(DeadLetters("t"))
    envs = stage_input()
    rows = list(stage.process(envs)["depth_1s"]) + list(stage.finish()["depth_1s"])
    table = np.array(rows, dtype=stage.tables()["depth_1s"])
    assert table["time_ms"].tolist() == [E0 - E0 % 1000 + 1000 * k for k in range(5)]
    assert table["synced"].tolist() == [True, True, False, True, True]
    assert table["gaps"].tolist() == [0, 0, 1, 1, 1] and table["resyncs"][-1] == 1
    first = table[0]
    assert first["bid_px"][0] == 60000.0 and first["ask_px"][0] == 60000.01
    assert math.isnan(first["ask_px"][2]) and first["ask_levels"] == 2  # NaN-padded
    assert np.isnan(table[2]["bid_px"]).all()  # an unsynced book shows no levels
    assert table["last_update_id"][-1] == stage.books["BTCUSDT"].last_update_id


@pytest.mark.parametrize("cut", [1, 7, 27, 30, 33])
def test_depth_stage_restored_from_a_checkpoint_equals_a_clean_run(cut: int) -> None:
    envs = stage_input()
    clean = DepthStage(DeadLetters("t"))
    want = list(clean.process(envs)["depth_1s"]) + list(clean.finish()["depth_1s"])
    first = DepthStage(DeadLetters("t"))
    got = list(first.process(envs[:cut]).get("depth_1s", []))
    second = DepthStage(DeadLetters("t"))
    second.restore(first.snapshot())
    got += list(second.process(envs[cut:]).get("depth_1s", [])) + list(
        second.finish()["depth_1s"]
    )
    dtype = clean.tables()["depth_1s"]
    assert len(got) == len(want) == 5
    assert np.array(got, dtype).tobytes() == np.array(want, dtype).tobytes()  # NaN == NaN
    assert books_from_state(second.snapshot())["BTCUSDT"].export_state() == (
        clean.books["BTCUSDT"].export_state()
    )


def test_depth_stage_dead_letters_bad_payloads() -> None:
    dead = DeadLetters("t")
    stage = DepthStage(dead)
    good = env(diff_frame(1, 2, E0), 0)
    values = [
        b'{"e":"depthUpdate","s":"BTCUSDT","U":3,"u":2,"E":1,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":2,"E":1,"b":[["NaN","1"]],"a":[]}',
        b'{"e":"depthSnapshot","s":"BTCUSDT","lastUpdateId":5,'
        b'"bids":[["1.0","1"],["2.0","1"]],"asks":[]}',
        b"{oops",
    ]
    bad = [dataclasses.replace(good, value=v) for v in values]
    stage.process([good, *bad])
    assert dead.counts == {"bad_value": 3, "malformed_json": 1}


def test_depth_stage_refuses_messages_on_the_wrong_topic() -> None:
    dead = DeadLetters("t")
    stage = DepthStage(dead)
    diff = env(diff_frame(1, 2, E0), 0)
    partial = env(orjson.dumps({"stream": "btcusdt@depth5", "data": {
        "lastUpdateId": 2, "bids": [["1.00", "1"]], "asks": [["2.00", "1"]]}}), 1)
    assert partial.topic == "binance.depthPartial"
    stage.process([dataclasses.replace(diff, topic="binance.depthPartial"),
                   dataclasses.replace(partial, topic="binance.depth")])
    assert dead.counts == {"unknown_event": 2} and not stage.books and not stage.partials
