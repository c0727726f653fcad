"""Issue 18 items 6 and 7: every numeric flag and every ``HARNESS_*`` variable, given a bad
value, is one line on stderr and exit code 2, before anything starts.

Before: ``--flush-interval nan`` meant "never checkpoint", ``--duration -1`` or ``nan`` ran for
ever, ``--rate inf`` and ``--max-messages -3`` were accepted, ``?hwm=1&hwm=2`` silently took
the last one, and ``--output ''``, an ``--output-dir`` naming a file, ``--host 999.1.1.1``,
``HARNESS_CODEC=rust`` or ``HARNESS_PROFILE=/proc/x`` gave tracebacks.

The settings are read from the commands themselves, so a new numeric setting is covered as
soon as it exists. Flags go through the real parser in-process (fast); each kind of failure is
also run once as a real ``harness`` process, as a user would (a sample: each process costs
a second or two).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import (
    Setting,
    SettingError,
    non_negative_float,
    non_negative_int,
    parse_speed,
    positive_float,
    positive_int,
    resolve,
)
from harness.cli import build_parser
from harness.commands import bench, broker, chaos, demo, run
from producers.runtime import command as produce
from producers.runtime.source import discover
from stages.command import settings_for
from transports import open_transport
from transports.base import TransportOptionError

HARNESS = [sys.executable, "-m", "harness.cli"]

COMMANDS: dict[tuple[str, ...], list[Setting]] = {
    ("run",): list(run.SETTINGS),
    ("demo",): list(demo.DEMO_SETTINGS),
    **{("produce", source.name): list(produce.settings_for(source)) for source in discover()},
    ("process", "candles"): settings_for("candles"),
    ("process", "sentiment"): settings_for("sentiment"),
    ("chaos",): list(chaos.SETTINGS),
    ("broker",): list(broker.SETTINGS),
    ("bench",): list(bench.SETTINGS),
}
BAD_VALUES = {
    non_negative_float: ["nan", "inf", "-inf", "-1", "1e999", "abc", ""],
    positive_float: ["nan", "inf", "-1", "0", "abc"],
    non_negative_int: ["-3", "1.5", "nan", "abc"],
    positive_int: ["0", "-3", "abc"],
    parse_speed: ["-1", "nan", "inf", "abc"],
    int: ["abc", "nan", "1.5"],
}


def _numeric_cases() -> Iterator[tuple[tuple[str, ...], Setting, str]]:
    for command, settings in COMMANDS.items():
        for setting in settings:
            values = BAD_VALUES.get(setting.parse)
            if values is None and setting.parse.__name__ == "port":
                values = ["70000", "-1", "abc"]
            for value in values or ():
                yield command, setting, value


NUMERIC = list(_numeric_cases())


def test_every_numeric_setting_is_covered() -> None:
    names = {(c, s.name) for c, s, _ in NUMERIC}
    assert (("process", "candles"), "flush_interval") in names
    assert (("produce", "binance"), "rate") in names
    assert (("run",), "duration") in names
    assert len(names) >= 40


@pytest.mark.parametrize(
    ("command", "setting", "value"), NUMERIC,
    ids=[f"{' '.join(c)}-{s.name}={v!r}" for c, s, v in NUMERIC],
)
def test_a_bad_numeric_flag_is_one_line_and_exit_2(
    command: tuple[str, ...], setting: Setting, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, f"{setting.flag}={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert setting.flag in err and "error" in err


@pytest.mark.parametrize(
    ("command", "setting", "value"), NUMERIC,
    ids=[f"{s.env_var}={v!r}" for c, s, v in NUMERIC],
)
def test_a_bad_numeric_environment_variable_is_refused(
    command: tuple[str, ...], setting: Setting, value: str
) -> None:
    args = build_parser().parse_args(list(command))
    settings = COMMANDS[command]
    if value == "":
        assert resolve(args, settings, {setting.env_var: value})[setting.name] == setting.default
        return  # an empty variable means "not set"
    with pytest.raises(SettingError) as info:
        resolve(args, settings, {setting.env_var: value})
    assert setting.env_var in str(info.value) and "\n" not in str(info.value)


def _harness(args: list[str], env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def _assert_one_line_exit_2(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["process", "candles", "--flush-interval", "nan"], {}, "not a finite number"),
        (["process", "candles"], {"HARNESS_FLUSH_INTERVAL": "-1"}, "HARNESS_FLUSH_INTERVAL"),
        (["process", "candles", "--output", ""], {}, "empty path"),
        (["produce", "twitter", "--rate", "inf"], {}, "not a finite number"),
        (["run", "--trade-rate", "-5"], {}, "negative"),
        (["run", "--output-dir", "a-file"], {}, "is a file, not a folder"),
        (["broker", "--host", "999.1.1.1"], {}, "cannot listen on '999.1.1.1'"),
        (["demo", "--transports", "zmq,rust"], {}, "expected a comma list"),
        (["produce", "binance", "--source", "synthetic", "--max-messages", "1",
          "--transport", "zmq+tcp://127.0.0.1:1?bind=subscriber"],
         {"HARNESS_CODEC": "rust"}, "HARNESS_CODEC='rust'"),
        (["process", "candles", "--duration", "1"], {"HARNESS_PROFILE": "/proc/x"},
         "profile folder /proc/x"),
        (["process", "candles", "--duration", "1"],
         {"HARNESS_PROFILE": "prof", "HARNESS_PROFILE_SAMPLER": "bogus"}, "sampler 'bogus'"),
        (["process", "candles", "--duration", "1"],
         {"HARNESS_PROFILE": "prof", "HARNESS_PROFILE_MEMORY": "maybe"}, "HARNESS_PROFILE_MEMORY"),
        (["produce", "binance"], {"HARNESS_SOURCE": "cloud"}, "HARNESS_SOURCE='cloud'"),
    ],
)
def test_user_mistakes_as_a_user_makes_them(
    tmp_path: Path, args: list[str], env: dict[str, str], fragment: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    _assert_one_line_exit_2(_harness(args, env, cwd=tmp_path), fragment)


def test_kafka_unreachable_is_one_line_without_client_logging(tmp_path: Path) -> None:
    proc = _harness(["produce", "binance", "--source", "synthetic", "--max-messages", "1",
                     "--transport", "kafka://127.0.0.1:1", "--output-dir", str(tmp_path)])
    _assert_one_line_exit_2(proc, "kafka broker unreachable")
    assert "kafka.net" not in proc.stderr and "ECONNREFUSED" not in proc.stderr


@pytest.mark.parametrize(
    "url",
    ["zmq+tcp://127.0.0.1:5599?hwm=1&hwm=2", "kafka://127.0.0.1:9092?acks=1&acks=all"],
)
def test_a_repeated_url_option_is_refused(url: str) -> None:
    with pytest.raises(TransportOptionError, match="given twice"):
        open_transport(url)
