"""Settings precedence (CLI > HARNESS_* env > default) and secret redaction."""

from __future__ import annotations

import argparse

import pytest

from core.redaction import redact_url
from core.settings import (
    Setting,
    SettingError,
    add_settings,
    describe,
    parse_bool,
    redacted,
    resolve,
)

SETTINGS = [
    Setting("transport", "zmq+tcp://127.0.0.1:5555", "transport URL"),
    Setting("rate", 100, "messages per second", parse=int),
    Setting("record", False, "record frames", parse=parse_bool),
    Setting("token", None, "API token", secret=True, env="TWITTER_BEARER_TOKEN"),
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings(parser, SETTINGS)
    return parser.parse_args(argv)


def test_cli_beats_environment_beats_default() -> None:
    env = {"HARNESS_RATE": "500", "HARNESS_TRANSPORT": "kafka://"}
    assert resolve(parse([]), SETTINGS, env)["rate"] == 500
    assert resolve(parse(["--rate", "7"]), SETTINGS, env)["rate"] == 7
    assert resolve(parse([]), SETTINGS, {})["rate"] == 100
    assert resolve(parse(["--record"]), SETTINGS, {})["record"] is True
    assert resolve(parse([]), SETTINGS, {"HARNESS_RECORD": "yes"})["record"] is True


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(SettingError, match="HARNESS_RATE='fast' is not valid for --rate"):
        resolve(parse([]), SETTINGS, {"HARNESS_RATE": "fast"})


def test_secrets_are_redacted_everywhere() -> None:
    env = {"TWITTER_BEARER_TOKEN": "AAAA-secret-token"}
    argv = ["--transport", "kafka://u:hunter2@h:9092?sasl_password=pw"]
    values = resolve(parse(argv), SETTINGS, env)
    assert values["token"] == "AAAA-secret-token"
    shown = "\n".join(describe(values, SETTINGS)) + repr(redacted(values, SETTINGS))
    for secret in ("AAAA-secret-token", "hunter2", "=pw"):
        assert secret not in shown
    assert "token = ***" in shown


def test_redact_url_keeps_what_is_useful() -> None:
    assert redact_url("kafka://h1:9092,h2:9092?acks=all") == "kafka://h1:9092,h2:9092?acks=all"
    assert redact_url("kafka://user:pw@h:1?sasl_password=x") == (
        "kafka://user:***@h:1?sasl_password=***"
    )
