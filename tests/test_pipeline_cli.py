"""``harness run`` and ``harness demo`` as a user runs them: real child processes per stage, exit 0,
a summary table and a verdict within 100 columns, HDF5 files with candles in a run folder of
their own (runs/<timestamp>/<transport>/, ``latest`` pointing at the newest), nothing written
outside --output-dir, and no run ever deleting another's output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run_history import run_folder
from sinks.hdf5_reader import open_snapshot

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(cwd: Path, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def candle_rows(path: Path) -> dict[str, int]:
    snap = open_snapshot(path)
    try:
        return dict(snap.rows)
    finally:
        snap.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["zmq"])  # Kafka: the demo test runs the same pipeline
def test_harness_run_finishes_with_table_and_candles(tmp_path: Path, transport: str) -> None:
    out = tmp_path / "out"
    done = harness(tmp_path, "run", "--transport", transport, "--duration", "4",
                   "--no-twitter", "--output-dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trades rows" in done.stdout and "candles_1s rows" in done.stdout
    (run_dir,) = (out / "runs").iterdir()
    assert (out / "latest").resolve() == run_dir.resolve()
    rows = candle_rows(out / "latest" / transport / "market.h5")
    assert rows["trades"] > 0 and rows["candles_1s"] > 0
    for name in ("summary.json", "summary.txt", "logs/candles.log", "logs/binance.json"):
        assert (run_dir / transport / name).is_file(), name
    assert "delivered every published message" in " ".join(done.stdout.split())
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing beside --output-dir


@pytest.mark.slow
def test_harness_demo_runs_both_transports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = harness(tmp_path, "demo", "--duration", "3", "--output-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HDF5 output" in done.stdout and "Traceback" not in done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    assert "At p50," in done.stdout  # the verdict compares the two transports
    latest = out / "latest"
    for transport in ("zmq", "kafka"):
        rows = candle_rows(latest / transport / "market.h5")
        assert rows["trades"] > 0 and rows["candles_1s"] > 0
        assert candle_rows(latest / transport / "sentiment.h5")["tweets"] > 0
        for name in ("logs/candles.log", "logs/binance.json", "logs/twitter.json"):
            assert (latest / transport / name).is_file(), (transport, name)
    assert "delivered every published message" in " ".join(done.stdout.split())
    report = (latest / "demo-summary.txt").read_text()
    assert "publish->processor p99 ms" in report and "At p50," in report
    assert (latest / "demo-summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_bad_transport_is_a_one_line_error(tmp_path: Path) -> None:
    done = harness(tmp_path, "run", "--transport", "bogus", "--output-dir", str(tmp_path / "o"),
                   timeout=30)  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "bogus" in last and "kafka" in last and "zmq" in last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "command", [["run", "--output-dir"], ["process", "candles", "--output"]], ids=["run", "process"]
)
def test_a_bad_window_is_a_one_line_error(tmp_path: Path, command: list[str]) -> None:
    done = harness(tmp_path, *command, str(tmp_path / "o"), "--windows", "1s,90x", timeout=30)
    assert done.returncode == 2, done.stderr
    assert "90x" in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def short_run(cwd: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return harness(cwd, "run", "--transport", "zmq", "--duration", "1", "--no-twitter",
                   "--output-dir", str(out), *extra)


@pytest.mark.slow
def test_runs_keep_their_history_and_overwrite_only_on_request(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = short_run(tmp_path, out)
    assert first.returncode == 0, first.stdout + first.stderr
    named = out / "runs" / "baseline"
    assert short_run(tmp_path, out, "--run-name", "baseline").returncode == 0
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 2, runs  # the first run's output is still there
    assert all((r / "zmq" / "market.h5").is_file() for r in runs)
    assert os.readlink(out / "latest") == "runs/baseline"  # relative: survives a move

    (named / "zmq" / "marker").write_text("from the first baseline run")
    (named / "notes.txt").write_text("the user's own file")
    again = short_run(tmp_path, out, "--run-name", "baseline")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert (named / "zmq" / "marker").exists()

    replaced = short_run(tmp_path, out, "--run-name", "baseline", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert not (named / "zmq" / "marker").exists()  # this run's transport folder was replaced
    assert (named / "notes.txt").exists()  # nothing else in the folder is touched
    assert candle_rows(named / "zmq" / "market.h5")["trades"] > 0
    assert len(list((out / "runs").iterdir())) == 2

    # a run stopped by a setting mistake leaves no run folder and `latest` where it was
    mistake = short_run(tmp_path, out, "--source", "replay")  # no --binance-recording
    assert mistake.returncode == 2 and "--binance-recording" in mistake.stderr
    assert sorted((out / "runs").iterdir()) == runs
    assert os.readlink(out / "latest") == "runs/baseline"


def test_overwrite_never_touches_a_folder_another_run_is_writing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with run_folder(out, "busy") as busy:  # this test process plays the other, running run
        (busy / "zmq").mkdir()
        (busy / "zmq" / "market.h5").write_bytes(b"being written")
        done = short_run(tmp_path, out, "--run-name", "busy", "--overwrite")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "in use by another run" in done.stderr and f"pid {os.getpid()}" in done.stderr
        assert (busy / "zmq" / "market.h5").read_bytes() == b"being written"
        # --overwrite without a name reuses what `latest` points at: the same busy folder
        done = short_run(tmp_path, out, "--overwrite")
        assert done.returncode == 2 and "in use by another run" in done.stderr
    assert (busy / "zmq" / "market.h5").read_bytes() == b"being written"


def test_runs_starting_in_the_same_second_get_folders_of_their_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.run_history as history

    monkeypatch.setattr(history, "new_stamp", lambda: "20260101-120000")
    with run_folder(tmp_path) as first, run_folder(tmp_path) as second:
        assert (first.name, second.name) == ("20260101-120000", "20260101-120000-2")
        assert os.readlink(tmp_path / "latest") == "runs/20260101-120000-2"
    with pytest.raises(history.UserError, match="letters, digits"), \
            run_folder(tmp_path, "../escape"):
        pass
