"""Exact loss / duplicate / reorder accounting from per-producer, per-topic sequence numbers.

A transport that drops silently (ZeroMQ PUB/SUB over its high-water mark) becomes one that drops
*countably*: every sequence number a receiver never saw is a lost message, every one it saw twice
is a duplicate. A number that fills an earlier gap is a reorder, not a loss.

Every count here works on inclusive ranges ``(first, last)`` of numbers, never on sets of them,
so one corrupted or hostile sequence number 10**12 ahead costs one range, not memory for every
number skipped. The receivers (``SequenceTracker``), the load harness (several consumers' views
of one stream) and the chaos experiments (what a file holds against what was sent) all count
with these functions.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Protocol

#: An inclusive range of sequence numbers ``(first, last)``.
Range = tuple[int, int]


class Sequenced(Protocol):
    """What ``observe_many`` reads from each message (an ``Envelope`` fits)."""

    @property
    def producer_id(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def seq(self) -> int: ...


def size(ranges: Iterable[Range]) -> int:
    """How many numbers the (disjoint) ranges hold."""
    return sum(last - first + 1 for first, last in ranges)


def union(ranges: Iterable[Range]) -> list[Range]:
    """Ranges in any order, overlapping or adjacent, as sorted disjoint ranges."""
    out: list[Range] = []
    for first, last in sorted(ranges):
        if first > last:
            continue
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def intersect(a: Sequence[Range], b: Sequence[Range]) -> list[Range]:
    """Numbers in both; each side sorted and disjoint."""
    out: list[Range] = []
    i = j = 0
    while i < len(a) and j < len(b):
        first, last = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if first <= last:
            out.append((first, last))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def intersect_all(views: Sequence[Sequence[Range]]) -> list[Range]:
    """Numbers in every view (e.g. missing for every load-balanced consumer: missing at all)."""
    if not views:
        return []
    return reduce(intersect, views[1:], list(views[0]))


def complement(ranges: Sequence[Range], first: int, last: int) -> list[Range]:
    """Numbers in ``first..last`` that the sorted, disjoint ``ranges`` do not hold."""
    out: list[Range] = []
    start = first
    for a, b in ranges:
        if b < start:
            continue
        if a > last:
            break
        if a > start:
            out.append((start, a - 1))
        start = b + 1
    if start <= last:
        out.append((start, last))
    return out


def split_tail(missing: Sequence[Range], total: int) -> tuple[int, int]:
    """(missing below the highest number received, the missing tail) of a stream of ``total``.

    The tail is what was still in flight at the end: a durable transport keeps it for a later
    read, a non-durable one discards it. A gap below a received number was dropped."""
    held = size(missing)
    if missing and missing[-1][1] == total - 1:
        tail = missing[-1][1] - missing[-1][0] + 1
        return held - tail, tail
    return held, 0


class Gaps:
    """Missing sequence numbers as sorted, disjoint, inclusive ranges ``[first, last]``.

    Memory grows with the number of gaps, not their size: one corrupted or hostile sequence
    number 10**12 above the last one is one range (a set of the numbers would exhaust memory).
    New gaps only ever start above every existing one (they open when a stream jumps forward);
    a late arrival splits the range holding it.
    """

    __slots__ = ("count", "ranges")

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self.ranges: list[Range] = []
        self.count = 0  #: how many numbers are missing
        for first, last in ranges:
            self.add(first, last)

    def add(self, first: int, last: int) -> None:
        """Mark ``first..last`` missing; it must lie above every range already held."""
        if first > last:
            return
        ranges = self.ranges
        self.count += last - first + 1
        if ranges:
            prev_first, prev_last = ranges[-1]
            if prev_last >= first:
                raise ValueError(f"gap {first}..{last} overlaps {prev_first}..{prev_last}")
            if prev_last + 1 == first:
                ranges[-1] = (prev_first, last)
                return
        ranges.append((first, last))

    def discard(self, seq: int) -> bool:
        """Remove ``seq`` if it is missing; say whether it was."""
        ranges = self.ranges
        index = bisect_right(ranges, (seq, _MAX)) - 1
        if index < 0:
            return False
        first, last = ranges[index]
        if seq > last:
            return False
        pieces = [(a, b) for a, b in ((first, seq - 1), (seq + 1, last)) if a <= b]
        ranges[index : index + 1] = pieces
        self.count -= 1
        return True

    def numbers(self) -> list[int]:
        """Every missing number (for small gaps: tests, reports of a short run)."""
        return [n for first, last in self.ranges for n in range(first, last + 1)]


_MAX = 2**63
#: Streams (producer id, topic) a tracker keeps; a run has a handful per producer, and a
#: producer restart adds a new id, so this is ample for any honest deployment.
DEFAULT_MAX_STREAMS = 4096


@dataclass(slots=True)
class _Stream:
    highest: int = -1
    missing: Gaps = field(default_factory=Gaps)
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    #: Seen again since it was created or the eviction scan last passed (second-chance LRU,
    #: see ``SequenceTracker``): a stream seen once, as a flood of invented ids is, goes first.
    used: bool = False


@dataclass(frozen=True, slots=True)
class SequenceReport:
    received: int
    lost: int
    duplicates: int
    reordered: int
    streams: int
    unsequenced: int
    evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "streams": self.streams,
            "unsequenced": self.unsequenced,
            "evicted": self.evicted,
        }


class SequenceTracker:
    """Tracks (producer_id, topic) streams; ``lost`` is exact once the producer has finished.

    Before the end of a run a gap may still be a reorder in flight; ``report()`` counts it as
    lost until the missing number arrives. Missing numbers are kept as ranges (``Gaps``), so
    memory grows with the number of *outstanding* gaps, not with traffic or gap sizes.

    At most ``max_streams`` streams are kept: a sender inventing producer ids (each one a
    stream, checkpointed every flush) would otherwise make every checkpoint and gap scan
    larger without bound. Past the cap the least recently seen stream is dropped (a
    second-chance scan, so the hot path only sets a flag; a stream seen only once goes before
    any stream in use); its missing numbers stay counted in
    ``lost``, and ``evictions`` counts the streams dropped. A dropped stream that comes back
    starts over: numbers below its return count as a new gap.
    """

    __slots__ = ("_streams", "evicted_lost", "evictions", "max_streams", "unsequenced")

    def __init__(self, max_streams: int = DEFAULT_MAX_STREAMS) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.unsequenced = 0
        self.max_streams = max_streams
        self.evictions = 0
        self.evicted_lost = 0

    def _new_stream(self, key: tuple[str, str]) -> _Stream:
        streams = self._streams
        if len(streams) >= self.max_streams:
            self._evict()
        stream = streams[key] = _Stream()
        return stream

    def _evict(self) -> None:
        streams = self._streams
        while True:
            key = next(iter(streams))
            stream = streams.pop(key)
            if not stream.used:
                self.evictions += 1
                self.evicted_lost += stream.missing.count
                return
            stream.used = False
            streams[key] = stream  # second chance: to the back of the queue

    def observe(self, producer_id: str, topic: str, seq: int) -> None:
        if seq < 0:
            self.unsequenced += 1
            return
        stream = self._streams.get((producer_id, topic))
        if stream is None:
            stream = self._new_stream((producer_id, topic))
        else:
            stream.used = True
        stream.received += 1
        highest = stream.highest
        if seq == highest + 1:
            stream.highest = seq
        elif seq > highest:
            stream.missing.add(highest + 1, seq - 1)
            stream.highest = seq
        elif stream.missing.discard(seq):
            stream.reordered += 1
        else:
            stream.duplicates += 1

    def observe_many(self, messages: Iterable[Sequenced]) -> None:
        """``observe`` for a batch, with a fast path for the common case: the next number of
        the same stream as the message before. Anything else goes through ``observe``."""
        observe = self.observe
        streams = self._streams
        stream: _Stream | None = None
        pid: str | None = None
        topic = ""
        highest = 0
        run = 0  # in-order messages not yet written back to ``stream``
        for msg in messages:
            seq = msg.seq
            if seq == highest + 1 and msg.producer_id == pid and msg.topic == topic:
                highest = seq
                run += 1
                continue
            if run:
                stream.highest = highest  # type: ignore[union-attr]
                stream.received += run  # type: ignore[union-attr]
                run = 0
            pid, topic = msg.producer_id, msg.topic
            observe(pid, topic, seq)
            if seq < 0:
                pid = None
            else:
                stream = streams[(pid, topic)]
                highest = stream.highest
        if run:
            stream.highest = highest  # type: ignore[union-attr]
            stream.received += run  # type: ignore[union-attr]

    def expect_total(self, producer_id: str, topic: str, total: int) -> None:
        """Declare how many messages a producer sent, so a lost *tail* counts as lost too."""
        stream = self._streams.get((producer_id, topic))
        if stream is None:
            stream = self._new_stream((producer_id, topic))
        if total - 1 > stream.highest:
            stream.missing.add(stream.highest + 1, total - 1)
            stream.highest = total - 1

    def has_stream(self, producer_id: str, topic: str) -> bool:
        return (producer_id, topic) in self._streams

    def missing_count(self, producer_id: str, topic: str) -> int:
        """How many numbers of one stream are missing (0 for a stream not held)."""
        stream = self._streams.get((producer_id, topic))
        return stream.missing.count if stream else 0

    def missing(self, producer_id: str, topic: str) -> list[int]:
        """Every missing number of one stream (expanded: for small gaps, e.g. in tests)."""
        stream = self._streams.get((producer_id, topic))
        return stream.missing.numbers() if stream else []

    def missing_ranges(self, producer_id: str, topic: str) -> list[Range]:
        """One stream's missing numbers as sorted inclusive ranges ``(first, last)``."""
        stream = self._streams.get((producer_id, topic))
        return list(stream.missing.ranges) if stream else []

    def received_ranges(self, producer_id: str, topic: str) -> list[Range]:
        """One stream's numbers that arrived (at least once), as sorted inclusive ranges."""
        stream = self._streams.get((producer_id, topic))
        return complement(stream.missing.ranges, 0, stream.highest) if stream else []

    def missing_by_stream(self) -> dict[tuple[str, str], list[Range]]:
        """(producer_id, topic) -> ranges not (yet) received; copies, safe to keep."""
        return {k: list(s.missing.ranges) for k, s in self._streams.items() if s.missing.count}

    def export_streams(self) -> list[tuple[str, str, int, list[Range]]]:
        """(producer_id, topic, highest seq, missing ranges) per stream, for a checkpoint."""
        return [(p, t, s.highest, list(s.missing.ranges)) for (p, t), s in self._streams.items()]

    def restore_stream(
        self, producer_id: str, topic: str, highest: int, missing: Iterable[Range]
    ) -> None:
        """Continue a stream from a checkpoint, so a restarted receiver counts only new gaps."""
        stream = self._streams.get((producer_id, topic)) or self._new_stream((producer_id, topic))
        stream.highest = highest
        stream.missing = Gaps(missing)

    def merge(self, other: SequenceTracker) -> None:
        """Combine load-balanced subscribers' views: a gap in one may be filled by another."""
        self.unsequenced += other.unsequenced
        self.evictions += other.evictions
        self.evicted_lost += other.evicted_lost
        for (pid, topic), theirs in other._streams.items():
            mine = self._streams.get((pid, topic))
            if mine is None:
                mine = self._new_stream((pid, topic))
            top = max(mine.highest, theirs.highest)
            # Not seen by one view = its gaps plus everything above its highest, up to ``top``
            # (an empty (top + 1, top) for the view that saw ``top``: size 0).
            unseen_mine = [*mine.missing.ranges, (mine.highest + 1, top)]
            unseen_theirs = [*theirs.missing.ranges, (theirs.highest + 1, top)]
            unseen_both = intersect(unseen_mine, unseen_theirs)
            seen_by_either = top + 1 - size(unseen_both)
            seen_mine = top + 1 - size(unseen_mine)
            seen_theirs = top + 1 - size(unseen_theirs)
            mine.duplicates += theirs.duplicates + seen_mine + seen_theirs - seen_by_either
            mine.reordered += theirs.reordered
            mine.received += theirs.received
            mine.highest = top
            mine.missing = Gaps(unseen_both)

    def report(self) -> SequenceReport:
        streams = self._streams.values()
        return SequenceReport(
            received=sum(s.received for s in streams),
            lost=sum(s.missing.count for s in streams) + self.evicted_lost,
            duplicates=sum(s.duplicates for s in streams),
            reordered=sum(s.reordered for s in streams),
            streams=len(self._streams),
            unsequenced=self.unsequenced,
            evicted=self.evictions,
        )
