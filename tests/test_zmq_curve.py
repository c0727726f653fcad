"""CURVE on the ZeroMQ backend: an authenticated peer round-trips; a peer with no key or an
unlisted key can neither publish into a binding subscriber nor receive from a binding publisher;
secret keys never show up in URLs, identities or errors. Real sockets, real handshakes.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import zmq
import zmq.auth

from transports import Envelope, Subscriber, TransportError
from transports.brokers import free_tcp_port
from transports.zmq import ZmqTransport

NOTHING_ARRIVES_S = 1.0


@pytest.fixture(autouse=True)
def no_curve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for suffix in ("SERVER_PUBLIC", "SERVER_SECRET", "CLIENT_PUBLIC", "CLIENT_SECRET"):
        monkeypatch.delenv(f"HARNESS_ZMQ_CURVE_{suffix}", raising=False)
    monkeypatch.delenv("HARNESS_ZMQ_CURVE_ALLOWED_CLIENTS", raising=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """server, client and intruder certificates; ``allowed/`` holds only the client's public key."""
    root = tmp_path_factory.mktemp("curve")
    allowed = root / "allowed"
    allowed.mkdir()
    out = {"allowed": allowed}
    for name in ("server", "client", "intruder"):
        public, secret = zmq.auth.create_certificates(root, name)
        out[name], out[f"{name}_secret"] = Path(public), Path(secret)
    (allowed / "client.key").write_bytes(out["client"].read_bytes())
    return out


def curve_options(keys: dict[str, Path], client: str = "client") -> str:
    return (
        f"curve_server_public={keys['server']}&curve_server_secret={keys['server_secret']}"
        f"&curve_client_public={keys[client]}&curve_client_secret={keys[client + '_secret']}"
        f"&curve_allowed_clients={keys['allowed']}"
    )


def base(port: int, options: str) -> str:
    return f"zmq+tcp://127.0.0.1:{port}?linger_ms=0&{options}"


def receive(sub: Subscriber, count: int, timeout: float = 10.0) -> list[Envelope]:
    got: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(sub.poll(timeout=0.05))
    return got


@pytest.mark.parametrize(("pattern", "bind"), [("pushpull", "publisher"), ("pubsub", "subscriber")])
def test_authenticated_client_round_trips(
    ctx: zmq.Context[Any], keys: dict[str, Path], pattern: str, bind: str
) -> None:
    url = base(free_tcp_port(), f"pattern={pattern}&bind={bind}&" + curve_options(keys))
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.subscriber(["t"]) as sub,
        transport.publisher("c") as pub,
    ):
        assert transport.identity.endswith("curve")
        deadline = time.monotonic() + 10
        while pattern == "pubsub" and pub.subscribers_for("t") < 1:
            assert time.monotonic() < deadline
            sub.poll(timeout=0.05), pub.flush()
        for i in range(50):
            pub.publish("t", b"%d" % i, key=b"k")
        got = receive(sub, 50)
        assert transport.curve_denied == 0
    assert [e.seq for e in got] == list(range(50))


def intruders(keys: dict[str, Path], port: int, pattern: str, bind: str) -> list[str]:
    """A peer with an unlisted key (but the right server key) and a peer with no CURVE at all."""
    options = f"pattern={pattern}&bind={bind}&send_timeout_ms=200"
    return [base(port, options + "&" + curve_options(keys, "intruder")), base(port, options)]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["pushpull", "pubsub"])
def test_unauthenticated_peers_cannot_publish_into_a_binding_subscriber(
    ctx: zmq.Context[Any], keys: dict[str, Path], pattern: str
) -> None:
    port = free_tcp_port()
    server_url = base(port, f"pattern={pattern}&bind=subscriber&" + curve_options(keys))
    with ZmqTransport(server_url, context=ctx) as server, server.subscriber(["t"]) as sub:
        for url in intruders(keys, port, pattern, "subscriber"):
            with ZmqTransport(url, context=ctx) as peer, peer.publisher("evil") as pub:
                deadline = time.monotonic() + NOTHING_ARRIVES_S
                while time.monotonic() < deadline:
                    # PUSH has no peer to send to (blocks -> timeout); PUB drops
                    with contextlib.suppress(TransportError):
                        pub.publish("t", b"injected")
                    assert sub.poll(timeout=0.05) == []
        assert server.curve_denied >= 1, "the unlisted key should reach ZAP and be refused"
    assert sub.stats.received == 0 and sub.stats.rejected == 0


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["pushpull", "pubsub"])
def test_unauthenticated_peers_cannot_receive_from_a_binding_publisher(
    ctx: zmq.Context[Any], keys: dict[str, Path], pattern: str
) -> None:
    port = free_tcp_port()
    server_url = base(port, f"pattern={pattern}&send_timeout_ms=2000&" + curve_options(keys))
    with ZmqTransport(server_url, context=ctx) as server, server.publisher("srv") as pub:
        peers = [
            ZmqTransport(url, context=ctx) for url in intruders(keys, port, pattern, "publisher")
        ]
        evil = [peer.subscriber(["t"]) for peer in peers]
        good_transport = ZmqTransport(server_url, context=ctx)
        good = good_transport.subscriber(["t"])
        try:
            deadline = time.monotonic() + 10
            while pattern == "pubsub" and pub.subscribers_for("t") < 1:
                assert time.monotonic() < deadline
                good.poll(timeout=0.05), pub.flush()
            time.sleep(0.3)  # give the intruders every chance to complete a handshake
            for i in range(100):  # PUSH would round-robin to an admitted intruder
                pub.publish("t", b"%d" % i)
            got = receive(good, 100)
            leaked = [env for sub in evil for env in receive(sub, 1, NOTHING_ARRIVES_S)]
            assert pub.subscribers_for("t") == (1 if pattern == "pubsub" else 0)
        finally:
            for closable in (*evil, *peers, good, good_transport):
                closable.close()
    assert [e.seq for e in got] == list(range(100)), "every message went to the admitted peer"
    assert leaked == []
    assert server.curve_denied >= 1


def test_keys_from_environment_and_z85_text(
    ctx: zmq.Context[Any], keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server_public, server_secret = zmq.auth.load_certificate(keys["server_secret"])
    client_public, client_secret = zmq.auth.load_certificate(keys["client_secret"])
    assert server_secret and client_secret
    monkeypatch.setenv("HARNESS_ZMQ_CURVE_SERVER_SECRET", server_secret.decode())
    monkeypatch.setenv("HARNESS_ZMQ_CURVE_CLIENT_SECRET", client_secret.decode())
    server_text, client_text = quote(server_public, safe=""), quote(client_public, safe="")
    url = base(  # z85 text uses & = / ? : it must be percent-encoded inside a URL
        free_tcp_port(),
        f"curve_server_public={server_text}&curve_client_public={client_text}"
        f"&curve_allowed_clients={client_text}",
    )
    with (
        ZmqTransport(url, context=ctx) as transport,
        transport.publisher("env") as pub,
        transport.subscriber(["t"]) as sub,
    ):
        pub.publish("t", b"x")
        assert [e.value for e in receive(sub, 1)] == [b"x"]
    for text in (transport.display_url, transport.identity, repr(transport.curve)):
        assert server_secret.decode() not in text and client_secret.decode() not in text


def test_secrets_never_appear_in_display_url_or_errors(
    ctx: zmq.Context[Any], keys: dict[str, Path]
) -> None:
    _, secret = zmq.auth.load_certificate(keys["server_secret"])
    assert secret
    text = secret.decode()
    quoted = quote(text, safe="")
    url = base(
        free_tcp_port(), f"curve_server_secret={quoted}&curve_server_public={keys['server']}"
    )
    with ZmqTransport(url, context=ctx) as transport:
        assert text not in transport.display_url and "***" in transport.display_url
        with pytest.raises(TransportError, match="curve_allowed_clients") as info:
            transport.publisher()
        assert text not in str(info.value)
    bad = text[:-1] + "~"  # not a file, not valid z85 of the right length... and not echoed
    for wrong in (bad, text[:20]):
        with pytest.raises(TransportError, match="curve_server_secret") as info:
            url = base(free_tcp_port(), f"curve_server_secret={quote(wrong, safe='')}")
            ZmqTransport(url, context=ctx)
        assert wrong not in str(info.value)
    with pytest.raises(TransportError, match="unknown option") as info:
        ZmqTransport(base(5555, f"curve_server_secret={quoted}&curve_sever_public=x"), context=ctx)
    assert text not in str(info.value)


def test_connecting_side_without_client_keys_is_a_clear_error(
    ctx: zmq.Context[Any], keys: dict[str, Path]
) -> None:
    url = base(free_tcp_port(), f"curve_server_public={keys['server']}")
    with (
        ZmqTransport(url, context=ctx) as transport,
        pytest.raises(TransportError, match="curve_client_public, curve_client_secret"),
    ):
        transport.subscriber(["t"])
