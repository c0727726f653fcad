"""Output paths a service is given: ``{transport}``, ``{hostname}`` and ``{pid}`` expanded.

The transport's folder name is the one ``harness run`` gives each transport's run folder.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def transport_folder(url: str) -> str:
    """The ``<transport>`` folder name a transport URL writes to: the names ``harness run
    --transport`` uses (kafka, kafka-confluent, zmq, zmq-pubsub)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme.startswith("zmq"):
        pattern = parse_qs(parts.query).get("pattern", ["pushpull"])[-1]
        return "zmq-pubsub" if pattern == "pubsub" else "zmq"
    return re.sub(r"[^a-z0-9]+", "-", scheme).strip("-") or "transport"


def expand_output(template: str | Path, transport_url: str) -> str:
    """``{transport}``, ``{hostname}`` and ``{pid}`` in an output path, so one compose command
    serves every transport and every scaled replica gets a file of its own."""
    return (str(template).replace("{transport}", transport_folder(transport_url))
            .replace("{hostname}", socket.gethostname()).replace("{pid}", str(os.getpid())))
