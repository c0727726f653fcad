"""``harness demo``: the main job. The same pipeline on ZeroMQ and on Kafka, offline, side by side.

Synthetic Binance trades/tickers and tweets flow through producers -> transport -> candle and
sentiment processors -> HDF5, first over ZeroMQ, then over Kafka (an embedded Apache Kafka broker,
or Tansu where Java is missing), and the run ends with one table comparing delivery, loss and
latency, naming the broker, plus where the files are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.settings import Setting, add_settings, describe, resolve
from harness.commands.run import SETTINGS, run_one
from harness.pipeline_report import render_table
from harness.run_history import LATEST, run_folder
from harness.text_table import wrap
from harness.verdict import pipeline_verdict

SUMMARY_FILES = ("demo-summary.json", "demo-summary.txt")

TRANSPORTS = ("kafka", "kafka-confluent", "zmq", "zmq-pubsub")


def parse_transports(text: str) -> str:
    """A comma list of ``harness run`` transports, checked before anything runs."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TRANSPORTS]
    if unknown or not names:
        raise ValueError(f"expected a comma list of {', '.join(TRANSPORTS)}")
    return ",".join(names)


parse_transports.__name__ = "transports"

DEMO_SETTINGS = [
    Setting("transports", "zmq,kafka", "transports to compare, in order",
            parse=parse_transports),
    *[s for s in SETTINGS if s.name not in ("transport",)],
]


def run(args: argparse.Namespace) -> int:
    values = resolve(args, DEMO_SETTINGS)
    print("harness demo: " + "; ".join(describe(values, DEMO_SETTINGS)), file=sys.stderr)
    summaries = []
    transports = [t.strip() for t in values["transports"].split(",") if t.strip()]
    with run_folder(Path(values["output_dir"]), values["run_name"], values["overwrite"],
                    replaces=[*transports, *SUMMARY_FILES]) as run_dir:
        print(f"run folder: {run_dir}", file=sys.stderr, flush=True)
        for transport in transports:
            print(f"\n=== {transport}: producers -> {transport} -> processors -> HDF5 ===",
                  file=sys.stderr, flush=True)
            summaries.append(run_one(values, run_dir, transport))
        verdict = "\n".join(pipeline_verdict(summaries))
        (run_dir / "demo-summary.json").write_text(json.dumps(summaries, indent=2))
        (run_dir / "demo-summary.txt").write_text(
            render_table(summaries, width=None) + "\n\n" + verdict + "\n")
    print("\n" + render_table(summaries))
    print("\n" + wrap(verdict))
    print(wrap(f"\nRun folder (also {Path(values['output_dir']) / LATEST}; the full table and "
               f"the verdict are in its demo-summary.txt): {run_dir}"))
    print(wrap("HDF5 output, per transport: <run folder>/<transport>/market.h5 (trades, "
               "candles_*, tickers_*, book_*) and sentiment.h5 (tweets, sentiment_*). Open "
               "notebooks/market.ipynb, sentiment.ipynb to explore them; `make bench` compares "
               "raw transport performance."))
    failed = [f for s in summaries for f in s["failed"]]
    for failure in failed:
        print(f"stage failed: {failure}", file=sys.stderr)
    return 1 if failed else 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo", help="main job: the pipeline on ZeroMQ and on Kafka (embedded), side by side"
    )
    add_settings(parser, DEMO_SETTINGS)
    parser.set_defaults(func=run)
