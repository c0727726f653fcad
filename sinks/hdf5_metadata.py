"""Run metadata stored as root attributes, so a file explains how it was produced.

Attributes are written before SWMR mode starts (SWMR forbids adding attributes later). Nested
values (settings, versions) are stored as JSON strings: readable from any HDF5 tool and never
pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.redaction import redact_argv

GIT_TIMEOUT_S = 2.0


def git_revision(cwd: str | os.PathLike[str] | None = None) -> str:
    """``git rev-parse HEAD`` (+ ``-dirty`` when tracked files changed); '' when git is absent."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if dirty else head


def package_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
    }


def _attr_value(value: Any) -> Any:
    """Scalars stay native HDF5 attributes; everything else becomes JSON text."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def run_attributes(run_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What the sink adds to the caller's metadata (settings must already be redacted)."""
    attrs: dict[str, Any] = {
        "versions": package_versions(),
        "git_revision": git_revision(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": redact_argv(sys.argv),
        "start_time_ns": time.time_ns(),
        "start_time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    attrs.update(run_metadata)
    return {key: _attr_value(value) for key, value in attrs.items()}


def write_attributes(node: h5py.Group | h5py.Dataset, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        node.attrs[key] = value


def read_attributes(node: h5py.Group | h5py.Dataset) -> dict[str, Any]:
    """Attributes with JSON text decoded back to objects (plain strings stay strings)."""
    out: dict[str, Any] = {}
    for key, value in node.attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out
