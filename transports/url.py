"""Transport URLs: ``scheme://hosts/path?option=value``, parsed with typed, documented options.

Every backend declares its options as ``Option`` objects, so a typo or a malformed value is
answered with one line that says what *is* accepted, instead of a traceback deep in a client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from transports.base import TransportOptionError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def parse_int(text: str) -> int:
    return int(text)


def parse_float(text: str) -> float:
    return float(text)


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    parse.__name__ = "|".join(allowed)
    return parse


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False

    def describe(self) -> str:
        kind = getattr(self.parse, "__name__", "value").removeprefix("parse_")
        return f"{self.name}=<{kind}> (default {self.default!r}): {self.help}"


@dataclass(frozen=True, slots=True)
class TransportUrl:
    """A parsed URL; ``options`` holds every declared option, typed, defaults filled in."""

    raw: str
    scheme: str
    netloc: str
    path: str
    options: Mapping[str, Any]

    @property
    def hosts(self) -> list[str]:
        return [h for h in self.netloc.split(",") if h]

    def redacted(self, spec: Mapping[str, Option] | None = None) -> str:
        return redact_url(self.raw, spec)


def split_url(url: str) -> tuple[str, str, str, list[tuple[str, str]]]:
    if "://" not in url:
        raise TransportOptionError(
            f"transport URL {url!r} has no scheme; expected e.g. kafka://host:9092 "
            "or zmq+tcp://127.0.0.1:5555"
        )
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    return parts.scheme.lower(), parts.netloc, unquote(parts.path), query


def parse_options(
    url: str, query: list[tuple[str, str]], spec: Mapping[str, Option]
) -> dict[str, Any]:
    values = {name: opt.default for name, opt in spec.items()}
    seen: set[str] = set()
    for name, text in query:
        if name in seen:
            raise TransportOptionError(
                f"option {name!r} is given twice in {redact_url(url, spec)}; give it once"
            )
        seen.add(name)
        opt = spec.get(name)
        if opt is None:
            accepted = "; ".join(o.describe() for o in spec.values()) or "none"
            raise TransportOptionError(
                f"unknown option {name!r} in {redact_url(url, spec)}; accepted: {accepted}"
            )
        try:
            values[name] = opt.parse(text)
        except ValueError as exc:
            shown = "***" if opt.secret else repr(text)
            raise TransportOptionError(
                f"bad value {shown} for option {name!r}: {exc} ({opt.describe()})"
            ) from None
    return values


def parse_url(url: str, spec: Mapping[str, Option]) -> TransportUrl:
    scheme, netloc, path, query = split_url(url)
    return TransportUrl(url, scheme, netloc, path, parse_options(url, query, spec))


_SECRET_WORDS = ("password", "secret", "token", "key_file_pass")


def is_secret_name(name: str) -> bool:
    """An option, flag or variable whose value must never be shown (``sasl_password``,
    ``curve_server_secret``, ``--bearer-token``, ``TWITTER_BEARER_TOKEN``)."""
    low = name.lower().replace("-", "_")
    return any(word in low for word in _SECRET_WORDS)


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


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (for messages that
    quote a server's reply: a 401 body may echo the token it refused)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def redact_url(url: str, spec: Mapping[str, Option] | None = None) -> str:
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
