"""Max sustainable throughput: multiply the rate until a step fails, then bisect.

A step is sustainable when nothing is lost or left unconsumed, p99 end-to-end latency stays
under the scenario's bound, and the producers kept the intended pace. The search stops when
the time budget would be exceeded, so a slow transport cannot stretch the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass
class SweepOutcome:
    steps: list[TrialResult] = field(default_factory=list)
    best: float = 0.0  # highest sustainable rate found (0: none)
    #: why the search ended: "failure" (bracketed by a failing rate), "budget" (time ran out,
    #: the true maximum may be higher), "max_rate" (every rate up to the ceiling held), "stopped"
    limited_by: str = "failure"


def find_max_sustainable(
    scenario: Scenario,
    run_step: Callable[[float], TrialResult],
    should_stop: Callable[[], bool] = lambda: False,
) -> SweepOutcome:
    """Run the sweep; every step's result, the highest sustainable rate, and what limited it."""
    outcome = SweepOutcome()
    found = _search(scenario, run_step, should_stop, outcome)
    outcome.best = found
    return outcome


def _search(
    scenario: Scenario,
    run_step: Callable[[float], TrialResult],
    should_stop: Callable[[], bool],
    outcome: SweepOutcome,
) -> float:
    sweep = scenario.sweep
    started = time.monotonic()
    steps = outcome.steps
    last_step_s = 0.0

    def run(rate: float) -> TrialResult | None:
        nonlocal last_step_s
        elapsed = time.monotonic() - started
        if steps and elapsed + last_step_s > sweep.budget_s:
            outcome.limited_by = "budget"
            return None
        if should_stop():
            outcome.limited_by = "stopped"
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
        if steps and all(r.sustainable for r in steps) and outcome.limited_by == "failure":
            outcome.limited_by = "max_rate"
        return best

    good, bad = 0.0, 0.0
    rate = nice_rate(sweep.start or scenario.rate)
    while rate <= sweep.max_rate:
        result = run(rate)
        if result is None:
            return good
        if result.sustainable:
            good = rate
            rate = nice_rate(rate * sweep.factor)
        else:
            bad = rate
            break
    else:
        outcome.limited_by = "max_rate"
    if good == 0.0 and bad:  # even the first step failed: search downwards
        rate = nice_rate(bad / sweep.factor)
        while rate >= MIN_RATE:
            result = run(rate)
            if result is None:
                return good
            if result.sustainable:
                good = rate
                break
            bad = rate
            rate = nice_rate(rate / sweep.factor)
    if not bad or not good:
        return good
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
    if outcome.limited_by == "budget":
        outcome.limited_by = "failure"  # bracketed by a failing rate; bisection was cut short
    return good
