"""Shared fixtures: one real Kafka broker per session, unique topics, free ports.

``HARNESS_KAFKA_BOOTSTRAP=host:9092`` points the whole suite at an external broker (e.g. Apache
Kafka from compose); otherwise one embedded broker serves every test and is stopped at the end of
the session: Apache Kafka (its jars are fetched into the user cache on the first run), or Tansu
where Java >= 17 is missing. ``.ci/run`` sets ``HARNESS_REQUIRE_APACHE_KAFKA=1``, which turns
"Apache Kafka cannot run here" into a session error instead of a fallback.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from transports.brokers import Broker, make_broker
from transports.brokers import free_tcp_port as _free_tcp_port
from transports.kafka_core import BOOTSTRAP_ENV


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker | None]:
    """The embedded broker of the session (None when ``HARNESS_KAFKA_BOOTSTRAP`` names one)."""
    if os.environ.get(BOOTSTRAP_ENV):
        yield None
        return
    with make_broker(folder=tmp_path_factory.mktemp("session-kafka")) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(session_broker: Broker | None) -> str:
    """``host:port`` of the broker every Kafka test talks to."""
    return session_broker.bootstrap if session_broker else os.environ[BOOTSTRAP_ENV]


@pytest.fixture(scope="session")
def kafka_engine(session_broker: Broker | None) -> str:
    """"apache-kafka", "tansu" or "external": for the few tests of one engine's behaviour."""
    return session_broker.engine if session_broker else "external"


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


_KAFKA_FIXTURES = {"session_broker", "kafka_bootstrap", "kafka_engine", "kafka_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that talks to a Kafka broker carries the ``kafka`` mark, whether it asks for
    the session broker or names Kafka (in its name or parameters), so ``make test-fast``
    (``-m "not slow and not kafka"``) leaves out the JVM starts without a list to keep."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _KAFKA_FIXTURES or "kafka" in item.name.lower():
            item.add_marker(pytest.mark.kafka)


ZMQ_TERM_TIMEOUT_S = 5.0


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    """A ZeroMQ context that must terminate after the test: a socket left open fails it."""
    context: zmq.Context[Any] = zmq.Context()
    yield context
    closer = threading.Thread(target=context.term, daemon=True)
    closer.start()
    closer.join(ZMQ_TERM_TIMEOUT_S)
    if closer.is_alive():
        leaked = list(context._sockets)  # private, but the only list of open sockets pyzmq keeps
        for sock in leaked:
            sock.close(linger=0)
        closer.join(ZMQ_TERM_TIMEOUT_S)
        pytest.fail(f"zmq context did not terminate: {len(leaked)} socket(s) left open")
