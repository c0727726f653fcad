"""CPU % and RSS of every process in a trial (workers and broker), sampled by the runner.

Sampling from outside keeps the workers' measuring loops free of extra work; psutil's
``cpu_percent`` is the share of one core since the previous sample (can exceed 100 %).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class ProcessSample:
    t_s: float
    role: str
    pid: int
    cpu_percent: float
    rss_mb: float


class ProcessSampler:
    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self._procs: dict[int, tuple[str, psutil.Process]] = {}
        self.samples: list[ProcessSample] = []

    def watch(self, role: str, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)  # prime: the first call always returns 0.0
        except psutil.Error:
            return
        self._procs[pid] = (role, proc)

    def sample(self) -> None:
        t_s = (time.time_ns() - self.start_ns) / 1e9
        for pid, (role, proc) in list(self._procs.items()):
            try:
                with proc.oneshot():
                    cpu = proc.cpu_percent(None)
                    rss = proc.memory_info().rss / 1e6
            except psutil.Error:
                del self._procs[pid]
                continue
            self.samples.append(ProcessSample(t_s, role, pid, cpu, rss))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per role: mean and max CPU %, max RSS (MB), over samples taken after the start."""
        out: dict[str, dict[str, float]] = {}
        for role in sorted({s.role for s in self.samples}):
            rows = [s for s in self.samples if s.role == role and s.t_s > 0]
            if not rows:
                continue
            out[role] = {
                "cpu_mean": sum(r.cpu_percent for r in rows) / len(rows),
                "cpu_max": max(r.cpu_percent for r in rows),
                "rss_max_mb": max(r.rss_mb for r in rows),
            }
        return out
