"""``harness --profile DIR``: every harness process profiles itself into DIR.

Each stage is its own process, so the flag is global: the process that gets it exports
``HARNESS_PROFILE`` (and ``HARNESS_PROFILE_MEMORY`` / ``HARNESS_PROFILE_SAMPLER``) to its
environment, and every child ``harness`` command or bench worker it starts profiles itself too.
Off by default; when off, no profiler object exists and nothing runs per message.

Per process, into DIR, named ``<command>-<stage>-<pid>``:

- ``.prof``: cProfile data (``pstats.Stats(path)``, SnakeViz);
- ``.txt``: the top 25 functions by cumulative and by own time, then the split below;
- ``.json``: wall and CPU seconds, CPU/wall, time inside transport receive/send and sink writes
  (see ``harness.profiling_analysis`` for how and its limits), a verdict, peak RSS, own time per
  package, and with ``--profile-memory`` the top tracemalloc allocation sites and their growth.

``--profile-sampler pyinstrument`` replaces cProfile in each process by pyinstrument's sampler
(``.html`` + ``.pyinstrument.txt``), for code where cProfile's per-call cost distorts the picture;
``--profile-sampler py-spy`` attaches py-spy if it is on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import os
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from core.errors import UserError
from core.redaction import redact_argv
from harness import profiling_analysis as analysis

log = logging.getLogger("harness.profiling")

ENV_DIR = "HARNESS_PROFILE"
ENV_MEMORY = "HARNESS_PROFILE_MEMORY"
ENV_SAMPLER = "HARNESS_PROFILE_SAMPLER"
SAMPLERS = ("cprofile", "pyinstrument", "py-spy")
MEMORY_SITES = 15
MEMORY_FIRST_SNAPSHOT_S = 2.0  # after start-up allocations, so growth means growth


@dataclass(frozen=True)
class ProfileSettings:
    directory: Path
    memory: bool = False
    sampler: str = "cprofile"
    memory_first_snapshot_s: float = MEMORY_FIRST_SNAPSHOT_S

    def export(self) -> None:
        """Put the settings in the environment so child processes profile themselves too."""
        os.environ[ENV_DIR] = str(self.directory)
        os.environ[ENV_MEMORY] = "1" if self.memory else "0"
        os.environ[ENV_SAMPLER] = self.sampler


def settings_from_environment() -> ProfileSettings | None:
    """Profiling settings inherited from a parent process (None: profiling is off)."""
    directory = os.environ.get(ENV_DIR, "").strip()
    if not directory:
        return None
    memory = os.environ.get(ENV_MEMORY, "0").strip().lower()
    if memory not in ("", "0", "1", "true", "false", "yes", "no"):
        raise UserError(f"{ENV_MEMORY}={memory!r}: expected 1/0, true/false or yes/no")
    return _checked(
        Path(directory),
        memory in ("1", "true", "yes"),
        os.environ.get(ENV_SAMPLER, "cprofile").strip().lower() or "cprofile",
    )


def settings_from_args(args: argparse.Namespace) -> ProfileSettings | None:
    """CLI flags win over the environment; None when neither asks for profiling."""
    inherited = settings_from_environment()
    directory = getattr(args, "profile", None)
    if directory is None and inherited is None:
        if getattr(args, "profile_memory", False) or getattr(args, "profile_sampler", None):
            raise UserError("--profile-memory and --profile-sampler need --profile DIR")
        return None
    base = inherited or ProfileSettings(Path(directory or "."))
    return _checked(
        Path(directory) if directory else base.directory,
        bool(getattr(args, "profile_memory", False)) or base.memory,
        getattr(args, "profile_sampler", None) or base.sampler,
    )


def _checked(directory: Path, memory: bool, sampler: str) -> ProfileSettings:
    if sampler not in SAMPLERS:
        raise UserError(f"unknown profile sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler == "py-spy" and shutil.which("py-spy") is None:
        raise UserError(
            "py-spy is not installed on this machine (not on PATH); "
            "use --profile-sampler pyinstrument or the default cProfile"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"profile folder {directory}: {exc.strerror or exc}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"profile folder {directory} is not writable")
    return ProfileSettings(directory.resolve(), memory, sampler)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the profiling flags to ``parser`` and every nested subcommand parser.

    Accepted before or after the subcommand (``harness --profile D run`` and ``harness run
    --profile D``); on subparsers the default is SUPPRESS so they never erase a global value.
    """
    _add_flags(parser, top_level=True)
    for sub in _subparsers(parser):
        _add_flags(sub, top_level=False)


def _add_flags(parser: argparse.ArgumentParser, top_level: bool) -> None:
    if any("--profile" in action.option_strings for action in parser._actions):
        return
    default: dict[str, Any] = {} if top_level else {"default": argparse.SUPPRESS}
    group = parser.add_argument_group("profiling (off by default; children inherit it)")
    group.add_argument(
        "--profile", metavar="DIR", **default,
        help=f"profile this process and every harness process it starts into DIR (env {ENV_DIR})",
    )
    group.add_argument(
        "--profile-memory", action="store_true", **default,
        help="also trace allocations (tracemalloc): top sites and growth; slows the process",
    )
    group.add_argument(
        "--profile-sampler", choices=SAMPLERS, **default,
        help="cprofile (default), pyinstrument (sampling, for many tiny calls) or py-spy",
    )


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _subparsers(sub)


def stage_of(args: argparse.Namespace) -> str:
    """The subcommand below the command (``binance`` in ``produce binance``), else ``main``."""
    for name in ("source_name", "processor_name", "profile_command", "stage"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            return value
    return "main"


def run_profiled(args: argparse.Namespace, func: Callable[[argparse.Namespace], Any]) -> Any:
    """Call ``func(args)``, profiled when the flags or the environment ask for it."""
    settings = settings_from_args(args)
    if settings is None or getattr(args, "command", None) == "profile":
        return func(args)  # reading profiles must not write one into the folder being read
    settings.export()
    with profile_process(settings, str(getattr(args, "command", "harness")), stage_of(args)):
        return func(args)


@contextlib.contextmanager
def profile_from_environment(command: str, stage: str) -> Iterator[None]:
    """For processes started without the CLI (bench workers): profile if the parent asked."""
    settings = settings_from_environment()
    if settings is None:
        yield
        return
    with profile_process(settings, command, stage):
        yield


@contextlib.contextmanager
def profile_process(settings: ProfileSettings, command: str, stage: str) -> Iterator[None]:
    """Profile the enclosed block and write this process's files when it ends (even on error)."""
    session = ProfileSession(settings, command, stage)
    session.start()
    try:
        with session.terminate_cleanly():
            yield
    finally:
        session.stop()


class ProfileSession:
    """One process's profile: the profiler, the clocks, the memory snapshots, the output."""

    def __init__(self, settings: ProfileSettings, command: str, stage: str) -> None:
        self.settings = settings
        self.name = f"{_safe(command)}-{_safe(stage)}-{os.getpid()}"
        self.base = settings.directory / self.name
        self.command, self.stage = command, stage
        self._profiler: Any = None
        self._spy: subprocess.Popen[bytes] | None = None
        self._first_memory: tracemalloc.Snapshot | None = None
        self._memory_timer: threading.Timer | None = None

    def start(self) -> None:
        self.settings.directory.mkdir(parents=True, exist_ok=True)
        if self.settings.memory:
            tracemalloc.start(10)
            self._memory_timer = threading.Timer(
                self.settings.memory_first_snapshot_s, self._first_snapshot
            )
            self._memory_timer.daemon = True
            self._memory_timer.start()
        self._started_wall = time.perf_counter()
        self._started_cpu = _cpu_times()
        self._started_runqueue = _runqueue_s()
        self._thread_id = threading.get_native_id()  # the thread doing the stage's work
        self._started_thread = analysis.thread_schedstat_s(self._thread_id)
        if self.settings.sampler == "pyinstrument":
            from pyinstrument import Profiler

            self._profiler = Profiler(interval=0.001, async_mode="disabled")
            self._profiler.start()
        elif self.settings.sampler == "py-spy":
            self._spy = _start_py_spy(self.base)
        else:
            self._profiler = cProfile.Profile()
            self._profiler.enable()

    def _first_snapshot(self) -> None:
        if tracemalloc.is_tracing():
            self._first_memory = tracemalloc.take_snapshot()

    @contextlib.contextmanager
    def terminate_cleanly(self) -> Iterator[None]:
        """A SIGTERM with no handler would kill the process before its profile is written."""
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        ):
            yield
            return

        def raise_exit(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, raise_exit)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def stop(self) -> None:
        wall_s = time.perf_counter() - self._started_wall
        user_s, sys_s = (a - b for a, b in zip(_cpu_times(), self._started_cpu, strict=True))
        runqueue_s = max(_runqueue_s() - self._started_runqueue, 0.0)
        thread_now = analysis.thread_schedstat_s(self._thread_id)
        thread = None if thread_now is None or self._started_thread is None else tuple(
            max(a - b, 0.0) for a, b in zip(thread_now, self._started_thread, strict=True))
        files: dict[str, str] = {}
        breakdown = analysis.Breakdown()
        profiler_name = self.settings.sampler
        try:
            if isinstance(self._profiler, cProfile.Profile):
                self._profiler.disable()
                files["prof"] = str(self.base.with_suffix(".prof"))
                self._profiler.dump_stats(files["prof"])
                stats = pstats.Stats(files["prof"])
                breakdown = analysis.breakdown_from_stats(stats)
                text = analysis.top_functions_text(files["prof"])
            elif self._profiler is not None:
                session = self._profiler.stop()
                files["html"] = str(self.base.with_suffix(".html"))
                Path(files["html"]).write_text(self._profiler.output_html())
                files["sampler_text"] = str(self.base.with_suffix(".pyinstrument.txt"))
                Path(files["sampler_text"]).write_text(
                    self._profiler.output_text(unicode=False, color=False)
                )
                root = session.root_frame()
                if root is not None:
                    breakdown = analysis.breakdown_from_frames(root)
                text = "pyinstrument profile: see " + Path(files["sampler_text"]).name + "\n"
            else:
                text = "py-spy profile: see " + Path(_stop_py_spy(self._spy, self.base)).name
                files["py_spy"] = str(self.base.with_suffix(".speedscope.json"))
            memory = self._memory_report() if self.settings.memory else None
            files["json"] = str(self.base.with_suffix(".json"))
            files["txt"] = str(self.base.with_suffix(".txt"))
            report = self._report(wall_s, user_s, sys_s, runqueue_s, breakdown, memory, files,
                                  thread)
            report["profiler"] = profiler_name
            Path(files["txt"]).write_text(text + "\n" + summary_text(report))
            Path(files["json"]).write_text(json.dumps(report, indent=2) + "\n")
            log.info("profile of %s written to %s.*", self.name, self.base)
        except OSError as exc:  # a full disk must not turn a finished run into a failure
            log.error("could not write the profile of %s: %s", self.name, exc)

    def _report(
        self,
        wall_s: float,
        user_s: float,
        sys_s: float,
        runqueue_s: float,
        breakdown: analysis.Breakdown,
        memory: dict[str, Any] | None,
        files: dict[str, str],
        thread: tuple[float, ...] | None = None,
    ) -> dict[str, Any]:
        cats = breakdown.categories
        transport_s = cats.get("transport_receive", 0.0) + cats.get("transport_send", 0.0)
        sink_s = cats.get("sink", 0.0)
        cpu_s = user_s + sys_s
        seconds = {
            "transport_receive": cats.get("transport_receive", 0.0),
            "transport_send": cats.get("transport_send", 0.0),
            "sink": sink_s,
            "own": max(wall_s - transport_s - sink_s, 0.0),
        }
        thread_cpu_s, thread_runqueue_s = thread if thread else (None, None)
        decided = analysis.verdict(
            wall_s, cpu_s, runqueue_s, transport_s, sink_s, breakdown.blocked_s,
            thread_cpu_s, thread_runqueue_s,
        )
        return {
            "process": self.name,
            "command": self.command,
            "stage": self.stage,
            "pid": os.getpid(),
            "argv": redact_argv(sys.argv),
            "transport": _transport_scheme(sys.argv),
            "wall_s": wall_s,
            "cpu_s": cpu_s,
            "cpu_user_s": user_s,
            "cpu_sys_s": sys_s,
            "cpu_wall_ratio": cpu_s / wall_s if wall_s > 0 else 0.0,
            "runqueue_wait_s": runqueue_s,
            # the profiled thread alone (Linux schedstat), what the verdict is based on
            "main_thread_cpu_s": thread_cpu_s,
            "main_thread_runqueue_s": thread_runqueue_s,
            "seconds": seconds,
            "share_of_wall": analysis.shares(seconds, wall_s),
            "blocked_in_builtins_s": breakdown.blocked_s,
            "blocked_share": breakdown.blocked_s / wall_s if wall_s > 0 else 0.0,
            "verdict": decided.label,
            "reason": decided.reason,
            "peak_rss_mb": _peak_rss_mb(),
            "threads_at_end": threading.active_count(),
            "own_time_by_package": [
                [name, round(s, 6), round(s / wall_s, 4) if wall_s > 0 else 0.0]
                for name, s in sorted(breakdown.packages.items(), key=lambda i: -i[1])[:12]
            ],
            "hot_functions": [[name, round(s, 6)] for name, s in breakdown.hot_functions],
            "memory": memory,
            "files": {k: Path(v).name for k, v in files.items()},
            "method": "outermost cumulative time of transport/sink entry points (main thread)",
        }

    def _memory_report(self) -> dict[str, Any]:
        if self._memory_timer is not None:
            self._memory_timer.cancel()
        last = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        top = [
            {"site": _site(stat.traceback), "kib": stat.size / 1024, "blocks": stat.count}
            for stat in last.statistics("lineno")[:MEMORY_SITES]
        ]
        growth = None
        if self._first_memory is not None:
            growth = [
                {"site": _site(stat.traceback), "kib_growth": stat.size_diff / 1024,
                 "kib": stat.size / 1024}
                for stat in last.compare_to(self._first_memory, "lineno")[:MEMORY_SITES]
            ]
        return {
            "traced_current_mib": current / 2**20,
            "traced_peak_mib": peak / 2**20,
            "top_sites": top,
            "growth_since_s": None if growth is None else self.settings.memory_first_snapshot_s,
            "growth": growth,
        }


def summary_text(report: dict[str, Any]) -> str:
    """The split and verdict of one process as a few lines of text."""
    share = report["share_of_wall"]
    lines = [
        f"=== {report['process']}: {report['verdict']} ===",
        f"wall {report['wall_s']:.2f} s, CPU {report['cpu_s']:.2f} s "
        f"(user {report['cpu_user_s']:.2f}, sys {report['cpu_sys_s']:.2f}), "
        f"CPU/wall {report['cpu_wall_ratio']:.2f}, waiting for a core "
        f"{report['runqueue_wait_s']:.2f} s",
        *([f"main thread (the verdict's basis): on a core {report['main_thread_cpu_s']:.2f} s, "
           f"runnable waiting for a core {report['main_thread_runqueue_s']:.2f} s"]
          if report.get("main_thread_cpu_s") is not None else []),
        f"transport receive {share['transport_receive']:.1%}, transport send "
        f"{share['transport_send']:.1%}, sink {share['sink']:.1%}, own code {share['own']:.1%} "
        "of wall",
        f"blocked (sleep/select/poll/lock/socket waits, anywhere) {report['blocked_share']:.1%} "
        "of wall",
        f"reason: {report['reason']}",
        f"peak RSS {report['peak_rss_mb']:.1f} MiB",
        "own (non-waiting) time by package, % of wall: " + ", ".join(
            f"{name} {frac:.0%}" for name, _s, frac in report["own_time_by_package"][:8]
        ),
    ]
    memory = report.get("memory")
    if memory:
        lines.append(f"tracemalloc: peak {memory['traced_peak_mib']:.1f} MiB, "
                     f"at end {memory['traced_current_mib']:.1f} MiB; top sites:")
        lines += [f"  {s['kib']:10.1f} KiB  {s['blocks']:8d} blocks  {s['site']}"
                  for s in memory["top_sites"]]
        if memory.get("growth"):
            lines.append(f"growth since {memory['growth_since_s']:.0f} s after start:")
            lines += [f"  {g['kib_growth']:+10.1f} KiB  {g['site']}" for g in memory["growth"]]
    return "\n".join(lines) + "\n"


def _cpu_times() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime, usage.ru_stime


def _runqueue_s() -> float:
    return analysis.sum_runqueue_wait_s(Path("/proc/self/task").glob("*"))


def _peak_rss_mb() -> float:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return peak_kib / 1024


def _site(traceback: tracemalloc.Traceback) -> str:
    frame = traceback[0]
    return f"{analysis._short(frame.filename)}:{frame.lineno}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in text) or "main"


def _transport_scheme(argv: list[str]) -> str:
    """The transport a process was pointed at (scheme only: no hosts, no secrets)."""
    for i, arg in enumerate(argv):
        value = None
        if arg.startswith("{"):  # a bench worker's JSON config
            with contextlib.suppress(ValueError, AttributeError):
                value = str(json.loads(arg).get("url") or "")
        elif arg == "--transport" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--transport="):
            value = arg.split("=", 1)[1]
        if value:
            return value.split("://", 1)[0]
    return os.environ.get("HARNESS_TRANSPORT", "").split("://", 1)[0]


def _start_py_spy(base: Path) -> subprocess.Popen[bytes]:
    out = base.with_suffix(".speedscope.json")
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(os.getpid()), "--format", "speedscope",
         "--output", str(out), "--rate", "200"],
        stdout=subprocess.DEVNULL,
        stderr=base.with_suffix(".py-spy.log").open("wb"),
    )


def _stop_py_spy(spy: subprocess.Popen[bytes] | None, base: Path) -> str:
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    return str(base.with_suffix(".speedscope.json"))
