"""``harness run``: the whole pipeline as separate processes, the way compose runs it.

Processors start first (they resume from their HDF5 files), then the producers; when the
producers are done the processors drain what is in flight and stop on their own (idle exit).
Each child is a real ``harness`` process with its own log; the runner only wires endpoints,
shows progress by reading the HDF5 files *while they are written* (SWMR), and summarises.

Transport wiring: Kafka stages all talk to one bootstrap server (an embedded broker if none is
given: Apache Kafka with its log in ``<output>/<transport>/broker/``, or Tansu without Java).
ZeroMQ has no broker, so each stream link is its own endpoint: the Binance producer binds one
port that the candle processor connects to, the Twitter producer another.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from transports.brokers import free_tcp_port, make_broker
from transports.brokers.registry import lookup as announced_broker

STOP_GRACE_S = 10.0


@dataclass
class PipelineConfig:
    transport: str  # "kafka", "kafka-confluent", "zmq" or "zmq-pubsub"
    output_dir: Path
    source: str = "synthetic"  # synthetic | replay | live
    duration_s: float = 20.0
    trade_rate: float = 2000.0  # synthetic trades/s (0 = as fast as possible)
    tweet_rate: float = 20.0
    symbols: str = "btcusdt,ethusdt"
    streams: str = "trade,ticker,bookTicker"
    windows: str = "1s,1m,1h,1d"
    binance_recording: str | None = None
    twitter_recording: str | None = None
    speed: float = 1.0
    seed: int = 1
    kafka_bootstrap: str | None = None
    idle_exit_s: float = 4.0
    with_twitter: bool = True
    fresh: bool = True  # delete previous output of this transport first
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    summary: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                self.argv, stdout=fh, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_GRACE_S) -> None:
        if not self.running():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def result(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.summary.read_text()))
        except (OSError, ValueError):
            return {}

    def last_log_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


def harness_argv() -> list[str]:
    """How to start a child ``harness`` (the same interpreter as this process)."""
    return [sys.executable, "-m", "harness.cli"]


@contextmanager
def transport_urls(cfg: PipelineConfig) -> Iterator[tuple[dict[str, tuple[str, str]], str]]:
    """(producer URL, processor URL) per link, and the Kafka broker's identity ('' on ZeroMQ);
    starts the embedded broker for Kafka."""
    if cfg.transport in ("kafka", "kafka-confluent"):
        scheme = "kafka+confluent" if cfg.transport == "kafka-confluent" else "kafka"
        bootstrap = cfg.kafka_bootstrap or os.environ.get("HARNESS_KAFKA_BOOTSTRAP")
        if bootstrap:
            url = f"{scheme}://{bootstrap}"
            identity = announced_broker(bootstrap) or f"external broker {bootstrap}"
            yield {"market": (url, url), "tweets": (url, url)}, identity
            return
        out = cfg.output_dir / cfg.transport
        broker = make_broker(log_path=out / "broker.log", folder=out / "broker")
        broker.start()
        url = f"{scheme}://{broker.bootstrap}"
        try:
            yield {"market": (url, url), "tweets": (url, url)}, broker.identity
        finally:
            broker.stop()
        return
    if cfg.transport in ("zmq", "zmq-pubsub"):
        pattern = "pubsub" if cfg.transport == "zmq-pubsub" else "pushpull"
        links = {}
        for link in ("market", "tweets"):
            base = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern={pattern}"
            producer = base + ("&wait_subscribers=1" if pattern == "pubsub" else "")
            links[link] = (producer, base)
        yield links, ""
        return
    raise UserError(
        f"unknown transport {cfg.transport!r}; accepted: kafka, kafka-confluent, zmq, zmq-pubsub"
    )


def build_children(cfg: PipelineConfig, urls: dict[str, tuple[str, str]]) -> list[Child]:
    out = cfg.output_dir / cfg.transport
    logs = out / "logs"
    h = harness_argv()
    children = [
        Child(
            "candles",
            [*h, "process", "candles", "--transport", urls["market"][1],
             "--output", str(out / "market.h5"), "--windows", cfg.windows,
             "--idle-exit", str(cfg.idle_exit_s), "--quiet",
             "--summary-json", str(logs / "candles.json")],
            logs / "candles.log", logs / "candles.json",
        ),
    ]
    if cfg.with_twitter:
        children.append(
            Child(
                "sentiment",
                [*h, "process", "sentiment", "--transport", urls["tweets"][1],
                 "--output", str(out / "sentiment.h5"), "--windows", cfg.windows,
                 "--idle-exit", str(cfg.idle_exit_s), "--quiet",
                 "--summary-json", str(logs / "sentiment.json")],
                logs / "sentiment.log", logs / "sentiment.json",
            )
        )
    binance = [*h, "produce", "binance", "--transport", urls["market"][0],
               "--source", cfg.source, "--symbols", cfg.symbols, "--streams", cfg.streams,
               "--seed", str(cfg.seed), "--output-dir", str(out),
               "--summary-json", str(logs / "binance.json"), "--progress-every", "2"]
    twitter = [*h, "produce", "twitter", "--transport", urls["tweets"][0],
               "--source", cfg.source, "--seed", str(cfg.seed), "--output-dir", str(out),
               "--summary-json", str(logs / "twitter.json"), "--progress-every", "2"]
    if cfg.source == "synthetic":
        binance += ["--rate", str(cfg.trade_rate), "--duration", str(cfg.duration_s)]
        twitter += ["--rate", str(cfg.tweet_rate), "--duration", str(cfg.duration_s)]
    elif cfg.source == "replay":
        if not cfg.binance_recording:
            raise UserError("--source replay needs --binance-recording PATH")
        binance += ["--recording", cfg.binance_recording, "--speed", str(cfg.speed)]
        if cfg.twitter_recording:
            twitter += ["--recording", cfg.twitter_recording, "--speed", str(cfg.speed)]
        else:
            cfg.with_twitter = False
            children = children[:1]
    else:
        binance += ["--duration", str(cfg.duration_s)]
        twitter += ["--duration", str(cfg.duration_s)]
    children.append(Child("binance", binance, logs / "binance.log", logs / "binance.json"))
    if cfg.with_twitter:
        children.append(Child("twitter", twitter, logs / "twitter.log", logs / "twitter.json"))
    return children


def row_counts(path: Path) -> dict[str, int]:
    """Rows per table up to the last checkpoint, read while the writer is running (SWMR)."""
    if not path.exists():
        return {}
    from sinks.hdf5_reader import open_snapshot

    try:
        snap = open_snapshot(path, timeout=0.5)
    except Exception:
        return {}
    try:
        return dict(snap.rows)
    finally:
        snap.close()


@dataclass
class PipelineResult:
    transport: str
    output: Path
    stages: dict[str, dict[str, Any]]
    seconds: float
    failed: list[str]
    broker: str = ""  # the Kafka broker's identity (engine, version); '' on ZeroMQ

    def summary_row(self) -> dict[str, Any]:
        from harness.pipeline_report import summarize

        return summarize(self)


def run_pipeline(cfg: PipelineConfig, progress: Any = None) -> PipelineResult:
    out = cfg.output_dir / cfg.transport
    if cfg.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **cfg.extra_env}
    started = time.monotonic()
    with transport_urls(cfg) as (urls, broker):
        children = build_children(cfg, urls)
        processors = [c for c in children if c.name in ("candles", "sentiment")]
        producers = [c for c in children if c not in processors]
        try:
            for child in processors:
                child.start(env)
            time.sleep(1.0)  # processors bind/subscribe before producers start sending
            for child in producers:
                child.start(env)
            deadline = time.monotonic() + cfg.duration_s + 120.0
            while any(c.running() for c in children) and time.monotonic() < deadline:
                if progress:
                    progress(cfg, children, time.monotonic() - started)
                if not any(p.running() for p in producers):
                    # producers are done: give processors their idle-exit time to drain
                    drain_deadline = time.monotonic() + cfg.idle_exit_s + 30.0
                    while any(c.running() for c in processors):
                        if time.monotonic() > drain_deadline:
                            break
                        time.sleep(0.2)
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            for child in producers + processors:
                child.stop()
    failed = [
        f"{c.name} (exit {c.proc.returncode}; see {c.log})"
        for c in children
        if c.proc is not None and c.proc.returncode not in (0, -signal.SIGTERM)
    ]
    return PipelineResult(
        cfg.transport, out, {c.name: c.result() for c in children},
        time.monotonic() - started, failed, broker,
    )


def stage_names(children: Sequence[Child]) -> list[str]:
    return [c.name for c in children]
