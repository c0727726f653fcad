"""The ``harness`` command: one entry point, one subcommand module per job.

Each module in ``COMMANDS`` exposes ``register(subparsers)`` that adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code. User mistakes
(``UserError``, ``TransportError``, ``SettingError``) become a one-line message and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from core.errors import UserError
from core.settings import OneLineParser, SettingError
from harness import profiling
from harness.commands import (
    bench,
    broker,
    chaos,
    demo,
    health,
    process,
    produce,
    profile,
    run,
)
from transports.base import TransportError

COMMANDS = (demo, run, produce, process, broker, bench, chaos, profile, health)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="harness",
        description="Kafka vs ZeroMQ on one market-data pipeline: produce, process, measure.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    profiling.add_cli_arguments(parser)  # --profile DIR: this process and its children
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("websockets", "urllib3", "tweepy"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not args.verbose else logging.INFO)
    # kafka-python logs every failed connection attempt at ERROR; the transport turns what
    # matters (unreachable broker, undelivered records) into its own one-line error.
    logging.getLogger("kafka").setLevel(logging.CRITICAL if not args.verbose else logging.INFO)
    try:
        return int(profiling.run_profiled(args, args.func) or 0)
    except (UserError, TransportError, SettingError) as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
