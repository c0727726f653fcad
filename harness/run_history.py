"""Run folders: every ``harness run`` / ``demo`` keeps its output in a folder of its own.

Layout (what the notebooks and users read)::

    <output-dir>/runs/<YYYYmmdd-HHMMSS>[-N]/<transport>/market.h5, sentiment.h5, logs/, ...
    <output-dir>/latest -> runs/<newest run>        (relative symlink, replaced atomically)

A new folder is claimed with ``mkdir`` (atomic: two runs starting in the same second get
``-2``, ``-3``...). While a run writes, it holds an exclusive ``flock`` on ``<run>/.lock``, so
``--overwrite`` can never delete a folder another run is writing to; the lock goes away with
the process, even after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from core.errors import UserError

RUNS = "runs"
LATEST = "latest"
LOCK = ".lock"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def new_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


@contextlib.contextmanager
def run_folder(
    output_dir: Path,
    run_name: str | None = None,
    overwrite: bool = False,
    replaces: Iterable[str] = (),
) -> Iterator[Path]:
    """Claim, lock and yield the folder this run writes to; ``latest`` points at it.

    ``run_name`` gives the folder a fixed name (else a timestamp); an existing one is reused
    only with ``overwrite``, and then only the entries named in ``replaces`` (this run's
    transport folders and summaries) are removed first. ``overwrite`` without a name reuses the
    run ``latest`` points at.
    """
    runs = output_dir / RUNS
    _check_latest(output_dir / LATEST)
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {runs}: {exc.strerror or exc}") from None
    latest = output_dir / LATEST
    created = not _existed(runs, run_name, latest, overwrite)
    path = _claim(runs, latest, run_name, overwrite)
    previous = os.readlink(latest) if latest.is_symlink() else None
    with _locked(path):
        if overwrite:
            for name in replaces:
                _remove(path / name)
        point_latest(output_dir, path)
        try:
            yield path
        except UserError:
            if created:  # a setting mistake stops a run before it measures anything
                _remove(path)
                _restore_latest(output_dir, previous)
            raise


def _existed(runs: Path, run_name: str | None, latest: Path, overwrite: bool) -> bool:
    """Whether this run reuses a folder that existed before it (so it must never remove it)."""
    if run_name is not None:
        return (runs / run_name).exists()
    return overwrite and latest.is_dir()


def _restore_latest(output_dir: Path, previous: str | None) -> None:
    if previous is None:
        with contextlib.suppress(FileNotFoundError):
            (output_dir / LATEST).unlink()
    else:
        _link_latest(output_dir, previous)


def _claim(runs: Path, latest: Path, run_name: str | None, overwrite: bool) -> Path:
    if run_name is not None:
        if not _NAME.fullmatch(run_name):
            raise UserError(f"--run-name {run_name!r}: use letters, digits, '.', '_' or '-' "
                            "(no slashes), starting with a letter or digit")
        path = runs / run_name
        try:
            path.mkdir()
        except FileExistsError:
            if not overwrite:
                raise UserError(f"{path} already exists; pass --overwrite to reuse it, or "
                                "choose another --run-name") from None
        return path
    if overwrite and latest.is_dir():
        return latest.resolve()
    stamp = new_stamp()
    for n in range(1, 1000):
        path = runs / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise UserError(f"cannot find a free run folder name under {runs} for {stamp}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``path/.lock`` exclusively for the block; a held lock is a one-line user error."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"{path} is in use by another run (pid {holder}); it is never "
                            "overwritten while written to: choose another --run-name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def point_latest(output_dir: Path, path: Path) -> None:
    """Make ``output_dir/latest`` a relative symlink to ``path`` (atomic rename over the old)."""
    _check_latest(output_dir / LATEST)
    _link_latest(output_dir, os.path.relpath(path, output_dir))


def _link_latest(output_dir: Path, target: str) -> None:
    tmp = output_dir / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, output_dir / LATEST)


def _check_latest(latest: Path) -> None:
    if latest.exists() and not latest.is_symlink():
        raise UserError(f"{latest} exists and is not a symlink; move it away so it can point "
                        "at the newest run")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
