"""``harness produce SOURCE``: run one producer; every source folder under ``producers/``."""

from __future__ import annotations

import argparse
from typing import Any

from producers.runtime import command
from producers.runtime.source import discover


def register(sub: Any) -> None:
    found = discover()
    parser: argparse.ArgumentParser = sub.add_parser(
        "produce", help=f"run a producer ({', '.join(s.name for s in found)}): live, replay, "
        "synthetic or record"
    )
    sources = parser.add_subparsers(dest="source_name", metavar="SOURCE", required=True)
    for source in found:
        command.register(sources, source)
