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

from harness.commands.run import SETTINGS, run_one
from harness.pipeline_report import render_table
from harness.settings import Setting, add_settings, describe, resolve

DEMO_SETTINGS = [
    Setting("transports", "zmq,kafka", "transports to compare, in order"),
    *[s for s in SETTINGS if s.name not in ("transport",)],
]


def run(args: argparse.Namespace) -> int:
    values = resolve(args, DEMO_SETTINGS)
    print("harness demo: " + "; ".join(describe(values, DEMO_SETTINGS)), file=sys.stderr)
    summaries = []
    for transport in [t.strip() for t in values["transports"].split(",") if t.strip()]:
        print(f"\n=== {transport}: producers -> {transport} -> processors -> HDF5 ===",
              file=sys.stderr, flush=True)
        summaries.append(run_one(values, transport))
    table = render_table(summaries)
    print("\n" + table)
    out = Path(values["output_dir"])
    (out / "demo-summary.json").write_text(json.dumps(summaries, indent=2))
    (out / "demo-summary.txt").write_text(table + "\n")
    print(f"\nHDF5 output: {', '.join(s['output'] for s in summaries)} "
          "(market.h5: trades, candles_*, tickers_*, book_*; sentiment.h5: tweets, sentiment_*)")
    print("Open notebooks/market.ipynb, sentiment.ipynb to explore them; "
          "`make bench` compares raw transport performance.")
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
