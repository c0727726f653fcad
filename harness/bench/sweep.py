"""Max sustainable throughput: multiply the rate until a step fails, then bisect.

A step is sustainable when nothing is lost or left unconsumed, p99 end-to-end latency stays
under the scenario's bound, and the producers kept the intended pace. The search stops when
the time budget would be exceeded, so a slow transport cannot stretch the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.bench.runner import TrialResult
from harness.bench.workload import Scenario

MIN_RATE = 50.0


def nice_rate(rate: float) -> float:
    """Round to 2 significant digits so step rates read well in tables."""
    if rate <= 0:
        return rate
    digits = len(str(int(rate))) - 2
    step = 10 ** max(digits, 0)
    return float(max(round(rate / step) * step, 1))


def find_max_sustainable(
    scenario: Scenario,
    run_step: Callable[[float], TrialResult],
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[list[TrialResult], float]:
    """Run the sweep; returns every step's result and the highest sustainable rate (0: none)."""
    sweep = scenario.sweep
    started = time.monotonic()
    steps: list[TrialResult] = []
    last_step_s = 0.0

    def run(rate: float) -> TrialResult | None:
        nonlocal last_step_s
        elapsed = time.monotonic() - started
        if steps and elapsed + last_step_s > sweep.budget_s:
            return None
        if should_stop():
            return None
        t0 = time.monotonic()
        result = run_step(rate)
        last_step_s = time.monotonic() - t0
        steps.append(result)
        return result

    if scenario.rates:
        best = 0.0
        for rate in sorted(scenario.rates):
            result = run(rate)
            if result is None:
                break
            if result.sustainable:
                best = max(best, rate)
        return steps, best

    good, bad = 0.0, 0.0
    rate = nice_rate(sweep.start or scenario.rate)
    while rate <= sweep.max_rate:
        result = run(rate)
        if result is None:
            return steps, good
        if result.sustainable:
            good = rate
            rate = nice_rate(rate * sweep.factor)
        else:
            bad = rate
            break
    if good == 0.0 and bad:  # even the first step failed: search downwards
        rate = nice_rate(bad / sweep.factor)
        while rate >= MIN_RATE:
            result = run(rate)
            if result is None:
                return steps, good
            if result.sustainable:
                good = rate
                break
            bad = rate
            rate = nice_rate(rate / sweep.factor)
    if not bad or not good:
        return steps, good
    for _ in range(sweep.bisect_steps):
        mid = nice_rate((good + bad) / 2)
        if mid in (good, bad):
            break
        result = run(mid)
        if result is None:
            break
        if result.sustainable:
            good = mid
        else:
            bad = mid
    return steps, good
