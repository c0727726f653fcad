"""Shared fixtures: one real Kafka-protocol broker per session, unique topics, free ports.

``HARNESS_KAFKA_BOOTSTRAP=host:9092`` points the whole suite at an external broker (e.g. Apache
Kafka from compose); otherwise one embedded Tansu broker serves every test and is stopped at the
end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from transports.embedded_broker import EmbeddedBroker
from transports.embedded_broker import free_tcp_port as _free_tcp_port
from transports.kafka import BOOTSTRAP_ENV


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of the broker every Kafka test talks to."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_url(kafka_bootstrap: str) -> str:
    return f"kafka://{kafka_bootstrap}"


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test (or earlier run against the same broker) has used."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"t-{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def free_tcp_port() -> int:
    """A loopback TCP port that was free a moment ago (for ZeroMQ binds and broker tests)."""
    return _free_tcp_port()
