"""``harness produce binance``: settings, source selection and the run; errors as one line."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.dead_letters import DeadLetters
from core.errors import UserError
from core.heartbeat import Heartbeat
from core.output_paths import expand_output
from core.recording import RecordedFrame, RecordingWriter, paced, read_recording
from core.settings import (
    Setting,
    add_settings,
    describe,
    folder_path,
    non_negative_float,
    non_negative_int,
    parse_csv,
    parse_speed,
    positive_float,
    positive_int,
    resolve,
)
from producers.binance.live import (
    DEFAULT_ENDPOINT,
    BinanceLiveClient,
    BinanceRequestError,
    LiveConfig,
)
from producers.binance.schema import DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_SKEW_MS
from producers.binance.service import (
    SOURCE_NAME,
    BinancePipeline,
    dead_letter_store,
    run_frames,
    run_live,
)
from producers.binance.synthetic import SyntheticMarket
from producers.binance.topics import is_diff_depth_stream, stream_names
from producers.run_control import (
    PaceTracker,
    ProgressReporter,
    StopAfter,
    publishing,
    write_summary,
)
from transports import open_transport
from transports.base import new_producer_id

SETTINGS: tuple[Setting, ...] = (
    Setting("transport", "zmq+tcp://127.0.0.1:5555", "transport URL to publish to"),
    Setting("source", "live", "where frames come from", choices=("live", "replay", "synthetic")),
    Setting("symbols", ["btcusdt"], "comma-separated symbols", parse=parse_csv),
    Setting(
        "streams",
        ["trade", "aggTrade", "kline_1m", "ticker", "bookTicker"],
        "comma-separated stream types (trade, aggTrade, kline_<interval>, ticker, miniTicker, "
        "bookTicker, depth[@100ms|@1000ms], depth<5|10|20>[@100ms|@1000ms])",
        parse=parse_csv,
    ),
    Setting("endpoint", DEFAULT_ENDPOINT, "websocket base URL (an emulator for offline use)"),
    Setting("rest_endpoint", "", "live depth: REST base for /api/v3/depth snapshots (default: "
            "api.binance.com for Binance's streams, else the websocket's host)"),
    Setting("depth_snapshot_limit", 1000, "live depth: levels per side in a REST snapshot",
            parse=int),
    Setting("depth_snapshot_every", 60.0, "live depth: seconds between fresh snapshots per "
            "symbol, so a consumer that lost messages resynchronises (0 = only on gaps)",
            parse=float),
    Setting("recording", None, "recording to replay (gzip JSONL)", parse=Path),
    Setting("record", None, "write every raw received frame to this recording", parse=Path),
    Setting("speed", 1.0, "replay pace: 1, N (times faster) or 0/max", parse=parse_speed),
    Setting(
        "rate", 0.0, "synthetic trades/s (paced in real time); 0 = as fast as possible",
        parse=non_negative_float,
    ),
    Setting("seed", 1, "synthetic generator seed", parse=int),
    Setting("start_ms", 0, "synthetic first event time in ms (0 = now)", parse=non_negative_int),
    Setting("duration", 0.0, "stop after this many seconds (0 = no limit)",
            parse=non_negative_float),
    Setting(
        "max_messages", 0, "stop after publishing this many messages (0 = no limit)",
        parse=non_negative_int,
    ),
    Setting("output_dir", "output", "folder for dead letters ({transport} becomes the "
            "transport's folder name: kafka, zmq, ...)", parse=folder_path),
    Setting("producer_id", "", "producer id in envelopes (default: host-pid-random)"),
    Setting("max_connection_age", 23.5 * 3600, "live: rotate connections after s",
            parse=positive_float),
    Setting("stall_timeout", 60.0, "live: reconnect after s without a frame",
            parse=positive_float),
    Setting("max_skew_ms", DEFAULT_MAX_SKEW_MS, "reject E this far from receive time",
            parse=positive_int),
    Setting("progress_every", 5.0, "seconds between progress lines", parse=positive_float),
    Setting("summary_json", None, "write the final counts (per topic) as JSON to this path"),
    Setting("heartbeat", None, "touch this file every few seconds while running (checked by "
            "`harness health FILE`, the compose healthcheck)"),
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "binance", help="Binance Spot market data: live websocket, replay or synthetic"
    )
    add_settings(parser, SETTINGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args, SETTINGS)
    print("harness produce binance:", file=sys.stderr)
    for line in describe(cfg, SETTINGS):
        print(f"  {line}", file=sys.stderr)
    try:
        streams = stream_names(cfg["symbols"], cfg["streams"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    frames: Iterable[RecordedFrame] | None = None
    pace = PaceTracker()
    if cfg["source"] == "replay":
        if cfg["recording"] is None:
            raise UserError("--source replay needs --recording PATH")
        frames = _checked_recording(cfg["recording"], cfg["speed"], pace)
    elif cfg["source"] == "synthetic":
        start_ms = cfg["start_ms"] or time.time_ns() // 1_000_000
        try:
            market = SyntheticMarket(
                cfg["symbols"],
                cfg["streams"],
                seed=cfg["seed"],
                start_ms=start_ms,
                rate=cfg["rate"] or None,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
        frames = paced(market.frames(), 1.0 if cfg["rate"] > 0 else 0.0, pace)

    producer_id = cfg["producer_id"] or new_producer_id("binance")
    store = dead_letter_store(Path(expand_output(cfg["output_dir"], cfg["transport"])),
                              producer_id)
    dead = DeadLetters(SOURCE_NAME, store.write)
    recorder = RecordingWriter(cfg["record"]) if cfg["record"] else None
    transport = open_transport(cfg["transport"])
    publisher = transport.publisher(producer_id)
    pipeline = BinancePipeline(
        publisher,
        dead,
        recorder=recorder,
        max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
        max_skew_ms=cfg["max_skew_ms"],
    )
    stop = StopAfter(cfg["duration"], cfg["max_messages"])
    depth_stats: list[Any] = []  # the live depth synchronisation's counters, if it runs

    def summary() -> dict[str, object]:
        counts = pipeline.counters.summary()
        return {**counts, **depth_stats[0].summary()} if depth_stats else counts

    progress = ProgressReporter(
        f"binance {cfg['source']}", summary, every_s=cfg["progress_every"],
        heartbeat=Heartbeat(cfg["heartbeat"]),
    )
    try:
        with publishing(publisher, stop, f"binance {cfg['source']}"):
            if frames is not None:
                paced_source = (cfg["source"] == "synthetic" and cfg["rate"] > 0) or (
                    cfg["source"] == "replay" and cfg["speed"] > 0
                )
                run_frames(pipeline, frames, stop, progress, 1 if paced_source else 256)
            else:
                live = LiveConfig(
                    endpoint=cfg["endpoint"],
                    max_connection_age_s=cfg["max_connection_age"],
                    stall_timeout_s=cfg["stall_timeout"],
                )
                try:
                    asyncio.run(
                        _run_live(pipeline, streams, live, cfg, stop, progress, depth_stats)
                    )
                except BinanceRequestError as exc:
                    raise UserError(f"exchange refused the subscription: {exc}") from None
    finally:
        publisher.close(timeout=5.0)
        transport.close()
        if recorder is not None:
            recorder.close()
        store.close()
        progress.final()
        write_summary(
            cfg["summary_json"], producer_id, publisher.published_by_topic, summary(), pace,
        )
    if dead.total:
        print(f"  dead letters: {dead.total} in {store.path}", file=sys.stderr)
    return 0


async def _run_live(
    pipeline: BinancePipeline,
    streams: list[str],
    live: LiveConfig,
    cfg: dict[str, Any],
    stop: StopAfter,
    progress: ProgressReporter,
    depth_stats: list[Any],
) -> None:
    """The live client; with diff depth streams, the REST snapshots that synchronise them."""
    client = BinanceLiveClient(streams, live)
    depth_symbols = sorted({s.split("@", 1)[0] for s in streams if is_diff_depth_stream(s)})
    if not depth_symbols:
        await run_live(pipeline, client, stop, progress)
        return
    from producers.binance.depth_sync import DepthSync, RestSnapshots, rest_endpoint_for

    rest = cfg["rest_endpoint"] or rest_endpoint_for(cfg["endpoint"])
    sync = DepthSync(
        pipeline,
        RestSnapshots(rest, cfg["depth_snapshot_limit"]),
        depth_symbols,
        refresh_s=cfg["depth_snapshot_every"],
    )
    depth_stats.append(sync.stats)
    async with sync.running():
        await run_live(sync, client, stop, progress)  # type: ignore[arg-type]  # same interface


def _checked_recording(path: Path, speed: float, pace: PaceTracker) -> Iterator[RecordedFrame]:
    """Open the recording now so an unreadable file fails before anything starts."""
    frames = read_recording(path)
    first = next(frames, None)  # raises UserError for a missing/unreadable file
    if first is None:
        raise UserError(f"recording {path} holds no frames")
    return paced(itertools.chain([first], frames), speed, pace)
