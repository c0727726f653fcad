"""``harness broker``: run an embedded Kafka broker (or a 3-broker cluster) in the foreground.

For running pipeline stages in separate terminals against one broker without installing Kafka.
Apache Kafka keeps its log in ``--data-dir`` (a temporary folder by default, removed on exit);
Tansu, the fallback without Java, keeps everything in memory. Stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from core.errors import UserError
from core.settings import Setting, add_settings, describe, resolve
from transports.brokers import ENGINES, make_broker


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("expected a TCP port 0-65535 (0 = pick a free one)")
    return value


def _brokers(text: str) -> int:
    value = int(text)
    if value not in (1, 3):
        raise ValueError("expected 1 or 3 (a KRaft quorum of three)")
    return value


_port.__name__ = "port"
_brokers.__name__ = "count"


def _host(text: str) -> str:
    """An address this machine can listen on: checked now, not as a traceback from bind()."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in text else socket.AF_INET) as sock:
            sock.bind((text, 0))
    except OSError as exc:
        raise ValueError(f"cannot listen on {text!r}: {exc.strerror or exc}") from None
    return text


_host.__name__ = "host"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "port", 0, "TCP port to listen on (0 = a free one; one broker only)", parse=_port,
        env="HARNESS_BROKER_PORT",
    ),
    Setting("host", "127.0.0.1", "address to listen on and advertise", parse=_host,
            env="HARNESS_BROKER_HOST"),
    Setting("engine", "auto", "apache (Apache Kafka, needs Java >= 17), tansu (in memory) or "
            "auto (Apache Kafka if Java runs)", choices=ENGINES, env="HARNESS_KAFKA_ENGINE"),
    Setting("brokers", 1, "1, or 3 for a local cluster (RF 3, min.insync.replicas 2; Apache "
            "Kafka only)", parse=_brokers),
    Setting("data_dir", None, "folder for Apache Kafka's config and log (kept; default: a "
            "temporary folder removed on exit)", parse=Path),
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "broker", help="run an embedded Kafka broker (Apache Kafka, or Tansu without Java), or a "
        "3-broker cluster, until Ctrl-C"
    )
    add_settings(parser, SETTINGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = resolve(args, SETTINGS)
    print("harness broker settings:", "; ".join(describe(settings, SETTINGS)), flush=True)
    if settings["brokers"] > 1 and settings["port"]:
        raise UserError("--port names one broker's port; a cluster picks free ports")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = make_broker(settings["engine"], port=settings["port"] or None,
                         host=settings["host"], folder=settings["data_dir"],
                         brokers=settings["brokers"])
    try:
        started = time.monotonic()
        broker.start()
        print(
            f"Kafka broker ({broker.identity}) listening on {broker.bootstrap} "
            f"— use {broker.url} (ready in {time.monotonic() - started:.1f} s)",
            flush=True,
        )
        while not stop.wait(0.5):
            if not broker.running:
                print("harness broker: a broker process exited unexpectedly", flush=True)
                return 1
        print("harness broker: stopping", flush=True)
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
