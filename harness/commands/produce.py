"""``harness produce SOURCE``: run one producer; each source module registers its own parser."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

#: Modules exposing ``register(subparsers)`` for ``harness produce <source>``.
SOURCES: tuple[str, ...] = ("producers.binance.command", "producers.twitter.command")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "produce", help="run a producer (binance or twitter): live, replay, synthetic or record"
    )
    sources = parser.add_subparsers(dest="source_name", metavar="SOURCE", required=True)
    for module_name in SOURCES:
        importlib.import_module(module_name).register(sources)
