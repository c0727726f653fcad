"""Child processes that cannot outlive the command that started them.

``harness run`` starts producers and processors as processes of their own, each in its own
session (so a Ctrl-C in the terminal reaches only the runner, which stops them in order). A
session of their own also means nothing stops them when the runner dies: a ``kill -9`` of the
runner used to leave producers publishing and processors holding ports and files. Linux's
``PR_SET_PDEATHSIG`` closes that hole: the kernel sends the child a signal when its parent dies,
however it dies. The signal is SIGTERM, so the child still stops gracefully (producers announce
their end, processors write a final checkpoint).

Not on Linux, or if ``prctl`` is unavailable, the children are still in their own sessions and
the runner stops them on SIGTERM/SIGINT; only the ``kill -9`` case is then uncovered.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

_PR_SET_PDEATHSIG = 1
_LIBC = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: preexec only calls


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when this process dies (None where
    the OS has no such thing). Call it from the thread that lives as long as the children:
    Linux ties the signal to the thread that forked."""
    if _LIBC is None:
        return None
    parent = os.getpid()
    libc = _LIBC

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


class StopRequest:
    """SIGTERM and SIGINT set ``requested`` (a graceful stop) while installed; a second one of
    either raises ``KeyboardInterrupt`` for a user who will not wait."""

    def __init__(self) -> None:
        self.requested = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        sigs = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in sigs}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
