"""``harness chaos``: run the fault scenarios on both transports and write a results table."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.redaction import redact_argv
from core.settings import (
    Setting,
    add_settings,
    describe,
    folder_path,
    parse_csv,
    positive_float,
    positive_int,
    resolve,
)

SETTINGS: tuple[Setting, ...] = (
    Setting("scenarios", [], "comma-separated scenarios (default: all)", parse=parse_csv),
    Setting("transports", [], "comma-separated: kafka, kafka-cluster (3 Apache Kafka brokers), "
            "zmq-pushpull, zmq-pubsub (default: all)", parse=parse_csv),
    Setting("rate", 2000.0, "synthetic trades/s each producer sends", parse=positive_float),
    Setting("messages", 16000, "trades per scenario run", parse=positive_int),
    Setting("results_dir", Path("results"), "folder for <timestamp>-chaos/",
            parse=folder_path),
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "chaos", help="fault experiments (kill -9, stall, restarts, full disk) on both transports"
    )
    parser.add_argument("--quick", action="store_true",
                        help="only the processor-kill scenario on kafka and zmq-pushpull (test "
                             "suite); fewer messages")
    add_settings(parser, SETTINGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.chaos.results import chaos_metadata, markdown, print_table, write_chaos
    from harness.chaos.runner import QUICK_PLAN, plan, run_plan
    from harness.chaos.scenarios import SCENARIOS

    cfg = resolve(args, SETTINGS)
    unknown = [s for s in cfg["scenarios"] if s not in SCENARIOS]
    if unknown:
        raise UserError(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    if args.quick:
        runs = list(QUICK_PLAN)
        if not args.messages:
            cfg["messages"] = 9000
        if not args.rate:
            cfg["rate"] = 1500.0
    else:
        runs = plan(cfg["scenarios"] or list(SCENARIOS), cfg["transports"] or None)
    if not runs:
        raise UserError("nothing to run for these --scenarios/--transports")
    out_dir = cfg["results_dir"] / (time.strftime("%Y%m%d-%H%M%S") + "-chaos")
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {**{k: str(v) for k, v in cfg.items()}, "quick": args.quick,
                "command": " ".join(redact_argv(sys.argv))}
    metadata = chaos_metadata(settings)
    print("harness chaos: " + "; ".join(describe(cfg, SETTINGS)), file=sys.stderr)
    h5 = out_dir / "chaos.h5"

    def save(results: list[Any]) -> None:
        write_chaos(h5, results, metadata, partial=len(results) < len(runs))

    results = run_plan(runs, out_dir, rate=cfg["rate"], messages=cfg["messages"], on_result=save)
    (out_dir / "report.md").write_text(markdown(results, metadata))
    print_table(results)
    print(f"results: {h5} and {out_dir / 'report.md'}")
    return 0 if all(r.passed for r in results) else 1
