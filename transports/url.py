"""Transport URLs: ``scheme://hosts/path?option=value``, parsed with typed, documented options.

Every backend declares its options as ``Option`` objects, so a typo or a malformed value is
answered with one line that says what *is* accepted, instead of a traceback deep in a client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from core.redaction import redact_url
from transports.base import TransportOptionError


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
