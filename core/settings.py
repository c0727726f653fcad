"""Settings with one precedence rule: CLI flag > ``HARNESS_*`` environment variable > default.

Each command declares its settings once as ``Setting`` objects; ``add_settings`` turns them into
argparse flags (default ``None`` so "not given" is visible) and ``resolve`` fills the rest from the
environment and defaults. ``describe`` prints the resolved values with secrets redacted.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.redaction import redact_url

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def parse_csv(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the parser for every comma-separated setting."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_speed(text: str) -> float:
    """Replay pace: ``1`` as recorded, ``N`` / ``Nx`` times faster, ``0`` or ``max`` flat out."""
    if text.lower() in ("max", "0"):
        return 0.0
    value = _finite(text.lower().removesuffix("x"))
    if value < 0:
        raise ValueError("speed must be >= 0 (0 or max = as fast as possible)")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text.strip()!r} is not a finite number")
    return value


def _at_least(
    convert: Callable[[str], Any], low: float, *, inclusive: bool, label: str
) -> Callable[[str], Any]:
    """A parse function for numbers ``>= low`` (``inclusive``) or ``> low``; floats must be
    finite (``nan`` compares false everywhere and would mean "never", ``inf`` "for ever")."""
    expected = (
        f"{'a finite number' if convert is float else 'an integer'} {'>=' if inclusive else '>'}"
        f" {low:g}"
    )

    def parse(text: str) -> Any:
        value = _finite(text) if convert is float else convert(text)
        if value < low or (value == low and not inclusive):
            reason = "is negative" if value < 0 else f"is not above {low:g}"
            raise ValueError(f"{value:g} {reason}; expected {expected}")
        return value

    parse.__name__ = label
    return parse


#: Seconds and rates (0 usually meaning "no limit" or "as fast as possible").
non_negative_float = _at_least(float, 0, inclusive=True, label="number>=0")
#: Intervals that must pass: flush, progress, timeouts.
positive_float = _at_least(float, 0, inclusive=False, label="number>0")
#: Counts and limits (0 usually meaning "no limit").
non_negative_int = _at_least(int, 0, inclusive=True, label="integer>=0")
positive_int = _at_least(int, 0, inclusive=False, label="integer>0")


def non_empty_path(text: str) -> Path:
    """A file or folder name; an empty one would silently mean the current folder."""
    if not text.strip():
        raise ValueError("an empty path names no file")
    return Path(text)


def folder_path(text: str) -> Path:
    """A folder to write into: not empty, and not the name of an existing file."""
    path = non_empty_path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{text} is a file, not a folder")
    return path


non_empty_path.__name__ = "path"
folder_path.__name__ = "folder"


class SettingError(ValueError):
    """A setting's value is malformed; message names the flag and the environment variable."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # python name; flag is --name-with-dashes, env is HARNESS_NAME
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    env: str | None = None  # override the environment variable name (e.g. TWITTER_BEARER_TOKEN)
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env or "HARNESS_" + self.name.upper()


def add_settings(parser: argparse.ArgumentParser, settings: Iterable[Setting]) -> None:
    for s in settings:
        kwargs: dict[str, Any] = {
            "dest": s.name,
            "default": None,
            "help": f"{s.help} [env {s.env_var}; default {'***' if s.secret else s.default!r}]",
        }
        if s.parse is parse_bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _explained(s.parse)
            kwargs["metavar"] = s.name.upper()
            if s.choices:
                kwargs["choices"] = s.choices
        parser.add_argument(s.flag, **kwargs)


def _explained(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: its ValueError's reason is shown (argparse would drop it)."""
    if parse in (str, int, float):
        return parse

    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: {exc}") from None

    checked.__name__ = getattr(parse, "__name__", "value")
    return checked


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit code 2 (the harness
    rule for every user mistake); ``--help`` still shows the usage."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def resolve(
    args: argparse.Namespace | Mapping[str, Any],
    settings: Iterable[Setting],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    out: dict[str, Any] = {}
    for s in settings:
        value = given.get(s.name)
        if value is None and s.env_var in env and env[s.env_var] != "":
            raw = env[s.env_var]
            try:
                value = s.parse(raw)
            except ValueError as exc:
                shown = "***" if s.secret else repr(raw)
                raise SettingError(
                    f"{s.env_var}={shown} is not valid for {s.flag}: {exc}"
                ) from None
            if s.choices and value not in s.choices:
                raise SettingError(
                    f"{s.env_var}={value!r} is not one of {', '.join(s.choices)}"
                )
        if value is None:
            value = s.default
        out[s.name] = value
    return out


def describe(resolved: Mapping[str, Any], settings: Iterable[Setting]) -> list[str]:
    """``name = value`` lines, secrets and URL passwords redacted; safe to print or store."""
    lines = []
    for s in settings:
        value = resolved.get(s.name)
        if s.secret:
            shown = "***" if value else "(not set)"
        elif isinstance(value, str) and "://" in value:
            shown = redact_url(value)
        elif isinstance(value, Path):
            shown = repr(str(value))
        else:
            shown = repr(value)
        lines.append(f"{s.name} = {shown}")
    return lines


def redacted(resolved: Mapping[str, Any], settings: Iterable[Setting]) -> dict[str, Any]:
    """The resolved settings as a dict fit for results metadata (secrets removed)."""
    secret = {s.name for s in settings if s.secret}
    return {
        k: (
            "***" if k in secret and v
            else redact_url(v) if isinstance(v, str)
            else str(v) if isinstance(v, Path)
            else v
        )
        for k, v in resolved.items()
    }
