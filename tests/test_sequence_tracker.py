"""Loss, duplicates and reorders are counted exactly from sequence numbers."""

from __future__ import annotations

import random

from transports.sequence import SequenceTracker


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
