"""``harness produce <source>``: the settings every producer shares, and one run of a source.

Every setting is a flag, a ``HARNESS_<FLAG>`` variable or a default; the source adds its own
after ``--transport`` and ``--source``. User mistakes (bad settings, a missing recording or
token, an exchange refusing a subscription) are ``UserError``s raised before the transport
opens where they can be, one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

from core.dead_letters import DeadLetters, JsonlDeadLetterStore
from core.errors import UserError
from core.heartbeat import Heartbeat
from core.output_paths import expand_output
from core.recording import Frame, RecordingWriter, open_recording
from core.settings import (
    Setting,
    add_settings,
    describe,
    folder_path,
    non_empty_path,
    non_negative_float,
    non_negative_int,
    parse_speed,
    positive_float,
    resolve,
)
from producers.runtime.pacing import PaceTracker, replayed_at_speed
from producers.runtime.producer import CHECK_EVERY, Producer, drive, drive_async
from producers.runtime.progress import ProgressReporter, write_summary
from producers.runtime.source import Config, LiveSource, Source
from producers.runtime.stop import StopAfter, publishing
from transports import open_transport
from transports.base import new_producer_id


def settings_for(source: Source) -> tuple[Setting, ...]:
    """``--transport``, ``--source``, the source's own settings, then the common ones."""
    return (
        Setting("transport", source.transport, "transport URL to publish to"),
        Setting("source", "live", "where frames come from",
                choices=("live", "replay", "synthetic")),
        *source.settings,
        Setting("recording", None, "recording to replay (--source replay; gzip JSONL)",
                parse=non_empty_path),
        Setting("record", None, "write every raw frame received to this recording",
                parse=non_empty_path),
        Setting("speed", 1.0, "replay pace: 1 = as recorded, N = N times faster, 0/max = flat "
                "out", parse=parse_speed),
        Setting("rate", source.rate, source.rate_help, parse=non_negative_float),
        Setting("seed", source.seed, "synthetic generator seed", parse=int),
        Setting("start_ms", 0, "synthetic first event time in ms (0 = now)",
                parse=non_negative_int),
        Setting("duration", 0.0, "stop after this many seconds (0 = no limit)",
                parse=non_negative_float),
        Setting("max_messages", 0, "stop after publishing this many messages (0 = no limit)",
                parse=non_negative_int),
        Setting("output_dir", "output", "folder for dead letters ({transport} becomes the "
                "transport's folder name: kafka, zmq, ...)", parse=folder_path),
        Setting("producer_id", "", f"producer id in envelopes (default: {source.name}-host-pid-"
                "random)"),
        Setting("progress_every", 5.0, "seconds between progress lines", parse=positive_float),
        Setting("summary_json", None, "write the final counts (per topic) and the pace as JSON "
                "to this path"),
        Setting("heartbeat", None, "touch this file every few seconds while running (checked "
                "by `harness health FILE`, the compose healthcheck)"),
    )


def register(sub: Any, source: Source) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        source.name, help=source.help, description=source.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings(parser, settings_for(source))
    parser.set_defaults(func=lambda args: run(source, args))


def dead_letter_path(output_dir: Path, source: Source, producer_id: str) -> Path:
    name = producer_id if producer_id.startswith(source.name) else f"{source.name}-{producer_id}"
    return output_dir / "dead_letters" / f"{name}.jsonl.gz"


def run(source: Source, args: argparse.Namespace | Mapping[str, Any]) -> int:
    """One producer run: settings, frames, transport, the loop, the summary."""
    settings = settings_for(source)
    cfg = resolve(args, settings)
    print(f"harness produce {source.name}:", file=sys.stderr)
    for line in describe(cfg, settings):
        print(f"  {line}", file=sys.stderr)
    stop = StopAfter(cfg["duration"], cfg["max_messages"])
    pace = PaceTracker()
    live, frames = _frames(source, cfg, stop, pace)  # user errors before anything opens
    label = f"{source.name} {cfg['source']}"
    producer_id = cfg["producer_id"] or new_producer_id(source.name)
    output_dir = Path(expand_output(cfg["output_dir"], cfg["transport"]))
    store = JsonlDeadLetterStore(dead_letter_path(output_dir, source, producer_id))
    dead = DeadLetters(f"{source.name}-producer", store.write)
    recorder = RecordingWriter(cfg["record"]) if cfg["record"] else None
    try:
        with open_transport(cfg["transport"]) as transport:
            publisher = transport.publisher(producer_id)
            producer = Producer(publisher, source.decoder(cfg, dead), dead, recorder=recorder,
                                limit=cfg["max_messages"])

            def counters() -> dict[str, object]:
                return {**producer.counters(), **(live.counters() if live else {})}

            progress = ProgressReporter(label, counters, cfg["progress_every"],
                                        heartbeat=Heartbeat(cfg["heartbeat"]))
            try:
                with publishing(publisher, stop, label):
                    if isinstance(frames, AsyncIterator):
                        asyncio.run(drive_async(producer, frames, stop, progress))
                    else:
                        flat_out = live is None and _speed(cfg) <= 0
                        drive(producer, frames, stop, progress, CHECK_EVERY if flat_out else 1)
            finally:
                publisher.close(timeout=5.0)
                progress.final()
            write_summary(cfg["summary_json"], producer_id, publisher.published_by_topic,
                          counters(), pace)
    finally:
        store.close()
        if recorder is not None:
            recorder.close()
    if dead.total:
        print(f"  dead letters: {dead.total} in {store.path}", file=sys.stderr)
    return 0


def _speed(cfg: Config) -> float:
    """The pace of a replay or synthetic run: ``--speed`` for a recording; for the generator 1x
    while ``--rate`` > 0 (its frames carry times at that rate), else flat out."""
    if cfg["source"] == "replay":
        return float(cfg["speed"])
    return 1.0 if cfg["rate"] > 0 else 0.0


def _frames(
    source: Source, cfg: Config, stop: StopAfter, pace: PaceTracker
) -> tuple[LiveSource | None, Iterable[Frame] | AsyncIterator[Frame]]:
    """The run's frames, paced (a recording or the generator), or the live client's."""
    try:
        if source.check is not None:
            source.check(cfg)
        if cfg["source"] == "replay":
            return None, replayed_at_speed(open_recording(cfg["recording"]), _speed(cfg), stop,
                                           pace)
        if cfg["source"] == "synthetic":
            start_ms = cfg["start_ms"] or time.time_ns() // 1_000_000
            generated = source.synthetic({**cfg, "start_ms": start_ms})
            return None, replayed_at_speed(generated, _speed(cfg), stop, pace)
        live = source.live(cfg, stop)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return live, live.frames()
