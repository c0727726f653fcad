"""Exact loss / duplicate / reorder accounting from per-producer, per-topic sequence numbers.

A transport that drops silently (ZeroMQ PUB/SUB over its high-water mark) becomes one that drops
*countably*: every sequence number a receiver never saw is a lost message, every one it saw twice
is a duplicate. A number that fills an earlier gap is a reorder, not a loss.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class Sequenced(Protocol):
    """What ``observe_many`` reads from each message (an ``Envelope`` fits)."""

    @property
    def producer_id(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def seq(self) -> int: ...


@dataclass(slots=True)
class _Stream:
    highest: int = -1
    missing: set[int] = field(default_factory=set)
    received: int = 0
    duplicates: int = 0
    reordered: int = 0


@dataclass(frozen=True, slots=True)
class SequenceReport:
    received: int
    lost: int
    duplicates: int
    reordered: int
    streams: int
    unsequenced: int

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "streams": self.streams,
            "unsequenced": self.unsequenced,
        }


class SequenceTracker:
    """Tracks (producer_id, topic) streams; ``lost`` is exact once the producer has finished.

    Before the end of a run a gap may still be a reorder in flight; ``report()`` counts it as
    lost until the missing number arrives. Missing numbers are kept in a set, so memory grows
    with the number of *outstanding* gaps, not with traffic.
    """

    __slots__ = ("_streams", "unsequenced")

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.unsequenced = 0

    def observe(self, producer_id: str, topic: str, seq: int) -> None:
        if seq < 0:
            self.unsequenced += 1
            return
        stream = self._streams.get((producer_id, topic))
        if stream is None:
            stream = self._streams[(producer_id, topic)] = _Stream()
        stream.received += 1
        highest = stream.highest
        if seq == highest + 1:
            stream.highest = seq
        elif seq > highest:
            stream.missing.update(range(highest + 1, seq))
            stream.highest = seq
        elif seq in stream.missing:
            stream.missing.discard(seq)
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
            stream = self._streams[(producer_id, topic)] = _Stream()
        if total - 1 > stream.highest:
            stream.missing.update(range(stream.highest + 1, total))
            stream.highest = total - 1

    def missing(self, producer_id: str, topic: str) -> list[int]:
        stream = self._streams.get((producer_id, topic))
        return sorted(stream.missing) if stream else []

    def missing_by_stream(self) -> dict[tuple[str, str], set[int]]:
        """(producer_id, topic) -> sequence numbers not (yet) received; copies, safe to keep."""
        return {k: set(s.missing) for k, s in self._streams.items() if s.missing}

    def export_streams(self) -> list[tuple[str, str, int, list[int]]]:
        """(producer_id, topic, highest seq, sorted missing) per stream, for a checkpoint."""
        return [(p, t, s.highest, sorted(s.missing)) for (p, t), s in self._streams.items()]

    def restore_stream(
        self, producer_id: str, topic: str, highest: int, missing: list[int]
    ) -> None:
        """Continue a stream from a checkpoint, so a restarted receiver counts only new gaps."""
        stream = self._streams[(producer_id, topic)] = _Stream()
        stream.highest = highest
        stream.missing = set(missing)

    def merge(self, other: SequenceTracker) -> None:
        """Combine load-balanced subscribers' views: a gap in one may be filled by another."""
        self.unsequenced += other.unsequenced
        for (pid, topic), theirs in other._streams.items():
            mine = self._streams.get((pid, topic))
            if mine is None:
                mine = self._streams[(pid, topic)] = _Stream()
            seen_mine = set(range(mine.highest + 1)) - mine.missing
            seen_theirs = set(range(theirs.highest + 1)) - theirs.missing
            both = seen_mine & seen_theirs
            mine.duplicates += theirs.duplicates + len(both)
            mine.reordered += theirs.reordered
            mine.received += theirs.received
            mine.highest = max(mine.highest, theirs.highest)
            mine.missing = set(range(mine.highest + 1)) - seen_mine - seen_theirs

    def report(self) -> SequenceReport:
        streams = self._streams.values()
        return SequenceReport(
            received=sum(s.received for s in streams),
            lost=sum(len(s.missing) for s in streams),
            duplicates=sum(s.duplicates for s in streams),
            reordered=sum(s.reordered for s in streams),
            streams=len(self._streams),
            unsequenced=self.unsequenced,
        )
