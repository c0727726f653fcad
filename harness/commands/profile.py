"""``harness profile summarize DIR [DIR2]``: read the profiles ``harness --profile`` wrote."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness import profiling_report


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "profile", help="summarize the profiles written by harness --profile DIR"
    )
    actions = parser.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    summarize = actions.add_parser(
        "summarize",
        help="one table over every process in DIR; with two DIRs (or DIR/kafka and DIR/zmq) "
        "a side-by-side comparison",
    )
    summarize.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    summarize.set_defaults(func=_summarize)


def _summarize(args: argparse.Namespace) -> int:
    folders = profiling_report.folders_to_compare(args.dirs)
    for label, path in folders:
        if len(folders) > 1:
            print(f"## {label} ({path})")
        print(profiling_report.summary_table(path))
    if len(folders) > 1:
        print("## side by side: share of wall time per stage")
        print(profiling_report.comparison_table(folders))
    return 0
