"""Workload files and schedules: mistakes are one clear line; intended send times are exact."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.bench.metrics import HIGHEST_US, LOWEST_US, clamp_us, new_histogram
from harness.bench.runner import loss_figures
from harness.bench.schedule import binance_like, bursts, make_schedule, uniform
from harness.bench.workload import WORKLOAD_DIR, WorkloadError, load_workload, parse_workload


def test_every_shipped_workload_parses() -> None:
    names = {p.stem for p in WORKLOAD_DIR.glob("*.yaml")}
    assert {"default", "realistic-binance-latency", "max-throughput", "fan-out-3-consumers",
            "burst-1000-in-1ms", "overload"} <= names
    for name in names:
        workload = load_workload(name)
        assert workload.scenarios and workload.text


def test_scenarios_inherit_shared_settings() -> None:
    w = parse_workload({"name": "w", "duration_s": 7, "transports": ["zmq-pushpull"],
                        "scenarios": [{"name": "a"}, {"name": "b", "duration_s": 2}]})
    assert [s.duration_s for s in w.scenarios] == [7.0, 2.0]
    assert all(s.transports[0].name == "zmq-pushpull" for s in w.scenarios)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"rat": 5}, "unknown key 'rat'"),
        ({"rate": "fast"}, "rate: expected a number"),
        ({"rate": -1}, "must not be negative"),
        ({"producers": 1.5}, "whole number"),
        ({"fan_out": "yes"}, "expected true or false"),
        ({"transports": ["rabbitmq"]}, "unknown transport preset 'rabbitmq'"),
        ({"transports": [{"name": "x", "url": "nohost"}]}, "has no scheme"),
        ({"schedule": "poisson"}, "schedule must be one of"),
        ({"sweep": {"strat": 1}}, "unknown ['strat']"),
        ({"scenarios": [{"name": "a"}, {"name": "a"}]}, "must be unique"),
        ({"scenarios": [{"duration_s": 0}]}, "duration_s must be positive"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_workloads_fail_with_one_line(data: object, fragment: str) -> None:
    with pytest.raises(WorkloadError) as info:
        parse_workload(data, source="w.yaml")
    message = str(info.value)
    assert fragment in message and "\n" not in message and message.startswith("w.yaml")


@pytest.mark.slow
def test_cli_reports_a_broken_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rate: [1,\n  duration_s: 2\n")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "bench", str(bad),
                           "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read workload" in lines[0]


def test_uniform_schedule_times_are_exact_and_drift_free() -> None:
    times = list(itertools.islice(uniform(3000), 3001))
    assert times[:4] == [0, 333_333, 666_666, 1_000_000]
    assert times[3000] == 1_000_000_000  # from the index, not accumulated: no drift


def test_bursts_share_one_instant() -> None:
    times = list(itertools.islice(bursts(2000, 1000), 2500))
    assert set(times[:1000]) == {0}
    assert set(times[1000:2000]) == {500_000_000}  # 1,000 per burst at 2,000/s: every 0.5 s
    assert times[2000] == 1_000_000_000


def test_binance_schedule_is_bursty_ordered_deterministic_and_near_the_mean() -> None:
    times = list(itertools.takewhile(lambda t: t < 20_000_000_000, binance_like(1000, seed=3)))
    assert times == sorted(times)
    assert 0.9 * 20_000 < len(times) < 1.1 * 20_000
    assert len(set(times)) < len(times)  # several trades share a millisecond
    assert list(itertools.islice(make_schedule("binance", 1000, seed=3), 50)) == times[:50]


def test_latency_is_clamped_into_the_histogram_range() -> None:
    hist = new_histogram()
    for ns in (-5, 0, 500, 10**15):
        hist.record_value(clamp_us(ns))
    assert hist.get_total_count() == 4  # nothing silently ignored
    assert hist.get_max_value() >= HIGHEST_US * 0.999 and hist.get_min_value() == LOWEST_US


def test_loss_separates_gaps_from_tail_and_intersects_load_balanced_consumers() -> None:
    def final(missing: list[list[int]], received: int = 0) -> dict[str, Any]:
        return {"missing": {"p": missing}, "received": received, "duplicates": 0,
                "reordered": 0}

    gaps_and_tail = loss_figures({"p": 10}, [final([[3, 4], [8, 9]], 6)], shared=False, copies=1)
    assert (gaps_and_tail["lost"], gaps_and_tail["unconsumed"]) == (2, 2)
    # load-balanced: a number is missing only if no consumer saw it
    two = loss_figures({"p": 10}, [final([[0, 4], [8, 9]], 4), final([[3, 9]], 3)],
                       shared=True, copies=1)
    assert (two["lost"], two["unconsumed"], two["duplicates"]) == (2, 2, 1)
    # fan-out: each consumer must see everything, so their losses add up
    fan = loss_figures({"p": 10}, [final([[3, 4]], 8), final([[5, 5]], 9)], shared=False, copies=2)
    assert fan["lost"] == 3


def test_loss_of_a_huge_gap_is_counted_in_ranges() -> None:
    """A consumer report claiming 10**12 missing numbers is counted, not expanded."""
    finals = [{"missing": {"p": [[1, 10**12]]}, "received": 2, "duplicates": 0, "reordered": 0},
              {"missing": {"p": [[0, 0], [5, 10**12]]}, "received": 5, "duplicates": 0,
               "reordered": 0}]
    figures = loss_figures({"p": 10**12 + 2}, finals, shared=True, copies=1)
    assert (figures["lost"], figures["unconsumed"]) == (10**12 - 5 + 1, 0)
