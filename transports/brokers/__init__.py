"""Kafka brokers the harness starts for you, and which engine runs them.

    apache.py    Apache Kafka, one KRaft node (broker + controller), log on disk   [default]
    cluster.py   Apache Kafka, three nodes, replication factor 3, min.insync.replicas 2
    tansu.py     Tansu (memory only), the fallback where Java >= 17 is missing
    jars.py      Apache Kafka's jars: KAFKA_HOME, or a user cache filled once by Maven (pom.xml)
    config/      server.properties (+ cluster.properties): the broker settings compose uses too

``make_broker("auto")`` picks Apache Kafka when Java >= 17 is present and its jars are cached,
installed (``KAFKA_HOME``) or fetchable (Maven), else Tansu with one log line that says why.
``engine="apache"`` or ``"tansu"`` (``kafka://?engine=...``, ``HARNESS_KAFKA_ENGINE``) forces
one; ``HARNESS_REQUIRE_APACHE_KAFKA=1`` (set by CI) turns the fallback into an error, so a
machine that should run Apache Kafka never measures Tansu by accident.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from transports.brokers.apache import ApacheKafkaBroker
from transports.brokers.cluster import ApacheKafkaCluster
from transports.brokers.jars import KAFKA_HOME_ENV, cache_folder, pinned_version
from transports.brokers.java import JavaMissingError, find_java
from transports.brokers.process import (
    BrokerStartError,
    BrokerUnavailableError,
    free_tcp_port,
    kafka_api_versions,
    port_is_free,
)
from transports.brokers.tansu import TansuBroker

log = logging.getLogger("transports.brokers")

ENGINE_ENV = "HARNESS_KAFKA_ENGINE"
REQUIRE_APACHE_ENV = "HARNESS_REQUIRE_APACHE_KAFKA"
ENGINES = ("auto", "apache", "tansu")
_warned: set[str] = set()


class Broker(Protocol):
    """What every embedded broker (one node, a cluster, Tansu) offers its users."""

    engine: str  # "apache-kafka" | "tansu"
    version: str
    identity: str  # engine, version, topology, storage: stored with every result
    brokers: int
    host: str

    @property
    def label(self) -> str: ...  # short: "Apache Kafka 4.4.0", "Tansu 0.6.0"
    @property
    def bootstrap(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def running(self) -> bool: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def pids(self) -> list[int]: ...
    def start(self, timeout: float = ...) -> Any: ...
    def stop(self, timeout: float = ...) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


def requested_engine(explicit: str | None = None) -> str:
    """``explicit`` unless it is empty or "auto", then ``HARNESS_KAFKA_ENGINE``, then "auto"."""
    value = explicit if explicit and explicit != "auto" else os.environ.get(ENGINE_ENV, "auto")
    value = (value or "auto").strip().lower()
    if value not in ENGINES:
        raise BrokerUnavailableError(
            f"unknown Kafka engine {value!r} ({ENGINE_ENV}); accepted: {', '.join(ENGINES)}")
    return value


def apache_unavailable() -> str | None:
    """Why Apache Kafka cannot run here (no Java >= 17, no jars and no Maven), or None."""
    try:
        find_java()
    except JavaMissingError as exc:
        return f"Java >= 17 not found: {exc}"
    if os.environ.get(KAFKA_HOME_ENV):
        return None
    if (cache_folder() / "jars.txt").is_file() or shutil.which("mvn"):
        return None
    return (f"Apache Kafka {pinned_version()}'s jars are not cached and Maven (mvn) is not "
            f"installed to fetch them (or set {KAFKA_HOME_ENV})")


def choose_engine(explicit: str | None = None) -> str:
    """"apache" or "tansu" for a broker the harness starts (see the module doc)."""
    wanted = requested_engine(explicit)
    if wanted == "tansu":
        return "tansu"
    reason = apache_unavailable()
    if reason is None:
        return "apache"
    if wanted == "apache":
        raise BrokerUnavailableError(f"cannot run Apache Kafka: {reason}")
    if os.environ.get(REQUIRE_APACHE_ENV, "") not in ("", "0"):
        raise BrokerUnavailableError(
            f"cannot run Apache Kafka ({REQUIRE_APACHE_ENV} is set, no fallback): {reason}")
    if reason not in _warned:
        _warned.add(reason)
        log.warning("%s: the embedded Kafka broker is Tansu instead (memory only, not Apache "
                    "Kafka); install OpenJDK 17+ to run Apache Kafka, or ask for "
                    "kafka://?engine=tansu to silence this", reason)
    return "tansu"


def make_broker(engine: str | None = None, *, port: int | None = None, host: str = "127.0.0.1",
                log_path: Path | None = None, folder: Path | None = None,
                brokers: int = 1) -> Broker:
    """An unstarted embedded broker (or cluster) of the chosen engine; ``folder`` holds Apache
    Kafka's config and log on disk (Tansu keeps everything in memory and ignores it)."""
    chosen = choose_engine(engine)
    if brokers > 1:
        if chosen != "apache":
            raise BrokerUnavailableError("a multi-broker cluster needs Apache Kafka (Tansu runs "
                                         "one broker)")
        if port is not None:
            raise BrokerUnavailableError("--port applies to one broker; a cluster picks free "
                                         "ports")
        return ApacheKafkaCluster(brokers, host=host, folder=folder)
    if chosen == "apache":
        return ApacheKafkaBroker(port=port, host=host, log_path=log_path, folder=folder)
    return TansuBroker(port=port, host=host, log_path=log_path)


__all__ = [
    "ENGINES",
    "ENGINE_ENV",
    "REQUIRE_APACHE_ENV",
    "ApacheKafkaBroker",
    "ApacheKafkaCluster",
    "Broker",
    "BrokerStartError",
    "BrokerUnavailableError",
    "TansuBroker",
    "apache_unavailable",
    "choose_engine",
    "free_tcp_port",
    "kafka_api_versions",
    "make_broker",
    "port_is_free",
    "requested_engine",
]
