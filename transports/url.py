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


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer option within ``low..high`` (``None``: that end is open)."""

    def parse(text: str) -> int:
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"expected an {parse.__name__.replace('int', 'integer', 1)}")
        return value

    if low is not None and high is not None:
        parse.__name__ = f"int in {low}..{high}"
    elif low is not None:
        parse.__name__ = f"int >= {low}"
    elif high is not None:
        parse.__name__ = f"int <= {high}"
    else:
        parse.__name__ = "int"
    return parse


def text(*, required: bool = False) -> Callable[[str], str]:
    """A free-text option; ``required`` refuses an empty value."""

    def parse(value: str) -> str:
        if required and not value:
            raise ValueError("expected a non-empty value")
        return value

    parse.__name__ = "str"
    return parse


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
    #: The URL with secrets replaced by ``***``: what logs, errors and results show.
    display_url: str

    @property
    def hosts(self) -> list[str]:
        return [h for h in self.netloc.split(",") if h]


def split_url(url: str) -> tuple[str, str, str, list[tuple[str, str]]]:
    if "://" not in url:
        raise TransportOptionError(
            f"transport URL {url!r} has no scheme; expected e.g. kafka://host:9092 "
            "or zmq+tcp://127.0.0.1:5555"
        )
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    return parts.scheme.lower(), parts.netloc, unquote(parts.path), query


def parse_url(url: str, spec: Mapping[str, Option]) -> TransportUrl:
    """Split ``url`` and parse its query against the options ``spec`` declares.

    The one place every backend's options are read: an option given twice, an unknown one
    (answered with the list of accepted ones) and a malformed value are each one line, and a
    secret's value is never part of it."""
    scheme, netloc, path, query = split_url(url)
    display = redact_url(url, spec)
    values = {name: opt.default for name, opt in spec.items()}
    seen: set[str] = set()
    for name, value in query:
        if name in seen:
            raise TransportOptionError(f"option {name!r} is given twice in {display}; give it once")
        seen.add(name)
        opt = spec.get(name)
        if opt is None:
            accepted = "; ".join(o.describe() for o in spec.values()) or "none"
            raise TransportOptionError(
                f"unknown option {name!r} in {display}; accepted: {accepted}"
            )
        try:
            values[name] = opt.parse(value)
        except ValueError as exc:
            shown = "***" if opt.secret else repr(value)
            raise TransportOptionError(
                f"bad value {shown} for option {name!r}: {exc} ({opt.describe()})"
            ) from None
    return TransportUrl(url, scheme, netloc, path, values, display)


def option_table(*options: Option) -> dict[str, Option]:
    """A backend's options by name, as ``parse_url`` reads them."""
    table = {o.name: o for o in options}
    if len(table) != len(options):
        raise ValueError("an option is declared twice")
    return table
