"""``harness broker``: run the embedded Kafka-protocol broker (Tansu) in the foreground.

For running pipeline stages in separate terminals against one broker without installing Kafka.
Stops cleanly on Ctrl-C or SIGTERM; the broker is in-memory, so stopping it loses every topic.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
from types import FrameType
from typing import Any

from harness.settings import Setting, add_settings, describe, resolve
from transports.embedded_broker import EmbeddedBroker


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("expected a TCP port 0-65535 (0 = pick a free one)")
    return value


_port.__name__ = "port"


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
        "port", 0, "TCP port to listen on (0 = a free port)", parse=_port, env="HARNESS_BROKER_PORT"
    ),
    Setting("host", "127.0.0.1", "address to listen on and advertise", parse=_host,
            env="HARNESS_BROKER_HOST"),
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "broker", help="run the embedded Kafka-protocol broker (Tansu, in memory) until Ctrl-C"
    )
    add_settings(parser, SETTINGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = resolve(args, SETTINGS)
    print("harness broker settings:", "; ".join(describe(settings, SETTINGS)), flush=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(port=settings["port"] or None, host=settings["host"])
    try:
        broker.start()
        print(
            f"Kafka-protocol broker ({broker.identity}) listening on {broker.bootstrap} "
            f"— use {broker.url}",
            flush=True,
        )
        while not stop.wait(0.5):
            if not broker.running:
                print("harness broker: the broker process exited unexpectedly", flush=True)
                return 1
        print("harness broker: stopping", flush=True)
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
