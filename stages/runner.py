"""The consume -> process -> sink -> commit loop every processor stage shares.

A ``Stage`` turns batches of envelopes into rows per table; the runner owns the transport and the
HDF5 sink and enforces the order that makes a crash harmless on a replayable transport:

1. on start, reopen the file at its last complete checkpoint, restore the stage's state (open
   windows) from it and seek the subscriber to the positions stored with it;
2. append rows, and every ``flush_interval_s`` flush rows + positions + state in one checkpoint;
3. only then commit the transport offsets (a hint; the file's positions win on resume).

On ZeroMQ nothing can be re-read: the runner records every sequence gap in the ``gaps`` table so
the file says exactly what is missing.
"""

from __future__ import annotations

import abc
import json
import logging
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from core.dead_letters import DeadLetters
from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_schema import Gap
from transports import Envelope, Subscriber, TransportError, open_transport
from transports.base import SubscriberStats
from transports.sequence import SequenceTracker

log = logging.getLogger("stages.runner")

Rows = np.ndarray | list[Any]


class Stage(abc.ABC):
    """One processor: what it reads, what it writes, how a batch becomes rows."""

    name: str
    topics: tuple[str, ...]

    def __init__(self, dead_letters: DeadLetters) -> None:
        self.dead_letters = dead_letters

    @abc.abstractmethod
    def tables(self) -> Mapping[str, np.dtype]:
        """Every table the stage writes (SWMR needs them all declared up front)."""

    @abc.abstractmethod
    def process(self, batch: list[Envelope]) -> Mapping[str, Rows]:
        """Rows per table produced by this batch (closed windows, raw rows, late events)."""

    @abc.abstractmethod
    def finish(self) -> Mapping[str, Rows]:
        """Rows still held at a clean shutdown (open windows are closed and emitted)."""

    @abc.abstractmethod
    def snapshot(self) -> bytes:
        """State needed to continue exactly after a restart (JSON bytes, never pickle)."""

    @abc.abstractmethod
    def restore(self, state: bytes) -> None:
        """Load what ``snapshot`` returned (b'' means a fresh start)."""


@dataclass
class StageSummary:
    stage: str
    transport: str
    output: str
    received: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    #: receive -> durable in HDF5 (checkpoint written), ms percentiles over every message
    sink_hop_ms: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    flushes: int = 0
    resumed_from: dict[str, int] = field(default_factory=dict)
    #: partitions re-read from their start because the broker's log ended before the position
    log_resets: int = 0
    #: producer streams dropped from the sequence tracker at its cap (hostile or huge fan-in)
    sequence_evictions: int = 0
    #: producers that announced their end, and the numbers they announced that never came
    producers_ended: int = 0
    end_missing: int = 0
    #: True when every producer seen announced its end: ``lost`` then includes the tail.
    #: False means a lost tail (the last messages before a crash) cannot be seen here.
    lost_exact: bool = False
    #: why the stage stopped: end_of_streams, end_deadline, idle, duration, max_messages, signal
    stopped_by: str = ""
    #: broker offset commits that failed (broker restarting or failing over); the checkpoint in
    #: the file holds the positions, the next commit carries them
    commit_failures: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class SinkHop:
    """Time from a message's arrival to the checkpoint that made its rows durable.

    Kept per batch (one receive time, one count), so it costs nothing per message; recorded in
    an HdrHistogram in microseconds (values clamped into its range, which hdrh would drop).
    """

    MAX_US = 3_600_000_000

    def __init__(self) -> None:
        from hdrh.histogram import HdrHistogram

        self.histogram = HdrHistogram(1, self.MAX_US, 3)
        self._pending: list[tuple[int, int]] = []

    def received(self, batch: list[Envelope]) -> None:
        self._pending.append((batch[0].receive_time_ns, len(batch)))

    def flushed(self) -> None:
        done = time.time_ns()
        record = self.histogram.record_value
        for receive_ns, count in self._pending:
            us = min(max((done - receive_ns) // 1000, 1), self.MAX_US)
            record(us, count)
        self._pending.clear()

    def percentiles(self) -> dict[str, float]:
        h = self.histogram
        if h.get_total_count() == 0:
            return {}
        out = {f"p{p:g}": h.get_value_at_percentile(p) / 1000 for p in (50, 90, 99, 99.9)}
        out["max"] = h.get_max_value() / 1000
        return out


class GapRecorder:
    """Turns a SequenceTracker's missing ranges into ``gaps`` rows, each gap recorded once.

    A gap only ever opens above every number a stream has seen (late arrivals shrink old gaps,
    never open new ones), so remembering how far up each stream's gaps were recorded suffices.
    """

    def __init__(self) -> None:
        self._recorded_up_to: dict[tuple[str, str], int] = {}

    def prune(self, tracker: SequenceTracker) -> None:
        """Forget streams the tracker evicted, so this map is bounded by its cap too."""
        if len(self._recorded_up_to) > 2 * tracker.max_streams:
            self._recorded_up_to = {
                k: v for k, v in self._recorded_up_to.items() if tracker.has_stream(*k)
            }

    def mark_recorded(
        self, producer_id: str, topic: str, ranges: Iterable[tuple[int, int]]
    ) -> None:
        key = (producer_id, topic)
        for _, last in ranges:
            self._recorded_up_to[key] = max(self._recorded_up_to.get(key, -1), last)

    def new_gaps(self, tracker: SequenceTracker) -> list[Gap]:
        now = time.time_ns()
        gaps: list[Gap] = []
        for (pid, topic), ranges in tracker.missing_by_stream().items():
            done = self._recorded_up_to.get((pid, topic), -1)
            for first, last in ranges:
                if last > done:
                    gaps.append(Gap(pid, topic, max(first, done + 1), last, now))
            self.mark_recorded(pid, topic, ranges)
        return gaps


_STATE_FORMAT = "stage-runner/1"


def join_state(
    stage_state: bytes, tracker: SequenceTracker, ended: Mapping[str, Mapping[str, int]]
) -> bytes:
    """The checkpoint state: the stage's windows plus the sequence tracker as of the checkpoint.

    The tracker is stored for every transport because on ZeroMQ it is what makes loss exact across
    a crash: a restarted processor continues each stream from the highest number in the file, so
    the rows the killed process had received but not flushed, and everything sent while it was
    down, become one recorded gap (not zero, and not the whole stream again). The producers'
    end announcements go with it (a restart after them still knows the streams are closed),
    and so does the count of evicted streams.
    """
    streams = [
        [pid, topic, highest, [list(r) for r in missing]]
        for pid, topic, highest, missing in tracker.export_streams()
    ]
    return json.dumps(
        {"format": _STATE_FORMAT, "stage": stage_state.decode(), "sequence": streams,
         "ended": ended, "evictions": tracker.evictions, "evicted_lost": tracker.evicted_lost}
    ).encode()


def split_state(state: bytes) -> tuple[bytes, dict[str, Any]]:
    """(stage state, sequence state) from a checkpoint; a bare stage state (older files) too."""
    if not state:
        return b"", {}
    data = json.loads(state)
    if isinstance(data, dict) and data.get("format") == _STATE_FORMAT:
        return str(data["stage"]).encode(), data
    return state, {}


def restore_sequences(stats: SubscriberStats, gaps: GapRecorder, state: Mapping[str, Any]) -> None:
    """Continue the streams of the checkpoint; their gaps are already in the ``gaps`` table."""
    tracker = stats.sequence
    for pid, topic, highest, missing_ranges in state.get("sequence", ()):
        missing = [(int(first), int(last)) for first, last in missing_ranges]
        tracker.restore_stream(pid, topic, highest, missing)
        gaps.mark_recorded(pid, topic, missing)
    for pid, topics in state.get("ended", {}).items():
        stats.ended[pid] = {str(t): int(n) for t, n in topics.items()}
    tracker.evictions += int(state.get("evictions", 0))
    tracker.evicted_lost += int(state.get("evicted_lost", 0))


@dataclass
class RunLimits:
    duration_s: float = 0.0  # 0 = until stopped
    max_messages: int = 0  # 0 = unlimited
    #: A safety net: stop this long after the last message, or after the start if none came
    #: (0 = never). A quiet spell is not an end: ``end_after_producers`` is the exact stop.
    idle_exit_s: float = 0.0
    #: Stop once this many producers announced their end and every number they announced
    #: arrived (0 = do not stop on announcements) ...
    end_after_producers: int = 0
    #: ... or this long after the last of those announcements, reporting what never came.
    end_grace_s: float = 30.0
    flush_interval_s: float = 1.0
    batch_size: int = 5000


class _StopFlag:
    def __init__(self) -> None:
        self.stop = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True


class _EndWatch:
    """Decides when the producers' end announcements say the input is complete."""

    def __init__(self, limits: RunLimits) -> None:
        self.expected = limits.end_after_producers
        self.grace_s = limits.end_grace_s
        self._ended_at: float | None = None

    def reason(self, stats: SubscriberStats, now: float) -> str | None:
        if not self.expected or len(stats.ended) < self.expected:
            return None
        missing = stats.end_missing()
        if missing == 0:
            return "end_of_streams"
        if self._ended_at is None:
            self._ended_at = now
        if now - self._ended_at < self.grace_s:
            return None
        log.warning(
            "%d producer(s) ended but %d announced message(s) never arrived after %.0f s: %s",
            len(stats.ended), missing, self.grace_s, _describe_missing(stats),
        )
        return "end_deadline"


def _describe_missing(stats: SubscriberStats, limit: int = 5) -> str:
    tracker = stats.sequence
    parts = []
    for pid, topics in stats.ended.items():
        for topic in topics:
            ranges = tracker.missing_ranges(pid, topic)
            if ranges:
                shown = ", ".join(f"{a}..{b}" for a, b in ranges[:limit])
                more = f" (+{len(ranges) - limit} ranges)" if len(ranges) > limit else ""
                parts.append(f"{pid} {topic}: {shown}{more}")
    return "; ".join(parts)


def run_stage(
    make_stage: Callable[[DeadLetters], Stage],
    transport_url: str,
    output: Path,
    *,
    group: str | None = None,
    limits: RunLimits | None = None,
    run_metadata: Mapping[str, Any] | None = None,
    progress: Callable[[StageSummary], None] | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> StageSummary:
    """Run one stage until a limit, SIGTERM/SIGINT or end of input; returns its summary.

    ``heartbeat`` is called once per loop turn (at least every poll timeout): a liveness signal
    that stops when the loop does."""
    limits = limits or RunLimits()
    started = time.monotonic()
    stop = _StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    transport = open_transport(transport_url)
    caps = transport.capabilities
    sink_holder: list[Hdf5Sink] = []
    dead = DeadLetters("pending", store=lambda letter: sink_holder[0].add_dead_letter(letter))
    stage = make_stage(dead)
    dead.source = stage.name
    metadata = {"stage": stage.name, "transport": transport.identity, **(run_metadata or {})}
    sink = Hdf5Sink.open_for_resume(
        output, stage.tables(), metadata, require_positions=caps.replayable
    )
    sink_holder.append(sink)
    summary = StageSummary(stage.name, transport.display_url or transport_url, str(output))
    positions: dict[tuple[str, int], int] = {}
    stage_state, sequence_state = split_state(sink.resume_state())
    stage.restore(stage_state)
    if caps.replayable:
        positions = sink.resume_positions()
        summary.resumed_from = {f"{t}[{p}]": o for (t, p), o in positions.items()}
        if positions:
            log.info("%s: resuming from checkpoint %d at %s", stage.name,
                     sink.checkpoint_seq, summary.resumed_from)
    subscriber = transport.subscriber(
        list(stage.topics), group=group, start=positions if positions else "earliest"
    )
    gaps = GapRecorder()
    stats = subscriber.stats
    restore_sequences(stats, gaps, sequence_state)
    last_flush = last_message = time.monotonic()
    sink_hop = SinkHop()
    end_watch = _EndWatch(limits)
    summary.stopped_by = "signal"
    try:
        while not stop.stop:
            batch = subscriber.poll(limits.batch_size, timeout=0.2)
            if heartbeat is not None:
                heartbeat()
            now = time.monotonic()
            if batch:
                last_message = now
                sink_hop.received(batch)
                _append_all(sink, summary, stage.process(batch))
                for env in batch:
                    if env.offset >= 0:
                        positions[(env.topic, env.partition)] = env.offset + 1
                summary.received += len(batch)
            _dead_letter_rejected(subscriber, dead, positions)
            _skip_controls(subscriber, positions)
            if now - last_flush >= limits.flush_interval_s:
                _checkpoint(sink, subscriber, stage, positions, gaps, caps.replayable, summary)
                sink_hop.flushed()
                last_flush = now
                if progress:
                    progress(summary)
            reason = end_watch.reason(stats, now)
            if reason is None and limits.max_messages and summary.received >= limits.max_messages:
                reason = "max_messages"
            if reason is None and limits.duration_s and now - started >= limits.duration_s:
                reason = "duration"
            if reason is None and limits.idle_exit_s and now - last_message >= limits.idle_exit_s:
                reason = "idle"
            if reason is not None:
                summary.stopped_by = reason
                break
        _append_all(sink, summary, stage.finish())
        _dead_letter_rejected(subscriber, dead, positions)
        _skip_controls(subscriber, positions)
        _checkpoint(sink, subscriber, stage, positions, gaps, caps.replayable, summary)
        sink_hop.flushed()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        subscriber.close()
        sink.close()
        transport.close()
    report = stats.sequence.report()
    summary.lost, summary.duplicates = report.lost, report.duplicates
    summary.sequence_evictions = report.evicted
    summary.producers_ended, summary.end_missing = len(stats.ended), stats.end_missing()
    summary.lost_exact = bool(stats.ended) and all(
        pid in stats.ended for pid, _topic, _highest, _missing in stats.sequence.export_streams()
    )
    if report.evicted:
        log.warning("%s: %d producer stream(s) evicted from the sequence tracker (cap %d)",
                    stage.name, report.evicted, stats.sequence.max_streams)
    summary.log_resets = stats.log_resets
    summary.rejected = dict(subscriber.stats.rejected_by_kind)
    summary.dead_letters = dict(dead.counts)
    summary.seconds = time.monotonic() - started
    summary.sink_hop_ms = sink_hop.percentiles()
    return summary


def _append_all(sink: Hdf5Sink, summary: StageSummary, rows: Mapping[str, Rows]) -> None:
    for table, table_rows in rows.items():
        added = sink.append(table, table_rows)
        summary.rows[table] = summary.rows.get(table, 0) + added


def _dead_letter_rejected(
    subscriber: Subscriber, dead: DeadLetters, positions: dict[tuple[str, int], int]
) -> None:
    """Keep what the transport could not decode; on Kafka move past it, so a poison record is
    dead-lettered once (its letter and the position after it go into the same checkpoint)."""
    for rejected in subscriber.drain_rejected():
        dead.add(rejected.kind, rejected.reason, rejected.raw, source=rejected.topic or None)
        if rejected.offset >= 0:
            _advance(positions, rejected.topic, rejected.partition, rejected.offset)


def _skip_controls(subscriber: Subscriber, positions: dict[tuple[str, int], int]) -> None:
    for control in subscriber.drain_controls():
        if control.offset >= 0:
            _advance(positions, control.topic, control.partition, control.offset)


def _advance(
    positions: dict[tuple[str, int], int], topic: str, partition: int, offset: int
) -> None:
    key = (topic, partition)
    if positions.get(key, 0) <= offset:
        positions[key] = offset + 1


def _checkpoint(
    sink: Hdf5Sink,
    subscriber: Subscriber,
    stage: Stage,
    positions: dict[tuple[str, int], int],
    gaps: GapRecorder,
    replayable: bool,
    summary: StageSummary,
) -> None:
    tracker = subscriber.stats.sequence
    new_gaps = [] if replayable else gaps.new_gaps(tracker)
    gaps.prune(tracker)
    state = join_state(stage.snapshot(), tracker, subscriber.stats.ended)
    if sink.flush(positions=dict(positions), gaps=new_gaps, state=state) is not None:
        summary.flushes += 1
    if replayable and positions:
        try:
            subscriber.commit(dict(positions))
        except TransportError as exc:
            if not summary.commit_failures:
                log.warning("offset commit failed, retried at the next checkpoint (the file "
                            "holds the positions): %s", exc)
            summary.commit_failures += 1
