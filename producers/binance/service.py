"""The Binance producer loop: frames in (live, replay or synthetic), validated messages out.

``BinancePipeline.handle`` is the one path from raw frame to ``Publisher.publish`` for every
source, so a replay of a recording (raw frames + receive times) republishes exactly what the
live run published: same values, keys, event times and ``recv_ns`` headers.

Wire format (what processors consume): topic from ``topics.TOPIC_BY_EVENT``; value =
``orjson.dumps`` of the stream's ``data`` object with Binance's own field names, prices and
quantities still decimal strings (see ``schema`` for why); key = the symbol (``BTCUSDT``), so
per-symbol order holds on Kafka; ``event_time_ns`` = ``E`` ms * 1e6, or the receive time for
bookTicker, whose spot stream carries no event time; header ``recv_ns`` = receive time (ASCII).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from core.dead_letters import DeadLetters, JsonlDeadLetterStore
from core.recording import RecordedFrame, RecordingWriter
from producers.binance.live import BinanceLiveClient, BinanceRequestError
from producers.binance.schema import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_SKEW_MS,
    ControlReply,
    MarketEvent,
    Parsed,
    ServerShutdown,
    ValidationError,
    parse_frame,
)
from producers.run_control import ProgressReporter, StopAfter
from transports.base import Headers, MessageTooLargeError, Publisher

log = logging.getLogger("producers.binance.service")

SOURCE_NAME = "binance-producer"
#: Stop conditions and progress are checked every this many frames (clock reads are not free).
CHECK_EVERY = 256


@dataclass(slots=True)
class ProducerCounters:
    received: int = 0
    published: int = 0
    control_replies: int = 0
    control_errors: int = 0
    server_shutdowns: int = 0
    unknown_fields: int = 0
    recorded: int = 0
    recorded_lossy: int = 0  # invalid UTF-8 frames recorded with U+FFFD replacements
    rejected_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_kind.values())

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "received": self.received,
            "published": self.published,
            "rejected": self.rejected,
        }
        out.update({f"rejected[{k}]": v for k, v in sorted(self.rejected_by_kind.items())})
        if self.unknown_fields:
            out["unknown_field"] = self.unknown_fields
        if self.control_replies:
            out["control_replies"] = self.control_replies
        if self.server_shutdowns:
            out["server_shutdowns"] = self.server_shutdowns
        if self.recorded:
            out["recorded"] = self.recorded
        return out


class BinancePipeline:
    """Record, validate, publish one frame; bad frames go to dead letters, never raise."""

    def __init__(
        self,
        publisher: Publisher,
        dead_letters: DeadLetters,
        *,
        recorder: RecordingWriter | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    ) -> None:
        self.publisher = publisher
        self.dead_letters = dead_letters
        self.recorder = recorder
        self.max_frame_bytes = max_frame_bytes
        self.max_skew_ms = max_skew_ms
        self.counters = ProducerCounters()
        self._keys: dict[str, bytes] = {}

    def handle(self, raw: bytes | str, recv_ns: int) -> Parsed | None:
        c = self.counters
        c.received += 1
        if self.recorder is not None:
            self._record(raw, recv_ns)
        try:
            parsed = parse_frame(
                raw,
                recv_ns // 1_000_000,
                max_frame_bytes=self.max_frame_bytes,
                max_skew_ms=self.max_skew_ms,
            )
        except ValidationError as exc:
            self._reject(exc.kind, exc.reason, raw)
            return None
        if type(parsed) is MarketEvent:
            if parsed.unknown_fields:
                c.unknown_fields += parsed.unknown_fields
            key = self._keys.get(parsed.symbol)
            if key is None:
                key = self._keys[parsed.symbol] = parsed.symbol.encode()
            e_ms = parsed.event_time_ms
            headers: Headers = (("recv_ns", str(recv_ns).encode()),)
            try:
                self.publisher.publish(
                    parsed.topic,
                    orjson.dumps(parsed.data),
                    key=key,
                    headers=headers,
                    event_time_ns=recv_ns if e_ms is None else e_ms * 1_000_000,
                )
            except MessageTooLargeError as exc:
                self._reject("too_large", str(exc), raw)
                return None
            c.published += 1
        elif type(parsed) is ControlReply:
            c.control_replies += 1
            if parsed.is_error:
                c.control_errors += 1
        elif type(parsed) is ServerShutdown:
            c.server_shutdowns += 1
        return parsed

    def _reject(self, kind: str, reason: str, raw: bytes | str) -> None:
        kinds = self.counters.rejected_by_kind
        kinds[kind] = kinds.get(kind, 0) + 1
        self.dead_letters.add(kind, reason, raw.encode() if isinstance(raw, str) else raw)

    def _record(self, raw: bytes | str, recv_ns: int) -> None:
        assert self.recorder is not None
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                # The shared recording format holds text; keep the frame, marked as lossy.
                text = raw.decode("utf-8", "replace")
                self.counters.recorded_lossy += 1
        else:
            text = raw
        self.recorder.write(text, recv_ns)
        self.counters.recorded += 1


def run_frames(
    pipeline: BinancePipeline,
    frames: Iterable[RecordedFrame],
    stop: StopAfter,
    progress: ProgressReporter | None = None,
    check_every: int = CHECK_EVERY,
) -> None:
    """Drive a synchronous source (replay, synthetic) until exhausted or ``stop``.

    ``check_every=1`` for paced sources (cheap at their rate, and a duration ends on time).
    """
    handle = pipeline.handle
    counters = pipeline.counters
    limit = stop.max_messages
    for n, frame in enumerate(frames, 1):
        handle(frame.raw, frame.recv_ns)
        if limit is not None and counters.published >= limit:
            stop.event.set()
            break
        if n % check_every == 0:
            if stop.reached(counters.published):
                break
            if progress is not None:
                progress.tick()


async def run_live(
    pipeline: BinancePipeline,
    client: BinanceLiveClient,
    stop: StopAfter,
    progress: ProgressReporter | None = None,
) -> None:
    """Drive the live client until ``stop``; checks stop even when no frames arrive."""
    counters = pipeline.counters

    async def consume() -> None:
        async for raw, recv_ns in client.frames():
            pipeline.handle(raw, recv_ns)
            if stop.reached(counters.published):
                return
            if progress is not None:
                progress.tick()

    task = asyncio.create_task(consume())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            if stop.reached(counters.published):
                break
            if progress is not None:
                progress.tick()
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def dead_letter_store(output_dir: Path, producer_id: str) -> JsonlDeadLetterStore:
    return JsonlDeadLetterStore(output_dir / "dead_letters" / f"binance-{producer_id}.jsonl.gz")


__all__ = [
    "SOURCE_NAME",
    "BinanceLiveClient",
    "BinancePipeline",
    "BinanceRequestError",
    "ProducerCounters",
    "dead_letter_store",
    "run_frames",
    "run_live",
]
