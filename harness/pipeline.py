"""``harness run``: the whole pipeline as separate processes, the way compose runs it.

Processors start first (they resume from their HDF5 files), then the producers. A producer that
stops cleanly announces the end of each stream with the count it published; a processor stops
once its producer's announcement came and every message it announced arrived (never on a quiet
spell), or ``end_grace_s`` after the announcement, logging what never came. If a processor got
no announcement at all (its producer crashed, PUB/SUB dropped it), the runner stops it
``end_grace_s`` after the producers ended; the run's loss is exact either way, from what the
producers published and what the processors received.

Every child is a real ``harness`` process with its own log, in a session of its own, and dies
with the runner (``harness.lifeline``): SIGTERM or Ctrl-C to the runner stops the producers,
lets the processors finish and checkpoint, then summarises; ``kill -9`` of the runner sends
every child SIGTERM from the kernel, so none is left publishing or holding a port. The runner
only wires endpoints, shows progress by reading the HDF5 files *while they are written*
(SWMR), and summarises.

Transport wiring: Kafka stages all talk to one bootstrap server (an embedded broker if none is
given: Apache Kafka with its log in ``<output>/<transport>/broker/``, or Tansu without Java).
ZeroMQ has no broker, so each stream link is its own endpoint: the Binance producer binds one
port that the candle processor connects to, the Twitter producer another.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError
from harness.lifeline import StopRequest, die_with_parent
from transports.brokers import free_tcp_port, make_broker
from transports.brokers.registry import lookup as announced_broker

STOP_GRACE_S = 10.0
#: processor -> the producer whose streams it reads
FED_BY = {"candles": "binance", "sentiment": "twitter"}


@dataclass
class PipelineConfig:
    transport: str  # "kafka", "kafka-confluent", "zmq" or "zmq-pubsub"
    run_dir: Path  # this run's folder (harness.run_history); output goes to <run_dir>/<transport>
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
    #: How long processors wait for what their producer announced, after its end announcement
    #: (and the runner, after the producers exited, for a processor that got none).
    end_grace_s: float = 30.0
    with_twitter: bool = True
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
                start_new_session=True, preexec_fn=die_with_parent(),
            )

    def request_stop(self) -> None:
        """SIGTERM without waiting: a graceful stop (producers flush and announce their end)."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

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
        out = cfg.run_dir / cfg.transport
        broker = make_broker(log_path=out / "logs" / "broker.log", folder=out / "broker")
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
    out = cfg.run_dir / cfg.transport
    logs = out / "logs"
    h = harness_argv()
    children = [
        Child(
            "candles",
            [*h, "process", "candles", "--transport", urls["market"][1],
             "--output", str(out / "market.h5"), "--windows", cfg.windows,
             *end_options(1, cfg.end_grace_s), "--quiet",
             "--summary-json", str(logs / "candles.json"),
             *(["--with-depth"] if wants_depth(cfg.streams) else [])],
            logs / "candles.log", logs / "candles.json",
        ),
    ]
    if cfg.with_twitter:
        children.append(
            Child(
                "sentiment",
                [*h, "process", "sentiment", "--transport", urls["tweets"][1],
                 "--output", str(out / "sentiment.h5"), "--windows", cfg.windows,
                 *end_options(1, cfg.end_grace_s), "--quiet",
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


def end_options(producers: int, grace_s: float) -> list[str]:
    """``harness process`` stops once ``producers`` announced their end and all of it arrived
    (or ``grace_s`` after the last announcement), never on a quiet spell."""
    return ["--end-after-producers", str(producers), "--end-grace", str(grace_s)]


def wants_depth(streams: str) -> bool:
    """Depth streams are on: the candle processor also keeps order books (one process reads
    one producer's link; two on a ZeroMQ PUSH socket would each get half of it)."""
    return any(s.strip().startswith("depth") for s in streams.split(","))


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
    out = cfg.run_dir / cfg.transport  # never deleted here: the run folder is this run's own
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **cfg.extra_env}
    started = time.monotonic()
    with transport_urls(cfg) as (urls, broker), StopRequest().installed() as stop:
        children = build_children(cfg, urls)
        processors = [c for c in children if c.name in ("candles", "sentiment")]
        producers = [c for c in children if c not in processors]
        try:
            for child in processors:
                child.start(env)
            _wait(1.0, stop)  # processors bind/subscribe before producers start sending
            if not stop.requested:
                for child in producers:
                    child.start(env)
            _run_until_done(cfg, children, producers, processors, stop, progress, started)
        except KeyboardInterrupt:
            pass  # a second signal: stop everything now
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


def _wait(seconds: float, stop: StopRequest) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _run_until_done(
    cfg: PipelineConfig, children: list[Child], producers: list[Child],
    processors: list[Child], stop: StopRequest, progress: Any, started: float,
) -> None:
    """Producers run their course (or until a stop request), then the processors finish."""
    # a replay runs as long as its recording; the other sources stop at their duration
    deadline = time.monotonic() + (cfg.duration_s + 120.0 if cfg.source != "replay" else 1e9)
    while any(p.running() for p in producers) and time.monotonic() < deadline:
        if stop.requested:
            for child in producers:
                child.request_stop()
            stop.requested = False  # a second signal stops waiting for the processors
            deadline = min(deadline, time.monotonic() + STOP_GRACE_S)
        if progress:
            progress(cfg, children, time.monotonic() - started)
        _wait(1.0, stop)
    # The processors stop on their producer's end announcement (or end_grace_s after it);
    # one that never got it is stopped here, with its final checkpoint, and one whose producer
    # published nothing (so announced nothing) has nothing to wait for.
    names = {c.name: c for c in children}
    for processor, producer in FED_BY.items():
        done = names[producer].result() if producer in names else {}
        if processor in names and done and not any(done.get("published_by_topic", {}).values()):
            names[processor].request_stop()
    drain_deadline = time.monotonic() + cfg.end_grace_s + 5.0
    while any(c.running() for c in processors) and time.monotonic() < drain_deadline:
        if progress:
            progress(cfg, children, time.monotonic() - started)
        _wait(1.0, stop)
        if stop.requested:
            break
