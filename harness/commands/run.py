"""``harness run``: the pipeline (producers, processors, HDF5 sinks) on one transport."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.settings import (
    Setting,
    add_settings,
    describe,
    folder_path,
    non_negative_float,
    parse_bool,
    parse_speed,
    positive_float,
    resolve,
)
from harness.pipeline import Child, PipelineConfig, row_counts, run_pipeline
from harness.pipeline_report import render_table
from harness.run_history import run_folder
from harness.text_table import wrap
from harness.verdict import pipeline_verdict
from stages.command import window_list

SETTINGS = [
    Setting("transport", "zmq", "kafka (kafka-python), kafka-confluent, zmq (push/pull) or "
            "zmq-pubsub", choices=("kafka", "kafka-confluent", "zmq", "zmq-pubsub")),
    Setting("source", "synthetic", "synthetic, replay or live",
            choices=("synthetic", "replay", "live")),
    Setting("duration", 20.0, "seconds the producers run", parse=positive_float),
    Setting("trade_rate", 500.0, "synthetic Binance trades/s; tickers and book tickers come "
            "in Binance's proportions, ~4.7 messages per trade (0 = as fast as possible)",
            parse=non_negative_float),
    Setting("tweet_rate", 20.0, "synthetic tweets/s", parse=non_negative_float),
    Setting("symbols", "btcusdt,ethusdt", "Binance symbols"),
    Setting("streams", "trade,ticker,bookTicker", "Binance stream types"),
    Setting("windows", "1s,1m,1h,1d", "candle / sentiment window sizes", parse=window_list),
    Setting("binance_recording", None, "replay: Binance recording (.jsonl.gz)"),
    Setting("twitter_recording", None, "replay: Twitter recording (.jsonl.gz)"),
    Setting("speed", 1.0, "replay pace: 1, N times faster, 0 = max", parse=parse_speed),
    Setting("seed", 1, "synthetic seed", parse=int),
    Setting("kafka_bootstrap", None, "external Kafka host:port (default: embedded broker)"),
    Setting("output_dir", "output", "each run writes runs/<timestamp>/<transport>/market.h5, "
            "sentiment.h5, logs/ here, and points the link 'latest' at it", parse=folder_path),
    Setting("run_name", None, "name the run folder runs/NAME instead of a timestamp"),
    Setting("overwrite", False, "reuse an existing run folder (--run-name, else the latest "
            "run), replacing what this run writes; never one another run is writing to",
            parse=parse_bool),
    Setting("twitter", True, "also run the Twitter producer and sentiment processor",
            parse=parse_bool),
]


def config_from(values: dict[str, Any], run_dir: Path,
                transport: str | None = None) -> PipelineConfig:
    return PipelineConfig(
        transport=transport or values["transport"],
        run_dir=run_dir,
        source=values["source"],
        duration_s=values["duration"],
        trade_rate=values["trade_rate"],
        tweet_rate=values["tweet_rate"],
        symbols=values["symbols"],
        streams=values["streams"],
        windows=values["windows"],
        binance_recording=values["binance_recording"],
        twitter_recording=values["twitter_recording"],
        speed=values["speed"],
        seed=values["seed"],
        kafka_bootstrap=values["kafka_bootstrap"],
        with_twitter=values["twitter"],
    )


def print_progress(cfg: PipelineConfig, children: Sequence[Child], elapsed: float) -> None:
    """One line per second or two: stage states and rows visible in the HDF5 files (SWMR)."""
    if int(elapsed) % 2:
        return
    market = row_counts(cfg.run_dir / cfg.transport / "market.h5")
    tweets = row_counts(cfg.run_dir / cfg.transport / "sentiment.h5")
    states = " ".join(f"{c.name}={'up' if c.running() else 'done'}" for c in children)
    print(
        f"[{cfg.transport} {elapsed:5.1f}s] {states} | trades={market.get('trades', 0)} "
        f"candles_1s={market.get('candles_1s', 0)} tweets={tweets.get('tweets', 0)}",
        file=sys.stderr,
        flush=True,
    )


def run_one(values: dict[str, Any], run_dir: Path, transport: str | None = None) -> dict[str, Any]:
    cfg = config_from(values, run_dir, transport)
    result = run_pipeline(cfg, progress=print_progress)
    summary = result.summary_row()
    (cfg.run_dir / cfg.transport / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run(args: argparse.Namespace) -> int:
    values = resolve(args, SETTINGS)
    print("harness run: " + "; ".join(describe(values, SETTINGS)), file=sys.stderr)
    started = time.monotonic()
    with run_folder(Path(values["output_dir"]), values["run_name"], values["overwrite"],
                    replaces=[values["transport"]]) as run_dir:
        print(f"run folder: {run_dir}", file=sys.stderr, flush=True)
        summary = run_one(values, run_dir)
    print(render_table([summary]))
    verdict = "\n".join(pipeline_verdict([summary]))
    (run_dir / values["transport"] / "summary.txt").write_text(
        render_table([summary], width=None) + "\n\n" + verdict + "\n")
    print("\n" + wrap(verdict))
    print(f"\nHDF5 output (market.h5, sentiment.h5, logs/ and summaries; "
          f"{time.monotonic() - started:.0f} s):\n  {summary['output']}")
    for stage, how in summary.get("stopped_by", {}).items():
        if how != "end_of_streams":
            print(f"{stage}: stopped by {how or 'the runner'}, not by its producer's end "
                  f"announcement; see its log and the loss rows above", file=sys.stderr)
    for failure in summary["failed"]:
        print(f"stage failed: {failure}", file=sys.stderr)
    return 1 if summary["failed"] else 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "run", help="run producers, processors and HDF5 sinks as processes on one transport"
    )
    add_settings(parser, SETTINGS)
    parser.set_defaults(func=run)
