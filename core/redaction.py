"""Secrets never shown: redaction of URLs, command lines and server replies.

Every log line, summary and HDF5 attribute that quotes a URL, a command line or a reply passes
through here, so a password, token or secret option is ``***`` wherever it would appear.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol
from urllib.parse import parse_qsl, quote, urlsplit


class Declared(Protocol):
    """A declared URL option (``transports.url.Option``): only whether it is secret matters."""

    @property
    def secret(self) -> bool: ...


_SECRET_WORDS = ("password", "secret", "token", "key_file_pass")


def is_secret_name(name: str) -> bool:
    """An option, flag or variable whose value must never be shown (``sasl_password``,
    ``curve_server_secret``, ``--bearer-token``, ``TWITTER_BEARER_TOKEN``)."""
    low = name.lower().replace("-", "_")
    return any(word in low for word in _SECRET_WORDS)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (for messages that
    quote a server's reply: a 401 body may echo the token it refused)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def redact_url(url: str, spec: Mapping[str, Declared] | None = None) -> str:
    """The URL with passwords and secret options replaced by ``***`` (safe to log)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostpart = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostpart}" if ":" in userinfo else f"{user}@{hostpart}"
    secret_names = {n for n, o in (spec or {}).items() if o.secret}
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        hidden = name in secret_names or is_secret_name(name)
        query.append(f"{name}={'***' if hidden else quote(value, safe='/:,.-_')}")
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + ("?" + "&".join(query) if query else "")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line safe to store: URLs redacted (``redact_url``), the value of any secret
    flag (``--bearer-token X``, ``--bearer-token=X``) replaced by ``***``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg.startswith("--") and "=" in arg and is_secret_name(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=***")
        elif arg.startswith("--") and is_secret_name(arg):
            out.append(arg)
            hide_next = True
        elif "://" in arg:
            out.append(redact_url(arg))
        else:
            out.append(arg)
    return out
