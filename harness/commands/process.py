"""``harness process KIND``: run one processor stage (``stages.command`` registers the kinds)."""

from __future__ import annotations

import argparse
from typing import Any

from stages import command as stages_command


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "process", help="run a processor stage (candles, sentiment or depth) into HDF5"
    )
    kinds = parser.add_subparsers(dest="processor_name", metavar="KIND", required=True)
    stages_command.register(kinds)
