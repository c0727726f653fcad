"""``harness --profile``: real processes profile themselves; the verdict matches what they did.

A busy loop must come out CPU-bound, a real ZeroMQ subscriber with no sender must come out
waiting on the transport, a real ``harness produce`` run (flag or inherited environment) and a
real ``harness bench`` run must leave loadable ``.prof`` files, and with profiling off nothing is
written and no profiler is created.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from core.errors import UserError
from harness import cli, profiling
from harness.profiling_analysis import category_of, verdict
from transports import open_transport

REPO = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness.cli"]
TIMEOUT = 120

#: A process that profiles itself through the public API: busy, idle on ZeroMQ, or growing.
STAGE_SCRIPT = """
import sys, time
from pathlib import Path
from harness.profiling import ProfileSettings, profile_process
from transports import open_transport
mode, out, sampler, memory = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
settings = ProfileSettings(out, memory=memory, sampler=sampler, memory_first_snapshot_s=0.2)
with profile_process(settings, "test", mode):
    end = time.monotonic() + 1.2
    if mode == "busy":
        n = 0
        while time.monotonic() < end:
            n += sum(i * i for i in range(2000))
    elif mode in ("idle", "idle_beside_busy_thread"):
        if mode == "idle_beside_busy_thread":
            # the stage's thread waits on the transport while another thread burns a core:
            # the process's CPU/wall is high, yet the stage is not CPU-bound
            import threading
            def spin():
                while time.monotonic() < end:
                    sum(i * i for i in range(2000))
            threading.Thread(target=spin, daemon=True).start()
        transport = open_transport(sys.argv[5])
        subscriber = transport.subscriber(["nobody-sends-here"])
        while time.monotonic() < end:
            assert subscriber.poll(100, timeout=0.1) == []
        subscriber.close()
        transport.close()
    elif mode == "grow":
        kept = []
        while time.monotonic() < end:
            kept.append(bytes(4096))
            time.sleep(0.0005)
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_PROFILE")}
    env.update(extra)
    return env


def run_stage(mode: str, out: Path, *, sampler: str = "cprofile", memory: bool = False,
              url: str = "") -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", STAGE_SCRIPT, mode, str(out), sampler, "1" if memory else "0", url],
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (report_path,) = out.glob(f"test-{mode}-*.json")
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report


def test_busy_stage_is_cpu_bound_and_its_profile_loads(tmp_path: Path) -> None:
    report = run_stage("busy", tmp_path)
    assert report["verdict"] == "CPU-bound", report["reason"]
    assert report["wall_s"] > 1.0
    assert report["cpu_s"] > 0
    assert report["peak_rss_mb"] > 1
    prof = tmp_path / report["files"]["prof"]
    stats = pstats.Stats(str(prof))
    assert any(name == "<genexpr>" for _file, _line, name in stats.stats)  # type: ignore[attr-defined]
    text = (tmp_path / report["files"]["txt"]).read_text()
    assert "by cumulative time" in text and "by own time (tottime)" in text
    assert "CPU-bound" in text


def test_idle_zmq_subscriber_is_waiting_on_the_transport(tmp_path: Path,
                                                         free_tcp_port: int) -> None:
    report = run_stage("idle", tmp_path, url=f"zmq+tcp://127.0.0.1:{free_tcp_port}")
    assert report["verdict"] == "waiting on the transport", report["reason"]
    assert report["share_of_wall"]["transport_receive"] > 0.6  # the rest: start-up, a busy box
    assert report["cpu_wall_ratio"] < 0.5
    assert report["blocked_in_builtins_s"] > 0.5  # the wait inside libzmq's poll


def test_a_waiting_stage_beside_a_busy_thread_is_not_cpu_bound(tmp_path: Path,
                                                               free_tcp_port: int) -> None:
    """The reported case: high CPU/wall from other threads, the stage's thread mostly blocked."""
    report = run_stage("idle_beside_busy_thread", tmp_path,
                       url=f"zmq+tcp://127.0.0.1:{free_tcp_port}")
    assert report["verdict"] != "CPU-bound", report["reason"]
    assert report["cpu_s"] > 2 * report["main_thread_cpu_s"], report["reason"]  # the spinner


def test_pyinstrument_sampler_writes_html_and_the_same_verdict(tmp_path: Path,
                                                               free_tcp_port: int) -> None:
    report = run_stage("idle", tmp_path, sampler="pyinstrument",
                       url=f"zmq+tcp://127.0.0.1:{free_tcp_port}")
    assert report["profiler"] == "pyinstrument"
    assert (tmp_path / report["files"]["html"]).read_text().lstrip().startswith("<!DOCTYPE html>")
    assert report["verdict"] == "waiting on the transport", report["reason"]
    assert not list(tmp_path.glob("*.prof"))


def test_memory_profile_names_the_growing_allocation_site(tmp_path: Path) -> None:
    report = run_stage("grow", tmp_path, memory=True)
    memory = report["memory"]
    assert memory["traced_peak_mib"] > 1
    assert memory["top_sites"][0]["site"].startswith("<string>:")  # the kept.append line
    assert memory["growth"] and memory["growth"][0]["kib_growth"] > 100
    assert memory["growth"][0]["site"] == memory["top_sites"][0]["site"]


def _produce(out_args: list[str], env: dict[str, str], url: str, cwd: Path,
             messages: int = 5000) -> int:
    """A real ``harness produce binance`` run into ZeroMQ with a real subscriber receiving."""
    transport = open_transport(url)
    subscriber = transport.subscriber(["binance.trade", "binance.bookTicker", "binance.aggTrade",
                                       "binance.kline", "binance.ticker"])
    received = 0
    try:
        proc = subprocess.Popen(
            [*HARNESS, *out_args, "produce", "binance", "--source", "synthetic",
             "--max-messages", str(messages), "--transport", url],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        done = threading.Event()
        while not done.is_set():
            received += len(subscriber.poll(1000, timeout=0.2))
            if proc.poll() is not None:
                received += len(subscriber.poll(1000, timeout=0.5))
                done.set()
        _out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
    finally:
        subscriber.close()
        transport.close()
    return received


def _pythonpath_env(**extra: str) -> dict[str, str]:
    return clean_env(PYTHONPATH=str(REPO), **extra)


def test_cli_flag_profiles_a_real_producer_run(tmp_path: Path, free_tcp_port: int) -> None:
    out = tmp_path / "prof"
    url = f"zmq+tcp://127.0.0.1:{free_tcp_port}"
    received = _produce(["--profile", str(out)], _pythonpath_env(), url, tmp_path)
    assert received > 0
    (report_path,) = out.glob("produce-binance-*.json")
    report = json.loads(report_path.read_text())
    assert report["transport"] == "zmq+tcp"
    assert report["share_of_wall"]["transport_send"] > 0
    stats = pstats.Stats(str(out / report["files"]["prof"]))
    publish = [k for k in stats.stats if k[2] == "publish"]  # type: ignore[attr-defined]
    assert publish, "the transport's publish() must appear in the profile"


def test_profile_is_inherited_through_the_environment(tmp_path: Path, free_tcp_port: int) -> None:
    out = tmp_path / "inherited"
    env = _pythonpath_env(**{profiling.ENV_DIR: str(out)})
    _produce([], env, f"zmq+tcp://127.0.0.1:{free_tcp_port}", tmp_path, messages=2000)
    assert len(list(out.glob("produce-binance-*.prof"))) == 1


@pytest.mark.slow
def test_profiling_off_writes_nothing(tmp_path: Path, free_tcp_port: int) -> None:
    _produce([], _pythonpath_env(), f"zmq+tcp://127.0.0.1:{free_tcp_port}", tmp_path,
             messages=2000)
    written = [p for p in tmp_path.rglob("*") if p.suffix in (".prof", ".json", ".txt")]
    assert written == []


def test_profiling_off_creates_no_profiler(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (profiling.ENV_DIR, profiling.ENV_MEMORY, profiling.ENV_SAMPLER):
        monkeypatch.delenv(name, raising=False)

    def no_session(*args: object, **kwargs: object) -> None:
        raise AssertionError("a profiler was created with profiling off")

    monkeypatch.setattr(profiling, "ProfileSession", no_session)
    args = argparse.Namespace(command="produce", profile=None)
    assert profiling.run_profiled(args, lambda a: 7) == 7
    assert profiling.ENV_DIR not in os.environ


TINY_BENCH = """
name: tiny-profile
transports: [zmq-pushpull]
payload: binance
warmup_s: 0.5
duration_s: 1
drain_timeout_s: 3
scenarios:
  - {name: fixed-1000, rate: 1000}
"""


@pytest.mark.slow
def test_bench_workers_profile_themselves(tmp_path: Path) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(TINY_BENCH)
    out = tmp_path / "prof"
    proc = subprocess.run(
        [*HARNESS, "bench", str(workload), "--results-dir", str(tmp_path / "results"),
         "--profile", str(out)],
        cwd=tmp_path, env=_pythonpath_env(), capture_output=True, text=True, timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name.rsplit("-", 1)[0] for p in out.glob("*.prof"))
    assert names == ["bench-consumer", "bench-main", "bench-producer"]
    consumer = json.loads(next(out.glob("bench-consumer-*.json")).read_text())
    assert consumer["transport"] == "zmq+tcp"
    assert consumer["share_of_wall"]["transport_receive"] > 0


def _handmade_report(out: Path, process: str, transport_share: float) -> None:
    """A profile JSON written by hand only to test the table layout (figures are not measured)."""
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "process": process, "command": "process", "stage": "candles", "transport": "x",
        "wall_s": 10.0, "cpu_s": 2.0, "cpu_wall_ratio": 0.2, "peak_rss_mb": 50.0,
        "share_of_wall": {"transport_receive": transport_share, "transport_send": 0.0,
                          "sink": 0.1, "own": 0.9 - transport_share},
        "verdict": "waiting on the transport", "own_time_by_package": [["orjson", 0.5, 0.05]],
    }
    (out / f"{process}.json").write_text(json.dumps(report))


def test_summarize_one_folder_and_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(profiling.ENV_DIR, raising=False)
    _handmade_report(tmp_path / "kafka", "process-candles-1", 0.6)
    _handmade_report(tmp_path / "zmq", "process-candles-2", 0.3)
    (tmp_path / "zmq" / "broken.json").write_text("{not json")
    assert cli.main(["profile", "summarize", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "## kafka" in printed and "## zmq" in printed
    side = printed.split("side by side")[1]
    row = next(line for line in side.splitlines() if "in transport %" in line)
    assert "60.0" in row and "30.0" in row
    assert cli.main(["profile", "summarize", str(tmp_path / "nope")]) == 2


def test_entry_point_categories_and_verdict_rules() -> None:
    transports_dir = str(REPO / "transports")
    assert category_of(f"{transports_dir}/zmq.py", "poll") == "transport_receive"
    assert category_of(f"{transports_dir}/kafka_core.py", "_send") == "transport_send"
    for module in ("base.py", "zmq.py", "kafka_core.py"):  # the unpaced replay's path
        assert category_of(f"{transports_dir}/{module}", "publish_many") == "transport_send"
    assert category_of(str(REPO / "sinks" / "hdf5.py"), "flush") == "sink"
    assert category_of(str(REPO / "processors" / "candles.py"), "poll") is None
    assert verdict(10, 9, 0, 0, 0).label == "CPU-bound"
    assert verdict(10, 4, 5, 0, 0).label == "CPU-bound"  # starved of a core is still CPU-bound
    assert "machine is busy" in verdict(10, 4, 5, 0, 0).reason
    assert verdict(10, 1, 5, 6, 0).label == "waiting on the transport"  # slow machine, idle stage
    assert verdict(10, 1, 0, 8, 0).label == "waiting on the transport"
    assert verdict(10, 1, 0, 1, 6).label == "waiting on disk"
    assert verdict(10, 1, 0, 1, 1).label == "waiting elsewhere"
    # The reported case: CPU/wall 0.46 (+ runnable time summed over all threads) with the main
    # thread blocked 55 % of wall inside transport calls is waiting, not CPU-bound...
    case = verdict(10, 4.6, 2.6, 6.0, 0.0, blocked_s=5.5)
    assert case.label == "waiting on the transport", case.reason
    assert "blocked 55%" in case.reason
    # ...and the thread's own scheduler counters decide when they are known
    assert verdict(10, 9.5, 0, 6.0, 0, blocked_s=0, thread_cpu_s=3.0,
                   thread_runqueue_s=1.0).label == "waiting on the transport"
    assert verdict(10, 2.0, 0, 0, 0, blocked_s=0, thread_cpu_s=2.0,
                   thread_runqueue_s=7.5).label == "CPU-bound"  # 2 s computing, 0.5 s blocked
    # a main thread that never blocks, on a process whose other threads sleep
    assert verdict(10, 8.0, 0, 0, 0, blocked_s=0.5).label == "CPU-bound"


def test_missing_py_spy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("py-spy") is not None:
        pytest.skip("py-spy is installed here")
    monkeypatch.delenv(profiling.ENV_DIR, raising=False)
    args = argparse.Namespace(profile="/tmp/x", profile_memory=False, profile_sampler="py-spy")
    with pytest.raises(UserError, match="py-spy is not installed"):
        profiling.settings_from_args(args)
