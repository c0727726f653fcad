"""``harness process KIND``: run one processor stage; each processor registers its own parser."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

#: Modules exposing ``register(subparsers)`` for ``harness process <kind>``.
PROCESSORS: tuple[str, ...] = ("stages.command",)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "process", help="run a processor stage (candles, sentiment or depth) into HDF5"
    )
    kinds = parser.add_subparsers(dest="processor_name", metavar="KIND", required=True)
    for module_name in PROCESSORS:
        importlib.import_module(module_name).register(kinds)
