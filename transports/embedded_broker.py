"""Where the embedded broker used to live; kept so existing imports keep working.

The brokers are now in ``transports.brokers`` (Apache Kafka by default, Tansu as the fallback):
``EmbeddedBroker(...)`` returns ``transports.brokers.make_broker(...)`` of the engine the machine
runs (see that package's doc).
"""

from __future__ import annotations

from pathlib import Path

from transports.brokers import (
    Broker,
    BrokerStartError,
    BrokerUnavailableError,
    free_tcp_port,
    kafka_api_versions,
    make_broker,
    port_is_free,
)

BrokerBinaryMissingError = BrokerUnavailableError


def EmbeddedBroker(  # was a class: callers construct it like one
    port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None
) -> Broker:
    """An unstarted embedded broker of the machine's engine (Apache Kafka or Tansu)."""
    return make_broker(None, port=port, host=host, log_path=log_path)


__all__ = [
    "BrokerBinaryMissingError",
    "BrokerStartError",
    "EmbeddedBroker",
    "free_tcp_port",
    "kafka_api_versions",
    "port_is_free",
]
