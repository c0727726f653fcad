"""Where a profiled process spent its time, derived from its profile after the run.

Nothing is hooked into the hot path: the split between transport, sink and own code is read from
the profile afterwards, as the time spent inside a few entry points:

- transport receive: functions in ``transports/`` named ``poll``, ``recv*``, ``_fetch*``,
  ``_poll*``, ``commit``, ``seek``, ``consume``;
- transport send: functions in ``transports/`` named ``publish``, ``send*``, ``_send*``,
  ``flush``, ``_flush*``;
- sink: functions in ``sinks/`` named ``append``, ``flush``, ``close``, ``add_dead_letter``,
  ``open_for_resume``;
- own code: the rest of the wall time.

An entry point called from another entry point is counted once (the outermost call wins), using
the caller -> callee edges cProfile records. Limits: cProfile sees only the thread that started it
(the main thread; a client's background I/O threads show up in CPU time but not in the split),
and it adds a fixed cost per Python call, so code made of many tiny calls looks slower than it is
(use ``--profile-sampler pyinstrument`` for those). Transport time includes the client's own
decoding/encoding work, not only waiting: read it together with CPU/wall and "blocked", the own
time of calls that put the thread to sleep (sleep, select/poll, lock acquire, socket I/O, pyzmq's
poll/recv/send) wherever they were called from: a consumer mostly in ``poll`` but far less
blocked is unpacking records in the client (the README's "Profiling" shows such a run).
"""

from __future__ import annotations

import os
import pstats
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent  # no imports: profiling must not load h5py
REPO_DIR = str(_REPO) + os.sep
TRANSPORTS_DIR = str(_REPO / "transports") + os.sep
SINKS_DIR = str(_REPO / "sinks") + os.sep

RECEIVE_NAMES = frozenset({"poll", "commit", "seek", "consume"})
RECEIVE_PREFIXES = ("recv", "_recv", "_fetch", "_poll")
SEND_NAMES = frozenset({"publish", "publish_many", "flush"})
SEND_PREFIXES = ("send", "_send", "_flush")
SINK_NAMES = frozenset({"append", "flush", "close", "add_dead_letter", "open_for_resume"})

#: Builtins that block the calling thread: time in them is waiting, not computing.
BLOCKING_BUILTIN = re.compile(
    r"(time\.sleep|select\.|\bpoll\b|epoll|zmq_poll|'acquire'|\bwait\b|'recv|'send|"
    r"'accept'|'connect'|'read' of '_io\.FileIO'|readinto)"
)

#: pyzmq's compiled calls show as Python functions; their own time is the wait inside libzmq.
ZMQ_BLOCKING = frozenset({"poll", "zmq_poll", "recv", "recv_multipart", "send", "send_multipart"})

#: The profiled thread computing above this share of the time it was not waiting for a core
#: (on a core vs blocked) = CPU-bound.
CPU_BOUND_RATIO = 0.7
#: A waiting process is attributed to the transport or the disk above this share of wall time.
WAIT_SHARE = 0.25

Category = str  # "transport_receive" | "transport_send" | "sink"
FuncKey = tuple[str, int, str]  # pstats: (filename, line, function name)


def category_of(filename: str, function: str) -> Category | None:
    """Which entry-point category a function belongs to (None: own code or a library)."""
    if filename.startswith(TRANSPORTS_DIR):
        if function in RECEIVE_NAMES or function.startswith(RECEIVE_PREFIXES):
            return "transport_receive"
        if function in SEND_NAMES or function.startswith(SEND_PREFIXES):
            return "transport_send"
    elif filename.startswith(SINKS_DIR) and function in SINK_NAMES:
        return "sink"
    return None


def is_blocking(filename: str, function: str) -> bool:
    """A call whose own time is the thread waiting (a builtin, or pyzmq's compiled poll/recv)."""
    if filename == "~":
        return bool(BLOCKING_BUILTIN.search(function))
    return f"{os.sep}zmq{os.sep}" in filename and function in ZMQ_BLOCKING


def package_of(filename: str, function: str) -> str:
    """A short owner for a function: its top-level package, stdlib module, or builtin's module."""
    if filename == "~":
        match = re.search(r"built-in method ([\w.]+)|of '([\w.]+)' objects|^<([\w.]+)>$", function)
        name = next((g for g in match.groups() if g), "") if match else ""
        head = name.split(".")[0] if "." in name else "builtins"
        return head.lstrip("_") or "builtins"
    if filename.startswith("<frozen "):
        return filename.removeprefix("<frozen ").split(".")[0].strip("<>_")
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1:]
            return rest[0].removesuffix(".py") if rest else filename
    if filename.startswith(REPO_DIR):
        return filename[len(REPO_DIR):].split(os.sep)[0].removesuffix(".py")
    for i, part in enumerate(parts):
        if re.fullmatch(r"python3\.\d+", part) and i + 1 < len(parts):
            return parts[i + 1].removesuffix(".py")
    return Path(filename).stem


@dataclass
class Breakdown:
    """Seconds of wall time per category, plus own-time hot spots by package and function."""

    categories: dict[Category, float] = field(default_factory=dict)
    blocked_s: float = 0.0
    packages: dict[str, float] = field(default_factory=dict)
    hot_functions: list[tuple[str, float]] = field(default_factory=list)


def breakdown_from_stats(stats: pstats.Stats) -> Breakdown:
    """Outermost time in each category, blocked builtins and own time per package."""
    raw: Mapping[FuncKey, Any] = stats.stats  # type: ignore[attr-defined]
    matched = {key: cat for key in raw if (cat := category_of(key[0], key[2])) is not None}
    out = Breakdown(categories=dict.fromkeys(("transport_receive", "transport_send", "sink"), 0.0))
    for key, cat in matched.items():
        _cc, _nc, _tt, ct, callers = raw[key]
        nested = sum(edge[3] for caller, edge in callers.items() if caller in matched)
        out.categories[cat] += max(ct - nested, 0.0)
    own: list[tuple[str, float]] = []
    for (filename, line, name), (_cc, _nc, tt, _ct, _callers) in raw.items():
        if is_blocking(filename, name):
            out.blocked_s += tt
            continue
        pkg = package_of(filename, name)
        out.packages[pkg] = out.packages.get(pkg, 0.0) + tt
        label = name if filename == "~" else f"{_short(filename)}:{line}({name})"
        own.append((label, tt))
    out.hot_functions = sorted(own, key=lambda item: -item[1])[:10]
    return out


def breakdown_from_frames(root: Any) -> Breakdown:
    """The same split from a pyinstrument frame tree (sampled wall time per call path)."""
    out = Breakdown(categories=dict.fromkeys(("transport_receive", "transport_send", "sink"), 0.0))
    own: dict[str, float] = {}
    for frame, cat in _walk(root):
        if cat is not None:
            out.categories[cat] += frame.time
        path = frame.file_path or "~"
        self_time = max(frame.total_self_time, 0.0)
        if self_time > 0:
            pkg = package_of(path, frame.function or "")
            out.packages[pkg] = out.packages.get(pkg, 0.0) + self_time
            label = f"{_short(path)}:{frame.line_no}({frame.function})"
            own[label] = own.get(label, 0.0) + self_time
    out.hot_functions = sorted(own.items(), key=lambda item: -item[1])[:10]
    return out


def _walk(root: Any) -> Iterator[tuple[Any, Category | None]]:
    """Every frame once; a category is reported only for the outermost matching frame."""
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        frame, inside = stack.pop()
        cat = None if inside else category_of(frame.file_path or "", frame.function or "")
        yield frame, cat
        stack.extend((child, inside or cat is not None) for child in frame.children)


@dataclass(frozen=True)
class Verdict:
    label: str  # "CPU-bound" | "waiting on the transport" | "waiting on disk" | "waiting elsewhere"
    reason: str


def verdict(
    wall_s: float,
    cpu_s: float,
    runqueue_s: float,
    transport_s: float,
    sink_s: float,
    blocked_s: float = 0.0,
    thread_cpu_s: float | None = None,
    thread_runqueue_s: float | None = None,
) -> Verdict:
    """Why the process took as long as it did, with the figures behind the call.

    "CPU-bound" is a property of the profiled (main) thread, the one doing the stage's work.
    Its wall time splits into on a core, runnable (waiting for a free core: the machine is
    busy) and off-CPU (blocked: waiting for input, a lock, a sleep). It is CPU-bound when it
    computed at least ``CPU_BOUND_RATIO`` of the time it was not waiting for a core: a busy
    machine stretches wall time but does not turn a waiting stage into a computing one. The
    thread's own scheduler counters (``thread_cpu_s``, ``thread_runqueue_s``, Linux schedstat)
    give the split directly. Without them the process-wide CPU and runqueue figures add up over
    every thread (a client's I/O threads too), so the thread's own time in blocking calls
    (``blocked_s``) bounds the split: a thread blocked 55 % of the time computed 45 % at most,
    whatever the process's CPU/wall.
    """
    wall = max(wall_s, 1e-9)
    blocked = min(blocked_s / wall, 1.0)
    if thread_cpu_s is not None:
        on_cpu, runnable = thread_cpu_s / wall, (thread_runqueue_s or 0.0) / wall
        off_cpu = max(1.0 - on_cpu - runnable, 0.0)
        figures = (f"main thread on a core {on_cpu:.0%} of wall, runnable waiting for a core "
                   f"{runnable:.0%}, off-CPU {off_cpu:.0%}; process CPU (all threads) "
                   f"{cpu_s / wall:.0%}")
    else:
        runnable = min(runqueue_s / wall, 1.0)
        on_cpu = min(cpu_s / wall, 1.0 - blocked)
        off_cpu = max(blocked, 1.0 - on_cpu - runnable)
        figures = (f"CPU {cpu_s / wall:.0%} of wall (all threads)"
                   + (f" (+{runnable:.0%} runnable, waiting for a core)" if runnable > 0 else ""))
    computing = on_cpu / max(on_cpu + off_cpu, 1e-9)
    figures += (f"; computing {computing:.0%} of the time not waiting for a core; main thread "
                f"blocked {blocked:.0%}; inside transport calls {transport_s / wall:.0%}, sink "
                f"writes {sink_s / wall:.0%}")
    if runnable >= 0.25:
        figures += f"; the machine is busy ({runnable:.0%} of wall waiting for a core)"
    if computing >= CPU_BOUND_RATIO:
        return Verdict("CPU-bound", figures)
    if transport_s >= sink_s and transport_s >= WAIT_SHARE * wall:
        return Verdict("waiting on the transport", figures)
    if sink_s >= WAIT_SHARE * wall:
        return Verdict("waiting on disk", figures)
    return Verdict(
        "waiting elsewhere",
        figures + "; the blocked time is in sleep/select/lock/socket calls elsewhere "
        "(pacing, idle sources, other threads)",
    )


def top_functions_text(prof_path: str, limit: int = 25) -> str:
    """The pstats tables by cumulative and by own time, as plain text."""
    import io

    parts: list[str] = []
    for order, title in (("cumulative", "cumulative time"), ("tottime", "own time (tottime)")):
        buffer = io.StringIO()
        pstats.Stats(prof_path, stream=buffer).sort_stats(order).print_stats(limit)
        parts.append(f"=== top {limit} functions by {title} ===\n{buffer.getvalue().strip()}\n")
    return "\n".join(parts)


def shares(seconds: Mapping[str, float], wall_s: float) -> dict[str, float]:
    """Seconds as fractions of wall time."""
    wall = max(wall_s, 1e-9)
    return {name: value / wall for name, value in seconds.items()}


def _short(filename: str) -> str:
    if filename.startswith(REPO_DIR):
        return filename[len(REPO_DIR):]
    parts = Path(filename).parts
    return os.sep.join(parts[-2:]) if len(parts) >= 2 else filename


def thread_schedstat_s(tid: int) -> tuple[float, float] | None:
    """(on-CPU, runnable-waiting) seconds of one thread of this process, or None (not Linux)."""
    try:
        fields = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def sum_runqueue_wait_s(task_dirs: Iterable[Path]) -> float:
    """Seconds this process's threads were runnable but not running (Linux schedstat)."""
    total = 0
    for task in task_dirs:
        try:
            fields = (task / "schedstat").read_text().split()
            total += int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9
