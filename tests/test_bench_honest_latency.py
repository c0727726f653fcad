"""The latency recording is honest: a known 200 ms consumer stall must show in the tail.

Open-loop producers stamp the intended send time, so messages that wait behind a stalled
consumer carry that wait into their latency; a closed-loop or send-time-based measurement
would hide it (coordinated omission).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench.runner import TrialContext, run_trial
from harness.bench.workload import parse_workload


@pytest.mark.slow
def test_a_200ms_consumer_stall_shows_in_p99_9_and_max(tmp_path: Path) -> None:
    workload = parse_workload({
        "name": "stall", "rate": 2000, "warmup_s": 1, "duration_s": 4, "drain_timeout_s": 3,
        "consumer_stall_ms": 200, "consumer_stall_at_s": 2.5, "transports": ["zmq-pushpull"],
        "zmq": {"hwm": 0},
    })
    scenario = workload.scenarios[0]
    result = run_trial(scenario, scenario.transports[0], 2000, "fixed", TrialContext(tmp_path))
    s = result.summary
    assert result.status == "ok", result.error
    assert s["lost"] == 0 and s["unconsumed"] == 0
    # ~400 messages arrive during the stall: they wait 0..200 ms, the first one ~200 ms.
    assert s["e2e_max"] >= 190, s
    assert s["e2e_p99_9"] >= 150, s
    assert s["e2e_p50"] < 50, s
    # the stall is visible in the interval where it happened, not smeared away
    worst = max(result.intervals, key=lambda r: r["e2e_max"])
    assert 2.0 <= worst["t_s"] - 1 <= 4.0
