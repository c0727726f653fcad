"""Point tweepy at any API base URL (the real API, a proxy, or the local emulator).

tweepy hard-codes ``https://api.twitter.com``; instead of patching tweepy, its
``requests.Session`` gets an adapter that rewrites that host to the configured base on every
request. The real API and the emulator therefore run through the exact same tweepy code; only
the socket's destination differs. The adapter also sets a read timeout where tweepy sets none,
so a silent server cannot hang the producer forever.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from core.errors import UserError

TWITTER_API_URL = "https://api.twitter.com"
DEFAULT_TIMEOUT_S = 30.0


class RewriteHostAdapter(HTTPAdapter):
    """Sends ``https://api.twitter.com/<path>`` to ``<base>/<path>``."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__()
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserError(f"--api-url {base_url!r} is not an http(s):// URL")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._identity = base_url.rstrip("/") == TWITTER_API_URL

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if not self._identity and request.url:
            parts = urlsplit(request.url)
            request.url = urlunsplit(
                (self._scheme, self._netloc, self._prefix + parts.path, parts.query, "")
            )
            # Proxies were chosen for the original host; choose again for the real target.
            kwargs["proxies"] = get_environ_proxies(request.url)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout_s
        return super().send(request, **kwargs)


def route_session(session: requests.Session, base_url: str) -> None:
    """Make ``session`` send tweepy's requests to ``base_url`` (identity for the real API)."""
    session.mount(TWITTER_API_URL, RewriteHostAdapter(base_url))


class RedactSecret(logging.Filter):
    """Replaces a secret in a record's final text (tweepy logs request headers at DEBUG)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret:
            text = record.getMessage()
            if self._secret in text:
                record.msg = text.replace(self._secret, "***")
                record.args = ()
        return True


def redact_in_loggers(secret: str, names: tuple[str, ...] = ("tweepy.client", "tweepy.streaming")
                      ) -> None:
    """Install ``RedactSecret`` on the loggers that could print the bearer token."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecret) and f._secret == secret for f in logger.filters):
            logger.addFilter(RedactSecret(secret))
