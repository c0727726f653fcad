"""ZeroMQ CURVE encryption + authentication for the ZeroMQ backend.

Roles follow the topology, not the pattern: the side that *binds* is the CURVE server (it holds
the server key pair and a ZAP handler that admits only listed client public keys); the side that
*connects* is a CURVE client (it needs the server's public key and its own key pair). A peer with
no key fails the CURVE handshake; a peer with an unlisted key is refused by the ZAP handler and
counted in ``ZapGuard.denied``. Either way nothing it sends is delivered and nothing is sent to it.

Keys are given as paths to zmq certificate files (``zmq.auth.create_certificates``) or as 40-char
z85 text, in the URL or in the environment (URL wins, like a CLI flag):

    HARNESS_ZMQ_CURVE_SERVER_PUBLIC  HARNESS_ZMQ_CURVE_SERVER_SECRET
    HARNESS_ZMQ_CURVE_CLIENT_PUBLIC  HARNESS_ZMQ_CURVE_CLIENT_SECRET
    HARNESS_ZMQ_CURVE_ALLOWED_CLIENTS   (a directory of *.key files, or a comma list; "*" = any)

z85 text uses ``& = / ? :``, so inside a URL it must be percent-encoded; files or the
environment avoid that (and keep secrets out of process listings). Secret values are never
echoed in errors or logs; only the option name is.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from transports.base import TransportOptionError

log = logging.getLogger("transports.zmq.curve")

ENV_PREFIX = "HARNESS_ZMQ_CURVE_"
KEY_OPTIONS = (
    "curve_server_public",
    "curve_server_secret",
    "curve_client_public",
    "curve_client_secret",
    "curve_allowed_clients",
)
Z85_KEY_LENGTH = 40
ALLOW_ANY = "*"


@dataclass(frozen=True, slots=True)
class CurveConfig:
    """Key material for one transport; all keys are z85 bytes. ``allowed`` None = any client."""

    server_public: bytes | None
    server_secret: bytes | None
    client_public: bytes | None
    client_secret: bytes | None
    allowed: frozenset[bytes] | None

    def __repr__(self) -> str:  # never print secrets, even in a traceback's locals
        return "CurveConfig(<redacted>)"


def _raw_values(options: Mapping[str, Any]) -> dict[str, str]:
    values = {}
    for name in KEY_OPTIONS:
        text = options.get(name) or os.environ.get(ENV_PREFIX + name.removeprefix("curve_").upper())
        if text:
            values[name] = str(text)
    return values


def _check_z85(text: str, option: str) -> bytes:
    raw = text.strip().encode()
    try:
        ok = len(raw) == Z85_KEY_LENGTH and len(z85.decode(raw)) == 32
    except (ValueError, KeyError, IndexError):
        ok = False
    if not ok:
        raise TransportOptionError(
            f"option {option}: expected a zmq certificate file path or {Z85_KEY_LENGTH}-character "
            "z85 key text (value not shown)"
        )
    return raw


def read_key(text: str, option: str, *, secret: bool) -> bytes:
    """A z85 key from a certificate file path or from z85 text; errors never echo the value."""
    if os.path.isfile(text):
        try:
            public, secret_key = zmq.auth.load_certificate(text)
        except (OSError, ValueError) as exc:
            raise TransportOptionError(
                f"option {option}: cannot read key file {text}: {exc}"
            ) from None
        if not secret:
            return public
        if secret_key is None:
            raise TransportOptionError(
                f"option {option}: {text} holds no secret key (use the .key_secret file)"
            )
        return secret_key
    return _check_z85(text, option)


def read_allowed(text: str) -> frozenset[bytes] | None:
    """Allowed client public keys: a directory of ``*.key`` files or a comma list; ``*`` = any."""
    if text.strip() == ALLOW_ANY:
        return None
    if os.path.isdir(text):
        try:
            keys = frozenset(zmq.auth.load_certificates(text))
        except (OSError, ValueError) as exc:
            raise TransportOptionError(
                f"option curve_allowed_clients: cannot read {text}: {exc}"
            ) from None
        if not keys:
            raise TransportOptionError(f"option curve_allowed_clients: no *.key files in {text}")
        return keys
    items = [item for item in text.split(",") if item.strip()]
    return frozenset(
        read_key(item.strip(), "curve_allowed_clients", secret=False) for item in items
    )


def load_curve_config(options: Mapping[str, Any]) -> CurveConfig | None:
    """CURVE settings from URL options and environment; None when none are given."""
    values = _raw_values(options)
    if not values:
        return None

    def key(name: str, secret: bool) -> bytes | None:
        return read_key(values[name], name, secret=secret) if name in values else None

    allowed_text = values.get("curve_allowed_clients")
    return CurveConfig(
        server_public=key("curve_server_public", False),
        server_secret=key("curve_server_secret", True),
        client_public=key("curve_client_public", False),
        client_secret=key("curve_client_secret", True),
        allowed=read_allowed(allowed_text) if allowed_text else frozenset(),
    )


def apply_client(sock: zmq.Socket[Any], cfg: CurveConfig) -> None:
    """Make a connecting socket a CURVE client of the binding side."""
    missing = [
        name
        for name, value in (
            ("curve_server_public", cfg.server_public),
            ("curve_client_public", cfg.client_public),
            ("curve_client_secret", cfg.client_secret),
        )
        if value is None
    ]
    if missing:
        raise TransportOptionError(f"CURVE: the connecting side also needs {', '.join(missing)}")
    sock.curve_serverkey = cfg.server_public
    sock.curve_publickey = cfg.client_public
    sock.curve_secretkey = cfg.client_secret


class _AllowList:
    """ZAP credentials provider: admits listed keys, counts and logs (once) the rest."""

    def __init__(self, allowed: frozenset[bytes] | None) -> None:
        self.allowed = allowed
        self.denied = 0

    def callback(self, domain: str, key: bytes) -> bool:
        if self.allowed is None or key in self.allowed:
            return True
        self.denied += 1
        if self.denied == 1:
            log.warning("CURVE: refused a client with an unlisted public key (domain %s)", domain)
        return False


class ZapGuard:
    """One ZAP authenticator thread per context, shared by every CURVE server socket in it.

    Each server socket gets its own ZAP domain and allow-list; the thread stops when the last
    domain is released, before the context is terminated.
    """

    _guards: dict[zmq.Context[Any], ZapGuard] = {}
    _lock = threading.Lock()

    def __init__(self, context: zmq.Context[Any]) -> None:
        self.context = context
        self.auth = ThreadAuthenticator(context, log=log)
        self.auth.start()
        self.domains: dict[str, _AllowList] = {}

    @classmethod
    def register(
        cls, context: zmq.Context[Any], allowed: frozenset[bytes] | None
    ) -> tuple[str, _AllowList]:
        with cls._lock:
            guard = cls._guards.get(context)
            if guard is None:
                guard = cls._guards[context] = ZapGuard(context)
            domain = f"harness-{uuid.uuid4().hex[:12]}"
            provider = _AllowList(allowed)
            guard.domains[domain] = provider
            guard.auth.configure_curve_callback(domain, credentials_provider=provider)
            return domain, provider

    @classmethod
    def release(cls, context: zmq.Context[Any], domain: str) -> None:
        with cls._lock:
            guard = cls._guards.get(context)
            if guard is None:
                return
            guard.domains.pop(domain, None)
            guard.auth.credentials_providers.pop(domain, None)
            if not guard.domains:
                del cls._guards[context]
                guard.auth.stop()


def apply_server(
    sock: zmq.Socket[Any], cfg: CurveConfig, context: zmq.Context[Any]
) -> tuple[str, _AllowList]:
    """Make a binding socket a CURVE server guarded by ZAP; returns its domain and allow-list."""
    if cfg.server_public is None or cfg.server_secret is None:
        raise TransportOptionError(
            "CURVE: the binding side needs curve_server_public and curve_server_secret"
        )
    if cfg.allowed is not None and not cfg.allowed:
        raise TransportOptionError(
            "CURVE: the binding side needs curve_allowed_clients (key files directory, comma "
            "list of public keys, or '*' to accept any CURVE client without authentication)"
        )
    domain, provider = ZapGuard.register(context, cfg.allowed)
    sock.zap_domain = domain.encode()
    sock.curve_server = True
    sock.curve_publickey = cfg.server_public
    sock.curve_secretkey = cfg.server_secret
    return domain, provider
