"""``harness produce SOURCE``: run one producer; each source module registers its own parser."""

from __future__ import annotations

import argparse
from typing import Any

from producers.binance import command as binance_command
from producers.twitter import command as twitter_command

#: Modules exposing ``register(subparsers)`` for ``harness produce <source>``.
SOURCES = (binance_command, twitter_command)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "produce", help="run a producer (binance or twitter): live, replay, synthetic or record"
    )
    sources = parser.add_subparsers(dest="source_name", metavar="SOURCE", required=True)
    for source in SOURCES:
        source.register(sources)
