"""Which engine serves a bootstrap address the harness started: a small note per broker.

A processor started by ``harness run`` (or in another terminal, against ``harness broker``)
only gets ``kafka://127.0.0.1:PORT``; the Kafka protocol does not say which server software
answers. The process that starts a broker writes its identity into a per-user runtime folder,
keyed by bootstrap address, with the broker's pids; a transport connecting to that address reads
it, and ignores a note whose processes are gone. So every HDF5 file and result names the engine
and version it ran on, not only "a Kafka cluster".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def _folder() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"harness-kafka-brokers-{os.getuid()}"


def _note(bootstrap: str) -> Path:
    first = bootstrap.split(",")[0].strip()
    return _folder() / (first.replace(":", "_").replace("/", "_") + ".json")


def announce(bootstrap: str, identity: str, pids: Iterable[int]) -> None:
    """Record that ``bootstrap`` is served by ``identity`` while any of ``pids`` lives."""
    with contextlib.suppress(OSError):
        folder = _folder()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        note = _note(bootstrap)
        tmp = note.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"bootstrap": bootstrap, "identity": identity,
                                   "pids": list(pids)}))
        os.replace(tmp, note)


def withdraw(bootstrap: str) -> None:
    with contextlib.suppress(OSError):
        _note(bootstrap).unlink()


def lookup(bootstrap: str) -> str | None:
    """The identity announced for the first host of ``bootstrap``, if its broker still runs."""
    try:
        data = json.loads(_note(bootstrap).read_text())
    except (OSError, ValueError):
        return None
    pids = [int(p) for p in data.get("pids", [])]
    if not any(_alive(p) for p in pids):
        return None
    identity = data.get("identity")
    return str(identity) if identity else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
