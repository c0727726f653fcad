"""The verdict: sentences computed from a run's numbers, checked on runs whose outcome is known.

Known outcomes: a consumer paused for seconds loses on latency (even ZeroMQ, against a run that
was not paused); a producer asked for a rate no Python process can reach misses it and the run
says so; under overload PUB/SUB drops (every drop counted) while PUSH/PULL pushes back and drops
nothing; a benchmark repeated with a consumer stall is slower in the tail. The sentence rules
themselves (noise, confidence intervals, too few samples) are checked on fixed numbers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.bench.verdict import bench_pace_sentences
from harness.pipeline import Child, PipelineConfig, run_pipeline
from harness.verdict import (
    Quantile,
    latency_sentences,
    percentile_interval,
    pipeline_verdict,
    within_noise,
)

HARNESS = [sys.executable, "-m", "harness.cli"]
WIDTH = 100


def harness(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def assert_fits(text: str, width: int = WIDTH) -> None:
    wide = [line for line in text.splitlines() if len(line) > width]
    assert not wide, f"{len(wide)} line(s) wider than {width}: {wide[:3]}"


# ------------------------------------------------------------------- rules on fixed numbers


def test_small_gaps_are_noise_large_ones_are_named_with_their_size() -> None:
    assert within_noise(10.0, 12.0)  # 20 %: run-to-run noise on a shared machine
    assert within_noise(0.02, 0.06)  # under the 0.05 ms floor
    assert not within_noise(0.2, 8.9)
    # overlapping 95 % intervals: too close to call whatever the ratio
    assert within_noise(Quantile(5.0, 3.0, 9.0), Quantile(8.0, 6.0, 12.0))
    lines = latency_sentences(
        {"zmq": {50.0: Quantile(0.14), 99.0: Quantile(13.4)},
         "kafka": {50.0: Quantile(8.88), 99.0: Quantile(14.0)}},
        {"zmq": 40_000, "kafka": 40_000}, [50.0, 99.0])
    assert lines[0] == "At p50, zmq had the lower latency: 0.14 ms vs 8.9 ms on kafka (63x lower)."
    assert lines[1] == "At p99, the difference is within noise (zmq 13.4 ms, kafka 14.0 ms)."


def test_each_percentile_gets_its_own_winner_and_thin_tails_are_not_judged() -> None:
    lines = latency_sentences(
        {"a": {50.0: Quantile(1.0), 99.0: Quantile(30.0), 99.9: Quantile(90.0)},
         "b": {50.0: Quantile(3.0), 99.0: Quantile(6.0), 99.9: Quantile(7.0)},
         "c": {50.0: Quantile(1.1), 99.0: Quantile(60.0), 99.9: Quantile(95.0)}},
        {"a": 5_000, "b": 5_000, "c": 5_000}, [50.0, 99.0, 99.9])
    assert lines[0] == ("At p50, a had the lowest latency: 1.0 ms vs 3.0 ms on b (3.0x lower); "
                        "c (1.1 ms) within noise of it.")
    assert lines[1].startswith("At p99, b had the lowest latency: 6.0 ms vs 30.0 ms on a (5.0x")
    # 5,000 samples leave 5 beyond p99.9: an anecdote, not a percentile
    assert lines[2].startswith("At p99.9, too few samples")
    lo, hi = percentile_interval(99.0, 10_000)
    assert 98.7 < lo < 99.0 < hi < 99.3


def test_a_producer_that_missed_its_target_is_a_warning_not_a_transport_difference() -> None:
    summaries = [
        {"transport": "zmq", "market_published": 180_000, "market_lost": 0, "tweets_lost": 0,
         "pace": {"binance": {"target_rate": 9000.0, "achieved_rate": 8990.0, "on_pace": True}}},
        {"transport": "kafka", "market_published": 30_140, "market_lost": 0, "tweets_lost": 0,
         "pace": {"binance": {"target_rate": 9000.0, "achieved_rate": 1507.0, "on_pace": False,
                              "lag_s": 16.6}}},
    ]
    text = "\n".join(pipeline_verdict(summaries))
    assert "WARNING: on kafka, the binance producer reached 1,507 of its 9,000 msg/s target " \
        "(17 %" in text
    assert "measures the machine's CPU, not the transports" in text
    assert "Every transport delivered every published message exactly once" in text


def test_bench_back_pressure_under_overload_is_not_a_pace_warning() -> None:
    base = {"phase": "fixed", "status": "ok", "scenario": "overload", "target_rate": 20000.0,
            "consumer_delay_us": 250.0, "kept_pace": False, "pub_rate": 4000.0, "not_sent": 9}
    pushpull = {**base, "transport": "zmq-pushpull", "durable": False, "drops_when_slow": False}
    kafka = {**base, "transport": "kafka-python", "durable": True, "drops_when_slow": False}
    lines = bench_pace_sentences([pushpull, kafka])
    assert len(lines) == 1 and "kafka-python's producer sent 4,000 of its 20,000" in lines[0]


# ----------------------------------------------------------------------------- real runs


def pause_processor(pause_at_s: float, pause_s: float) -> tuple[Any, dict[str, Any]]:
    """A progress hook that SIGSTOPs the candle processor once, then SIGCONTs it."""
    state: dict[str, Any] = {}

    def progress(cfg: PipelineConfig, children: Sequence[Child], elapsed: float) -> None:
        candles = next(c for c in children if c.name == "candles")
        if candles.proc is None:
            return
        if "stopped_at" not in state and elapsed >= pause_at_s and candles.running():
            state["pid"] = candles.proc.pid
            os.kill(candles.proc.pid, signal.SIGSTOP)
            state["stopped_at"] = time.monotonic()
        elif "stopped_at" in state and "resumed" not in state and \
                time.monotonic() - state["stopped_at"] >= pause_s:
            os.kill(candles.proc.pid, signal.SIGCONT)
            state["resumed"] = True

    return progress, state


def pipeline_summary(tmp_path: Path, transport: str, progress: Any = None,
                     **options: Any) -> dict[str, Any]:
    cfg = PipelineConfig(transport=transport, run_dir=tmp_path, duration_s=7.0,
                         trade_rate=500.0, with_twitter=False, **options)
    result = run_pipeline(cfg, progress=progress)
    assert not result.failed, result.failed
    return result.summary_row()


@pytest.mark.slow
def test_a_paused_consumer_loses_on_latency(tmp_path: Path) -> None:
    """ZeroMQ PUSH/PULL with its processor stopped for ~2 s against an undisturbed PUB/SUB run:
    the paused one must lose at p99, whatever either transport does normally."""
    progress, state = pause_processor(pause_at_s=3.0, pause_s=2.0)
    try:
        paused = pipeline_summary(tmp_path, "zmq", progress)
    finally:
        if "pid" in state and "resumed" not in state:
            os.kill(state["pid"], signal.SIGCONT)
    assert "resumed" in state, "the processor was never paused and resumed"
    steady = pipeline_summary(tmp_path, "zmq-pubsub")
    assert paused["market_lost"] == 0 and steady["market_lost"] == 0, (paused, steady)
    assert paused["latency_ms"]["max"] >= 1000.0  # ~2 s of trades waited for the processor
    lo, hi = paused["latency_ms"]["ci"]["p99"]  # the interval the noise rule compares
    assert lo <= paused["latency_ms"]["p99"] <= hi
    lines = pipeline_verdict([paused, steady])
    p99 = next(line.strip() for line in lines if line.strip().startswith("At p99,"))
    assert p99.startswith("At p99, zmq-pubsub had the lower latency:"), lines
    assert "on zmq (" in p99 and "lower)" in p99


@pytest.mark.slow
def test_run_warns_when_the_producer_misses_its_target_rate(tmp_path: Path) -> None:
    """A million trades/s is out of any Python producer's reach: the run must say the load was
    not what was asked, and record both rates in the producer's summary."""
    out = tmp_path / "out"
    done = harness(tmp_path, "run", "--transport", "zmq", "--duration", "3", "--no-twitter",
                   "--trade-rate", "1000000", "--output-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    flat = " ".join(done.stdout.split())
    assert "WARNING: on zmq, the binance producer reached" in flat, done.stdout
    assert "measures the machine's CPU, not the transports" in flat
    assert_fits(done.stdout)
    summary = json.loads((out / "latest" / "zmq" / "summary.json").read_text())
    pace = summary["pace"]["binance"]
    assert pace["on_pace"] is False and pace["achieved_rate"] < 0.95 * pace["target_rate"]
    producer = json.loads((out / "latest" / "zmq" / "logs" / "binance.json").read_text())
    assert producer["pace"] == pace
    text = (out / "latest" / "zmq" / "summary.txt").read_text()
    assert "binance msg/s: sent / target" in text and "WARNING" in text


BENCH_A = """
name: verdict-a
payload: fixed
message_bytes: 170
warmup_s: 1
duration_s: 2
drain_timeout_s: 2
transports: [zmq-pushpull, zmq-pubsub]
scenarios:
  - {name: steady, rate: 1000, transports: [zmq-pushpull]}
  - name: overload
    rate: 20000
    consumer_delay_us: 250
    zmq: {hwm: 1000, sndbuf: 262144, rcvbuf: 262144}
    drain_timeout_s: 1
  - name: unreachable-rate
    rate: 500000
    transports: [zmq-pushpull]
"""

# The same steady trial, its consumer paused for 500 ms once: the tail must get worse.
BENCH_B = """
name: verdict-b
payload: fixed
message_bytes: 170
warmup_s: 1
duration_s: 2
drain_timeout_s: 2
transports: [zmq-pushpull]
scenarios:
  - {name: steady, rate: 1000, consumer_stall_ms: 500, consumer_stall_at_s: 1.5}
"""


def bench(tmp_path: Path, text: str, name: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    workload = tmp_path / f"{name}.yaml"
    workload.write_text(text)
    results = tmp_path / name
    done = harness(tmp_path, "bench", str(workload), "--results-dir", str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = results.iterdir()
    return done, run_dir


@pytest.mark.slow
def test_bench_verdict_names_who_dropped_who_pushed_back_and_who_missed_its_rate(
        tmp_path: Path) -> None:
    done_a, run_a = bench(tmp_path, BENCH_A, "a")
    out = done_a.stdout
    assert_fits(out)
    verdict = out[out.index("Verdict:"):]
    flat = " ".join(verdict.split())
    assert "Scenario overload (overload: 20,000 msg/s offered" in flat
    assert "zmq-pushpull pushed back on the producer" in flat or \
        "zmq-pushpull delivered every message" in flat  # the kernel may absorb it all
    assert "zmq-pubsub dropped" in flat and "counted from sequence gaps" in flat
    assert "Latency covers delivered messages only (zmq-pubsub dropped" in flat
    assert "WARNING: in scenario unreachable-rate, zmq-pushpull's producer sent" in flat
    assert "not the transport" in flat
    report = (run_a / "report.md").read_text()
    assert "## Verdict" in report and "zmq-pubsub dropped" in report
    assert "p90 ms" in report and "p99.99 ms" in report  # the report keeps every column

    _, run_b = bench(tmp_path, BENCH_B, "b")
    compared = harness(tmp_path, "bench", "compare", str(run_a), str(run_b), timeout=60)
    assert compared.returncode == 0, compared.stderr
    assert_fits(compared.stdout)
    flat = " ".join(compared.stdout[compared.stdout.index("Verdict"):].split())
    # the stall may lift p50 too; p99 must be named as higher in B
    assert re.search(r"steady / zmq-pushpull @ 1,000 msg/s: (p50 [^;]*; )?p99 higher in B",
                     flat), flat
    assert "ran in only one of the two runs" in flat  # overload and unreachable-rate
