"""Transport backends behind one interface, picked by URL scheme.

Backends are registered as ``"module:Class"`` strings and imported only when used, so a
producer that talks ZeroMQ never imports a Kafka client (and vice versa).

    kafka://host:9092[,host2:9092]?acks=all&linger_ms=5   kafka-python client
    kafka://?...                                          embedded broker, started on demand
    kafka+confluent://host:9092                           confluent-kafka (librdkafka) client
    zmq+tcp://127.0.0.1:5555?pattern=pushpull|pubsub&hwm=0
    zmq+ipc:///tmp/harness.sock     zmq+inproc://name
"""

from __future__ import annotations

import importlib

from transports.base import (
    Capabilities,
    Envelope,
    MessageTooLargeError,
    Positions,
    Publisher,
    RejectedMessage,
    ReplayableSubscriber,
    ReplayableTransport,
    Subscriber,
    Transport,
    TransportClosedError,
    TransportError,
    TransportOptionError,
    UnknownTransportError,
    replayable,
)
from transports.url import split_url

BACKENDS: dict[str, str] = {
    "kafka": "transports.kafka_python:KafkaPythonTransport",
    "kafka+confluent": "transports.kafka_confluent:ConfluentKafkaTransport",
    "zmq+tcp": "transports.zmq:ZmqTransport",
    "zmq+ipc": "transports.zmq:ZmqTransport",
    "zmq+inproc": "transports.zmq:ZmqTransport",
}


def backend_class(url: str) -> type[Transport]:
    scheme = split_url(url)[0]
    target = BACKENDS.get(scheme)
    if target is None:
        raise UnknownTransportError(
            f"unknown transport scheme {scheme!r}; accepted: {', '.join(sorted(BACKENDS))}"
        )
    module_name, _, class_name = target.partition(":")
    cls: type[Transport] = getattr(importlib.import_module(module_name), class_name)
    return cls


def open_transport(url: str) -> Transport:
    """Create the backend a URL names; raises ``TransportError`` with a one-line message."""
    cls = backend_class(url)
    return cls(url)  # type: ignore[call-arg]


__all__ = [
    "BACKENDS",
    "Capabilities",
    "Envelope",
    "MessageTooLargeError",
    "Positions",
    "Publisher",
    "RejectedMessage",
    "ReplayableSubscriber",
    "ReplayableTransport",
    "Subscriber",
    "Transport",
    "TransportClosedError",
    "TransportError",
    "TransportOptionError",
    "UnknownTransportError",
    "backend_class",
    "open_transport",
    "replayable",
]
