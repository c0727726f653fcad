"""The embedded Tansu broker: starts on a free or chosen port, answers Kafka, stops cleanly."""

from __future__ import annotations

import socket

import pytest

from harness.errors import UserError
from transports.base import TransportError
from transports.embedded_broker import (
    BrokerBinaryMissingError,
    EmbeddedBroker,
    kafka_api_versions,
    port_is_free,
)

pytestmark = pytest.mark.kafka


def test_starts_on_a_free_port_answers_kafka_and_stops():
    with EmbeddedBroker() as broker:
        assert broker.running
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert broker.url == f"kafka://127.0.0.1:{broker.port}"
        assert broker.identity.startswith("tansu ") and "embedded" in broker.identity
        assert kafka_api_versions(broker.host, broker.port) > 10
        pid = broker.pid
    assert not broker.running and pid is not None
    assert port_is_free(broker.host, broker.port)
    broker.stop()  # twice is fine


def test_stops_promptly_even_with_a_client_connected():
    with EmbeddedBroker() as broker, socket.create_connection((broker.host, broker.port)):
        broker.stop(timeout=3)
        assert not broker.running
    assert port_is_free(broker.host, broker.port)


def test_chosen_port_that_is_taken_is_a_clear_error(free_tcp_port: int):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_tcp_port))
        holder.listen()
        with pytest.raises(TransportError, match=f"127.0.0.1:{free_tcp_port} is already in use"):
            EmbeddedBroker(port=free_tcp_port).start()


def test_chosen_port_is_used(free_tcp_port: int):
    with EmbeddedBroker(port=free_tcp_port) as broker:
        assert broker.port == free_tcp_port
        assert kafka_api_versions("127.0.0.1", free_tcp_port) > 0


def test_missing_binary_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(BrokerBinaryMissingError, match="binary not found") as info:
        EmbeddedBroker().start()
    assert isinstance(info.value, UserError) and isinstance(info.value, TransportError)


def test_log_path_receives_the_broker_log(tmp_path):
    log = tmp_path / "logs" / "tansu.log"
    with EmbeddedBroker(log_path=log):
        pass
    assert "listening on" in log.read_text()
