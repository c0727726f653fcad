"""Loss, duplicates and reorders are counted exactly from sequence numbers."""

from __future__ import annotations

import random
from itertools import pairwise

from transports.sequence import (
    SequenceTracker,
    complement,
    intersect,
    intersect_all,
    size,
    split_tail,
    union,
)


def test_in_order_stream_has_nothing_to_report() -> None:
    tracker = SequenceTracker()
    for seq in range(1000):
        tracker.observe("p", "t", seq)
    report = tracker.report()
    assert (report.received, report.lost, report.duplicates, report.reordered) == (1000, 0, 0, 0)


def test_gaps_duplicates_reorders_and_a_lost_tail() -> None:
    tracker = SequenceTracker()
    for seq in [0, 1, 4, 2, 4, 6]:
        tracker.observe("p", "t", seq)
    tracker.expect_total("p", "t", 9)  # 7 and 8 never arrived
    report = tracker.report()
    assert report.lost == 4  # 3, 5, 7, 8
    assert tracker.missing("p", "t") == [3, 5, 7, 8]
    assert report.duplicates == 1
    assert report.reordered == 1


def test_random_drops_are_counted_exactly_per_stream() -> None:
    rng = random.Random(7)
    tracker = SequenceTracker()
    kept = 0
    for producer in ("a", "b"):
        for topic in ("x", "y"):
            for seq in range(5000):
                if rng.random() < 0.9:
                    tracker.observe(producer, topic, seq)
                    kept += 1
            tracker.expect_total(producer, topic, 5000)
    report = tracker.report()
    assert report.streams == 4
    assert report.lost == 4 * 5000 - kept


def test_unsequenced_messages_are_counted_not_tracked() -> None:
    tracker = SequenceTracker()
    tracker.observe("p", "t", -1)
    assert tracker.report().unsequenced == 1
    assert tracker.report().streams == 0


def test_merging_load_balanced_views() -> None:
    left, right = SequenceTracker(), SequenceTracker()
    for seq in range(10):
        (left if seq % 2 else right).observe("p", "t", seq)
    right.observe("p", "t", 3)  # delivered to both workers
    left.merge(right)
    left.expect_total("p", "t", 12)
    report = left.report()
    assert report.lost == 2
    assert report.duplicates == 1


def test_a_huge_jump_is_one_range_not_a_huge_set() -> None:
    """One corrupted or hostile sequence number must not exhaust memory: gaps are ranges."""
    tracker = SequenceTracker()
    for seq in (0, 1, 10**12, 5, 10**12 + 2):
        tracker.observe("p", "t", seq)
    report = tracker.report()
    assert report.lost == 10**12 - 2 - 1 + 1  # 2..10**12-1 except 5, and 10**12+1
    assert report.reordered == 1
    assert tracker.missing_ranges("p", "t") == [(2, 4), (6, 10**12 - 1), (10**12 + 1, 10**12 + 1)]
    tracker.observe("p", "t", 5)
    assert tracker.report().duplicates == 1


def test_merging_views_with_huge_gaps_stays_in_ranges() -> None:
    left, right = SequenceTracker(), SequenceTracker()
    for seq in (0, 2, 10**12):
        left.observe("p", "t", seq)
    for seq in (1, 2, 3):
        right.observe("p", "t", seq)
    left.merge(right)
    assert left.missing_ranges("p", "t") == [(4, 10**12 - 1)]
    assert left.report().duplicates == 1  # 2 reached both views
    assert left.report().received == 6


def test_random_streams_match_a_set_based_reference() -> None:
    """Gaps as ranges give the same counts as the obvious set-of-numbers bookkeeping."""
    rng = random.Random(11)
    for _ in range(50):
        tracker, seen, dups, reorders = SequenceTracker(), set(), 0, 0
        highest = -1
        for _ in range(200):
            seq = rng.randrange(0, 300)
            tracker.observe("p", "t", seq)
            if seq in seen:
                dups += 1
            elif seq < highest:
                reorders += 1
            seen.add(seq)
            highest = max(highest, seq)
        report = tracker.report()
        assert report.lost == len(set(range(highest + 1)) - seen)
        assert tracker.missing("p", "t") == sorted(set(range(highest + 1)) - seen)
        assert (report.duplicates, report.reordered) == (dups, reorders)


def test_a_flood_of_producer_ids_is_bounded_counted_and_keeps_the_real_stream() -> None:
    """Issue 18 item 10: 100 k distinct producer ids made processing ~10x slower and the file
    ~10x larger (every stream is checkpointed every flush). Past the cap the least recently
    seen streams go; their missing numbers stay counted, the evictions are reported, and a
    stream in steady use survives the flood."""
    from stages.runner import join_state
    from transports.base import Envelope

    tracker = SequenceTracker(max_streams=1000)
    real = 0
    for i in range(100_000):
        tracker.observe_many([Envelope("binance.trade", b"", producer_id=f"h{i}", seq=5)])
        if i % 50 == 0:  # the honest producer keeps sending in between
            tracker.observe("honest", "binance.trade", real)
            real += 1
    report = tracker.report()
    assert report.streams <= 1000
    assert report.evicted == 100_001 - report.streams
    assert report.lost == 5 * 100_000  # every hostile stream claimed 0..4 were lost
    assert tracker.has_stream("honest", "binance.trade")
    assert tracker.missing_count("honest", "binance.trade") == 0
    state = join_state(b"{}", tracker, {})
    assert len(state) < 200_000  # one checkpoint: bounded by the cap, not by the flood


def test_range_arithmetic_matches_sets_and_never_expands() -> None:
    rng = random.Random(5)
    for _ in range(200):
        a = union((x, x + rng.randrange(4)) for x in rng.sample(range(60), 8))
        b = union((x, x + rng.randrange(4)) for x in rng.sample(range(60), 8))

        def numbers(ranges: list[tuple[int, int]]) -> set[int]:
            return {n for first, last in ranges for n in range(first, last + 1)}

        assert numbers(intersect(a, b)) == numbers(a) & numbers(b)
        assert numbers(complement(a, 10, 50)) == set(range(10, 51)) - numbers(a)
        assert size(a) == len(numbers(a))
        assert a == sorted(a) and all(x[1] + 1 < y[0] for x, y in pairwise(a))
    huge = [(0, 10**12), (10**13, 10**14)]
    assert size(intersect_all([huge, [(5, 10**13)]])) == 10**12 - 4 + 1
    assert complement(huge, 0, 10**14 + 1) == [(10**12 + 1, 10**13 - 1), (10**14 + 1, 10**14 + 1)]
    assert split_tail([(3, 4), (8, 9)], total=10) == (2, 2)
    assert split_tail([(3, 4)], total=10) == (2, 0)


def test_received_ranges_are_the_complement_of_the_gaps() -> None:
    tracker = SequenceTracker()
    for seq in (0, 1, 10**12, 7):
        tracker.observe("p", "t", seq)
    assert tracker.received_ranges("p", "t") == [(0, 1), (7, 7), (10**12, 10**12)]
    assert tracker.received_ranges("q", "t") == []
