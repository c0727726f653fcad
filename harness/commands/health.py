"""``harness health FILE``: the compose healthcheck of a service started with --heartbeat FILE.

Exit 0 while FILE was touched within --max-age seconds, 1 otherwise (Docker's "unhealthy";
it reserves 2). One line either way, so ``docker inspect`` shows why.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.heartbeat import heartbeat_age_s

DEFAULT_MAX_AGE_S = 60.0


def run(args: argparse.Namespace) -> int:
    age = heartbeat_age_s(Path(args.heartbeat))
    if age is None:
        print(f"unhealthy: no heartbeat at {args.heartbeat} (not started, or started without "
              "--heartbeat)")
        return 1
    if age > args.max_age:
        print(f"unhealthy: last heartbeat {age:.0f} s ago (limit {args.max_age:g} s): the main "
              "loop is stuck or the service stopped")
        return 1
    print(f"healthy: last heartbeat {age:.1f} s ago")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "health", help="exit 0 if a service's --heartbeat file is fresh (compose healthcheck)")
    parser.add_argument("heartbeat", metavar="FILE", help="the file given to --heartbeat")
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, metavar="S",
                        help=f"seconds a beat stays valid (default {DEFAULT_MAX_AGE_S:g})")
    parser.set_defaults(func=run)
