"""The hot loop: every frame of every source is recorded, decoded, enveloped and published here.

``Producer.handle`` is the one path from a raw frame to ``Publisher.publish`` for every source
and every mode (live, replay, synthetic), which is what makes a replay of a recording publish
exactly what the live run published: the same bytes through the same code give the same
values, keys, event times and ``recv_ns`` headers (the recorded receive time is reused).
``drive`` and ``drive_async`` feed it from a synchronous or an asynchronous frame source.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import AsyncIterator, Iterable

from core.dead_letters import DeadLetters
from core.recording import Frame, RecordingWriter
from producers.runtime.frames import Decoder, Rejected
from producers.runtime.progress import ProgressReporter
from producers.runtime.stop import StopAfter
from transports.base import Headers, Message, MessageTooLargeError, Publisher

#: Unpaced sources check stop conditions and progress every this many frames (clock reads are
#: not free); paced and live ones check after every frame.
CHECK_EVERY = 256


class Producer:
    """Record, decode, publish one frame; a bad frame or message goes to dead letters, never
    raises. At most ``limit`` messages are published in all (``--max-messages``), exactly."""

    def __init__(
        self,
        publisher: Publisher,
        decoder: Decoder,
        dead_letters: DeadLetters,
        *,
        recorder: RecordingWriter | None = None,
        limit: int | None = None,
    ) -> None:
        self.publisher = publisher
        self.decoder = decoder
        self.dead_letters = dead_letters
        self.recorder = recorder
        self.limit = limit if limit is not None and limit > 0 else sys.maxsize
        self.received = 0
        self.published = 0

    def handle(self, frame: Frame) -> int:
        """Publish the messages in ``frame``; returns how many went out."""
        self.received += 1
        if self.recorder is not None:
            self.recorder.write(frame.raw, frame.recv_ns)
        try:
            messages = self.decoder.decode(frame)
        except Rejected as exc:
            self.dead_letters.add(exc.kind, exc.reason, frame.raw_bytes())
            return 0
        if not messages:
            return 0
        headers = (("recv_ns", str(frame.recv_ns).encode()),)
        before = self.published
        for topic, key, value, event_time_ns in messages:
            if self.published >= self.limit:
                break
            if self._publish_one(topic, key, value, event_time_ns, headers):
                self.published += 1
        return self.published - before

    def handle_many(self, frames: list[Frame]) -> int:
        """``handle`` each frame, publishing their messages with ``publish_many`` (an unpaced
        replay or generator: a Python call level less per message), in the same order as
        frame by frame, dead letters included. A run that records or has a message limit goes
        frame by frame."""
        if self.recorder is not None or self.limit != sys.maxsize:
            sent = 0
            for frame in frames:
                sent += self.handle(frame)
                if self.published >= self.limit:
                    break
            return sent
        decode = self.decoder.decode
        before = self.published
        messages: list[Message] = []
        add = messages.append
        for frame in frames:
            try:
                decoded = decode(frame)
            except Rejected as exc:
                self._publish_all(messages)  # the messages before it go first, as one by one
                messages.clear()
                self.dead_letters.add(exc.kind, exc.reason, frame.raw_bytes())
                continue
            if decoded:
                headers = (("recv_ns", str(frame.recv_ns).encode()),)
                for topic, key, value, event_time_ns in decoded:
                    add((topic, key, value, event_time_ns, headers))
        self.received += len(frames)
        self._publish_all(messages)
        return self.published - before

    def _publish_all(self, messages: list[Message]) -> None:
        """``publish_many``; a batch holding a value over the transport's limit goes message
        by message instead, that one to the dead letters."""
        publisher = self.publisher
        before = publisher.published
        try:
            publisher.publish_many(messages)
        except MessageTooLargeError:
            for message in messages:
                self._publish_one(*message)
        finally:
            self.published += publisher.published - before

    def _publish_one(
        self, topic: str, key: bytes | None, value: bytes, event_time_ns: int, headers: Headers
    ) -> bool:
        """``publish`` one message; False when its value is over the transport's limit (it then
        goes to the dead letters)."""
        try:
            self.publisher.publish(topic, value, key=key, headers=headers,
                                   event_time_ns=event_time_ns)  # fmt: skip
        except MessageTooLargeError as exc:
            self.dead_letters.add("too_large_for_transport", str(exc), value)
            return False
        return True

    def counters(self) -> dict[str, object]:
        """Counts for progress lines and the summary: common ones first, then the source's."""
        dead = self.dead_letters
        out: dict[str, object] = {
            "received": self.received,
            "published": self.published,
            "dead_letters": dead.total,
        }
        out.update({f"dead_letters[{k}]": v for k, v in sorted(dead.counts.items())})
        out.update(self.decoder.counters())
        if self.recorder is not None:
            out["recorded"] = self.recorder.written
        return out


def drive(
    producer: Producer,
    frames: Iterable[Frame],
    stop: StopAfter,
    progress: ProgressReporter | None = None,
    check_every: int = 1,
) -> None:
    """Feed ``frames`` (replay, synthetic, a blocking live client) until they end or ``stop``.

    ``check_every=CHECK_EVERY`` for unpaced sources; 1 for the others (cheap at their rate, and a
    duration ends on time). ``frames`` is closed at the end, which ends a live client's threads.
    """
    limit = producer.limit
    chunks = iter(frames)
    try:
        while chunk := list(itertools.islice(chunks, check_every)):
            if check_every > 1:  # unpaced: frames go in lists, checked after each
                producer.handle_many(chunk)
            else:  # paced and live: at once, each (a ZeroMQ batcher sends a lone one at once)
                producer.handle(chunk[0])
            if producer.published >= limit:
                stop.event.set()
                break
            if stop.reached(producer.published):
                break
            if progress is not None:
                progress.tick()
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


async def drive_async(
    producer: Producer,
    frames: AsyncIterator[Frame],
    stop: StopAfter,
    progress: ProgressReporter | None = None,
) -> None:
    """Feed an asynchronous live client until ``stop``; checks ``stop`` (a signal, the
    duration) and ticks progress even while no frame arrives."""
    handle = producer.handle

    async def consume() -> None:
        async for frame in frames:
            handle(frame)
            if stop.reached(producer.published):
                return
            if progress is not None:
                progress.tick()

    task = asyncio.create_task(consume())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            if stop.reached(producer.published):
                break
            if progress is not None:
                progress.tick()
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
