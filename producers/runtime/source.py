"""What a source declares so the runtime can run it: ``Source``, and how sources are found.

A source is one folder ``producers/<name>/`` whose ``source.py`` defines ``SOURCE``. The
declaration names its topics and settings and gives three factories, each called with the
resolved settings: the decoder (its schema), the synthetic generator and the live client. Keep
``source.py`` light (import a live client's library inside its factory): every ``harness``
command reads every declaration to build its parser.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from core.dead_letters import DeadLetters
from core.recording import Frame
from core.settings import Setting
from producers.runtime.frames import Decoder
from producers.runtime.stop import StopAfter

#: The resolved settings of one run: the common ones and the source's own, by name.
Config = Mapping[str, Any]


class LiveSource(Protocol):
    """A live client: frames as they arrive, from a blocking iterator (its waits end when
    ``stop`` is reached) or an asynchronous one (run on an asyncio loop)."""

    def frames(self) -> Iterator[Frame] | AsyncIterator[Frame]: ...

    def counters(self) -> Mapping[str, object]:
        """Connection counts for progress lines and the summary (only the non-zero ones)."""
        ...


@dataclass(frozen=True)
class Source:
    #: ``harness produce <name>``; also the prefix of producer ids and dead-letter files.
    name: str
    help: str
    #: Every topic the source may publish (compose creates them; tests check they agree).
    topics: tuple[str, ...]
    #: Default ``--transport``; each source has its own, so two producers can run side by side.
    transport: str
    #: The source's own settings, shown after ``--transport`` and ``--source``.
    settings: tuple[Setting, ...]
    #: The decoder for a run, given its settings and its dead letters (for items refused inside
    #: a frame that is otherwise good).
    decoder: Callable[[Config, DeadLetters], Decoder]
    #: Synthetic frames, stamped with the receive times they are meant to arrive at (the
    #: runtime paces them at 1x when ``--rate`` > 0, flat out at 0). ``ValueError`` for bad
    #: settings becomes a one-line error.
    synthetic: Callable[[Config], Iterator[Frame]]
    #: The live client; raise ``UserError`` for settings it cannot use (before anything opens).
    live: Callable[[Config, StopAfter], LiveSource]
    #: ``--rate``: its default and what it counts.
    rate: float = 0.0
    rate_help: str = "synthetic messages/s, paced in real time; 0 = as fast as possible"
    #: ``--seed``: the generator's default seed (each source keeps the one its users know).
    seed: int = 1
    description: str | None = None
    #: Checks settings every mode needs (``ValueError`` becomes a one-line error).
    check: Callable[[Config], None] | None = None


def discover() -> list[Source]:
    """Every ``SOURCE`` under ``producers/``, by name: a new source is a new folder."""
    import producers

    sources = []
    for module in sorted(pkgutil.iter_modules(producers.__path__), key=lambda m: m.name):
        if module.ispkg and module.name != "runtime":
            declared = importlib.import_module(f"producers.{module.name}.source")
            sources.append(declared.SOURCE)
    return sources
