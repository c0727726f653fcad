"""``harness process candles|sentiment``: one processor stage as its own process (compose calls it).

Settings follow the harness rule (CLI > HARNESS_* > default). The defaults connect to the
producers' default ZeroMQ endpoints; for Kafka pass ``--transport kafka://host:9092``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from core.heartbeat import Heartbeat
from core.output_paths import expand_output
from core.settings import (
    Setting,
    add_settings,
    describe,
    non_empty_path,
    non_negative_float,
    non_negative_int,
    parse_bool,
    parse_csv,
    positive_float,
    redacted,
    resolve,
)
from processors.candles import DEFAULT_GRACE_MS, DEFAULT_WINDOWS
from processors.windowing import parse_windows
from stages.runner import RunLimits, StageSummary, run_stage

log = logging.getLogger("stages.command")

DEFAULT_ENDPOINTS = {"candles": "zmq+tcp://127.0.0.1:5555", "sentiment": "zmq+tcp://127.0.0.1:5556",
                     "depth": "zmq+tcp://127.0.0.1:5555"}
DEFAULT_OUTPUTS = {"candles": "output/market.h5", "sentiment": "output/sentiment.h5",
                   "depth": "output/depth.h5"}




def settings_for(kind: str) -> list[Setting]:
    return [
        Setting("transport", DEFAULT_ENDPOINTS[kind], "transport URL to consume from"),
        Setting("output", DEFAULT_OUTPUTS[kind], "HDF5 file to write (resumed if it exists); "
                "{transport} becomes the transport's folder name (kafka, zmq, ...), {hostname} "
                "and {pid} are replaced too, so scaled replicas get one file each",
                parse=non_empty_path),
        Setting("group", None, "Kafka consumer group to share work (default: read all "
                "partitions by assignment and resume from the file's positions)"),
        Setting("windows", ",".join(DEFAULT_WINDOWS), "tumbling window sizes",
                parse=window_list),
        Setting("grace_ms", DEFAULT_GRACE_MS, "watermark grace period in ms",
                parse=non_negative_int),
        Setting("flush_interval", 1.0, "seconds between checkpoints (rows+positions)",
                parse=positive_float),
        Setting("duration", 0.0, "stop after this many seconds (0 = run until stopped)",
                parse=non_negative_float),
        Setting("max_messages", 0, "stop after this many messages (0 = unlimited)",
                parse=non_negative_int),
        Setting("end_after_producers", 0, "stop once this many producers announced their end "
                "and everything they announced arrived (0 = off): the exact end of a run",
                parse=non_negative_int),
        Setting("end_grace", 30.0, "after those announcements, stop at the latest this many "
                "seconds later, logging what never arrived", parse=positive_float),
        Setting("idle_exit", 0.0, "safety net: stop this many seconds after the last input, or "
                "after the start if no input ever arrives (0 = never)",
                parse=non_negative_float),
        Setting("summary_json", None, "also write the final summary as JSON to this path"),
        Setting("quiet", False, "no progress lines", parse=parse_bool),
        Setting("heartbeat", None, "touch this file every few seconds while running (checked "
                "by `harness health FILE`, the compose healthcheck)"),
        *(
            [Setting("with_depth", False, "also keep order books from the depth topics "
                     "(depth_1s in the same file)", parse=parse_bool)]
            if kind == "candles" else []
        ),
    ]


def _make_stage(kind: str, values: dict[str, Any]) -> Any:
    windows = parse_csv(values["windows"])
    grace = values["grace_ms"]
    if kind == "depth":
        from stages.depth import DepthStage

        return DepthStage
    if kind == "candles" and values["with_depth"]:
        from stages.candles import CandleStage
        from stages.combined import CombinedStage
        from stages.depth import DepthStage

        return lambda dead: CombinedStage(
            dead, [CandleStage(dead, windows, grace), DepthStage(dead)]
        )
    if kind == "candles":
        from stages.candles import CandleStage

        return lambda dead: CandleStage(dead, windows, grace)
    from stages.sentiment import SentimentStage

    return lambda dead: SentimentStage(dead, windows, grace)


def _progress(summary: StageSummary) -> None:
    rows = sum(summary.rows.values())
    print(
        f"[{summary.stage}] received={summary.received} rows={rows} "
        f"flushes={summary.flushes}",
        file=sys.stderr,
        flush=True,
    )


def window_list(text: str) -> str:
    """``--windows`` checked as it is read: a bad size is a one-line error before anything
    connects (``WindowSpecError`` is a ValueError, which settings turn into that line)."""
    parse_windows(parse_csv(text))
    return text


def run(kind: str, args: argparse.Namespace) -> int:
    specs = settings_for(kind)
    values = resolve(args, specs)
    print(f"harness process {kind}: " + "; ".join(describe(values, specs)), file=sys.stderr)
    output = Path(expand_output(str(values["output"]), values["transport"]))
    # A stop signal may come just after the stage's loop ended (a producer's end announcement
    # can arrive a moment before the runner's SIGTERM): run_stage then restores this handler,
    # not the default one that would end the process before its summary is written.
    previous = {sig: signal.signal(sig, _stopping_anyway) for sig in (signal.SIGTERM,
                                                                     signal.SIGINT)}
    try:
        return _run_and_report(kind, values, specs, output)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopping_anyway(signum: int, frame: FrameType | None) -> None:
    """A stop signal after the stage's loop: the process is ending already."""


def _run_and_report(
    kind: str, values: Mapping[str, Any], specs: list[Setting], output: Path
) -> int:
    summary = run_stage(
        _make_stage(kind, values),
        values["transport"],
        output,
        group=values["group"],
        limits=RunLimits(
            duration_s=values["duration"],
            max_messages=values["max_messages"],
            idle_exit_s=values["idle_exit"],
            end_after_producers=values["end_after_producers"],
            end_grace_s=values["end_grace"],
            flush_interval_s=values["flush_interval"],
        ),
        run_metadata={"settings": json.dumps(redacted(values, specs))},
        progress=None if values["quiet"] else _progress,
        heartbeat=Heartbeat(values["heartbeat"]).beat,
    )
    text = json.dumps(summary.as_dict(), sort_keys=True)
    print(text, flush=True)
    if values["summary_json"]:
        Path(values["summary_json"]).write_text(text)
    return 0


def register(sub: Any) -> None:
    for kind, help_text in (
        ("candles", "Binance trades/tickers -> candles and ticker aggregates in HDF5"),
        ("sentiment", "tweets -> VADER scores and per-coin window sentiment in HDF5"),
        ("depth", "Binance depth diffs/snapshots -> a local order book per symbol, depth_1s"),
    ):
        parser = sub.add_parser(kind, help=help_text)
        add_settings(parser, settings_for(kind))
        parser.set_defaults(func=lambda args, kind=kind: run(kind, args))
