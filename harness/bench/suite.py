"""Run every scenario of a workload on every transport; one embedded broker for the run (Apache
Kafka, or Tansu with ``--kafka-engine tansu`` or where Java is missing).

Trials run one after another (never two at once on 2 cores), transports in the same order for
every scenario. With several processes the Kafka broker must be shared, so it is started here
once rather than by each transport.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.bench.runner import TrialContext, TrialResult, run_trial
from harness.bench.sweep import find_max_sustainable
from harness.bench.workload import Scenario, TransportSpec, Workload
from transports.brokers import make_broker
from transports.brokers.registry import lookup as announced_broker

TrialStartFn = Callable[[Scenario, TransportSpec, float, str], None]
TrialDoneFn = Callable[[TrialResult], None]


@dataclass
class SuiteResult:
    trials: list[TrialResult] = field(default_factory=list)
    #: one row per (scenario, transport) that swept: the highest sustainable rate found
    max_sustainable: list[dict[str, Any]] = field(default_factory=list)
    broker_identity: str = ""
    interrupted: bool = False


@contextlib.contextmanager
def kafka_broker(
    needed: bool, external: str, log_dir: Path, engine: str = "auto"
) -> Iterator[tuple[str, int | None, str]]:
    """(bootstrap, pid, identity) of the broker trials use: external, embedded, or none."""
    if not needed:
        yield "", None, ""
        return
    if external:
        yield external, None, announced_broker(external) or f"external broker {external}"
        return
    broker = make_broker(engine, log_path=log_dir / "broker.log", folder=log_dir / "broker")
    broker.start()
    try:
        yield broker.bootstrap, broker.pid, broker.identity
    finally:
        broker.stop()


def run_workload(
    workload: Workload,
    log_dir: Path,
    only_transports: Sequence[str] = (),
    kafka_bootstrap: str = "",
    on_start: TrialStartFn | None = None,
    on_done: TrialDoneFn | None = None,
    progress: Callable[[str, float], None] | None = None,
    interrupted: threading.Event | None = None,
    out: SuiteResult | None = None,
    kafka_engine: str = "auto",
) -> SuiteResult:
    """Run the plan; pass ``out`` to keep the trials done so far if a Ctrl-C escapes."""
    out = out if out is not None else SuiteResult()
    stop = interrupted or threading.Event()
    plan = [(s, [t for t in s.transports if not only_transports or t.name in only_transports])
            for s in workload.scenarios]
    needs_kafka = any(t.is_kafka for _, ts in plan for t in ts)
    with kafka_broker(needs_kafka, kafka_bootstrap, log_dir, kafka_engine) as (
        bootstrap, pid, identity
    ):
        out.broker_identity = identity
        ctx = TrialContext(log_dir, bootstrap, pid, identity, progress, stop)

        def trial(scenario: Scenario, spec: TransportSpec, rate: float, phase: str) -> TrialResult:
            if on_start:
                on_start(scenario, spec, rate, phase)
            result = run_trial(scenario, spec, rate, phase, ctx)
            out.trials.append(result)
            if on_done:
                on_done(result)
            if result.status == "interrupted":
                stop.set()
            return result

        for scenario, transports in plan:
            for spec in transports:
                if stop.is_set():
                    out.interrupted = True
                    return out
                if scenario.rate_mode == "sweep":
                    outcome = find_max_sustainable(
                        scenario,
                        lambda rate, sc=scenario, sp=spec: trial(sc, sp, rate, "sweep"),
                        stop.is_set,
                    )
                    steps, best = outcome.steps, outcome.best
                    best_step = next((r for r in steps if r.target_rate == best), None)
                    out.max_sustainable.append({
                        "scenario": scenario.name,
                        "transport": spec.name,
                        "identity": next((r.identity for r in steps if r.identity), ""),
                        "max_rate": best,
                        "limited_by": outcome.limited_by,
                        "steps": len(steps),
                        "latency_bound_ms": scenario.latency_bound_ms,
                        "p99_at_max_ms": best_step.summary.get("e2e_p99", float("nan"))
                        if best_step else float("nan"),
                    })
                else:
                    rate = scenario.rate if scenario.rate_mode == "fixed" else 0.0
                    trial(scenario, spec, rate, scenario.rate_mode)
    out.interrupted = stop.is_set()
    return out
