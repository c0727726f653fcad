"""What flows from a source into the runtime: raw frames in, messages out, or a rejection.

A *frame* is one unit exactly as the source delivered it (a websocket message, an HTTP body, a
stream line) with its receive time; it is what a recording keeps and a replay feeds back, so the
same bytes go through the same decoder. A decoder turns a frame into ``Outgoing`` messages or
raises ``Rejected``: the frame then goes to the dead letters with its raw bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from core.recording import Frame

#: One message to publish: ``(topic, key, value, event_time_ns)``. A plain tuple: one is built
#: per message on the hot path. The runtime adds the envelope and the ``recv_ns`` header.
Outgoing = tuple[str, bytes | None, bytes, int]


class Rejected(ValueError):
    """A frame (or an item inside it) that cannot be published; ``kind`` is its dead-letter
    counter (``malformed_json``, ``missing_field``, ...)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class Decoder(Protocol):
    """A source's schema step: validation of one frame and the messages it yields."""

    def decode(self, frame: Frame) -> Sequence[Outgoing]:
        """The frame's messages in publishing order (none for control frames); raises
        ``Rejected`` for a frame that is unusable as a whole."""
        ...

    def counters(self) -> Mapping[str, object]:
        """Source-specific counts for progress lines and the summary (only the non-zero ones)."""
        ...
