"""The fault scenarios: each runs real producer/processor processes and injects one fault.

A scenario gets a ``Setup`` (transport URLs, work folder, broker handle) and returns a
``ScenarioResult`` whose numbers come from ``accounting.account``: what the producers sent vs what
the HDF5 file holds. ``expectation`` states what must hold for that transport, ``passed`` whether
it did; nothing is asserted that the transport does not promise.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.redaction import redact_url
from harness.chaos.accounting import Accounting, account, trade_rows
from harness.chaos.processes import (
    Stage,
    UnservedTradeCounter,
    file_size_limit,
    wait_reconnected,
    wait_rows_above,
)
from harness.pipeline import end_options
from transports.brokers import ApacheKafkaBroker, ApacheKafkaCluster, Broker


@dataclass
class Setup:
    transport: str  # "kafka", "kafka-cluster", "zmq-pushpull", "zmq-pubsub"
    producer_url: str
    processor_url: str
    workdir: Path
    rate: float
    messages: int
    broker: Broker | None = None

    @property
    def output(self) -> Path:
        return self.workdir / "market.h5"

    @property
    def replayable(self) -> bool:
        return self.transport.startswith("kafka")


@dataclass
class ScenarioResult:
    scenario: str
    transport: str
    url: str
    status: str = "ok"  # ok | error (the harness itself failed; see note)
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    reported_lost: int = 0
    reported_but_present: int = 0
    reported_net: int = 0  # reported gaps minus those present in the file after all
    faults: int = 0
    recovery_s: float = math.nan  # worst time from fault end until the file grew past it
    recovery_mean_s: float = math.nan
    expectation: str = ""
    passed: bool = False
    note: str = ""
    seconds: float = 0.0
    broker: str = ""  # the Kafka broker's identity (engine, version, brokers); '' on ZeroMQ
    extra: dict[str, Any] = field(default_factory=dict)

    def absorb(self, acc: Accounting) -> None:
        for key, value in acc.as_dict().items():
            if hasattr(self, key):
                setattr(self, key, value)
        self.reported_net = acc.reported_lost - acc.reported_but_present

    def row(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update({f"x_{k}": v for k, v in self.extra.items()})
        return out


# -- stage helpers ---------------------------------------------------------------------------


def producer(setup: Setup, pid: str, messages: int, seed: int, rate: float | None = None) -> Stage:
    return Stage(f"producer-{pid}", [
        "produce", "binance", "--source", "synthetic", "--streams", "trade",
        "--symbols", "btcusdt,ethusdt", "--seed", str(seed), "--rate", str(rate or setup.rate),
        "--max-messages", str(messages), "--producer-id", pid, "--transport", setup.producer_url,
        "--output-dir", str(setup.workdir / "producer"), "--progress-every", "2",
    ], setup.workdir / "logs")


#: A processor stops on its producers' end announcements; the idle exit is only the safety net
#: for one that never gets them (on ZeroMQ, a processor started after its producer announced
#: its end). It also fires when no input ever arrives, so it outlasts any restart's start-up.
SAFETY_IDLE_EXIT_S = 20.0
#: After the last announcement, how long a processor waits for announced messages still missing.
END_GRACE_S = 5.0


def processor(setup: Setup, n: int, *, producers: int = 1, output: Path | None = None,
              idle_exit: float = SAFETY_IDLE_EXIT_S,
              preexec: Callable[[], None] | None = None) -> Stage:
    return Stage(f"processor-{n}", [
        "process", "candles", "--transport", setup.processor_url,
        "--output", str(output or setup.output), "--windows", "1s,1m", "--grace-ms", "500",
        "--flush-interval", "0.2", *end_options(producers, END_GRACE_S),
        "--idle-exit", str(idle_exit), "--quiet",
        "--summary-json", str(processor_summary(setup, n)),
    ], setup.workdir / "logs", preexec)


def processor_summary(setup: Setup, n: int) -> Path:
    return setup.workdir / "logs" / f"processor-{n}.json"


def _summary(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _finish(setup: Setup, producers: list[Stage], proc: Stage, sent: dict[str, int],
            result: ScenarioResult) -> None:
    budget = setup.messages / setup.rate + 60
    for p in producers:
        code = p.wait(budget)
        if code != 0:
            result.note += f" {p.name} exit {code}: {p.last_line()[:160]};"
    code = proc.wait(60)
    if code not in (0, None):
        result.note += f" {proc.name} exit {code}: {proc.last_line()[:160]};"
    result.absorb(account(setup.output, sent))


def _feeder(setup: Setup, prod: Stage) -> Stage | None:
    """The producer whose end lets ``wait_rows_above`` give up early: on ZeroMQ nothing more can
    come once it ended and the file stopped growing; a Kafka log still holds the backlog a
    restarted processor is about to read."""
    return None if setup.replayable else prod


def _recovery(result: ScenarioResult, times: list[float]) -> None:
    result.faults = len(times)
    done = [t for t in times if not math.isnan(t)]
    if done:
        result.recovery_s = max(done) if len(done) == len(times) else math.nan
        result.recovery_mean_s = sum(done) / len(done)


def _exact_loss(result: ScenarioResult) -> bool:
    return result.reported_net == result.lost


def _judge_no_loss_or_exact(setup: Setup, result: ScenarioResult) -> None:
    if setup.replayable:
        result.expectation = "lost == 0 and duplicated == 0"
        result.passed = result.lost == 0 and result.duplicated == 0 and result.sent > 0
    else:
        result.expectation = "reported loss (gaps not in file) == true loss"
        result.passed = _exact_loss(result) and result.sent > 0


# -- scenarios -------------------------------------------------------------------------------


def processor_kill(setup: Setup, kills: int = 3) -> ScenarioResult:
    """kill -9 the processor mid-run ``kills`` times, restarting it each time."""
    result = ScenarioResult("processor_kill", setup.transport, redact_url(setup.producer_url))
    pid = f"chaos-kill-{setup.transport}"
    proc = processor(setup, 0)
    prod = producer(setup, pid, setup.messages, seed=11)
    times: list[float] = []
    started = time.monotonic()
    duration = setup.messages / setup.rate
    for n in range(1, kills + 1):
        time.sleep(max(0.0, started + duration * n / (kills + 1) - time.monotonic()))
        if prod.proc.poll() is not None:
            result.note += f" producer had finished before kill {n};"
        before = trade_rows(setup.output)
        proc.kill()
        proc = processor(setup, n)
        times.append(wait_rows_above(setup.output, before, 30, proc, enough=setup.messages,
                                     feeder=_feeder(setup, prod)))
    _recovery(result, times)
    _finish(setup, [prod], proc, {pid: setup.messages}, result)
    _judge_no_loss_or_exact(setup, result)
    return result


def processor_stall(setup: Setup, stall_s: float = 3.0) -> ScenarioResult:
    """SIGSTOP the processor for ``stall_s`` then SIGCONT: back-pressure, drops or lag."""
    result = ScenarioResult("processor_stall", setup.transport, redact_url(setup.producer_url))
    pid = f"chaos-stall-{setup.transport}"
    proc = processor(setup, 0)
    prod = producer(setup, pid, setup.messages, seed=12)
    wait_rows_above(setup.output, 0, 30, proc)
    time.sleep(0.5)
    proc.signal(signal.SIGSTOP)
    stopped_at = trade_rows(setup.output)
    time.sleep(stall_s)
    proc.signal(signal.SIGCONT)
    backlog = int(setup.rate * stall_s)
    # recovery: the processor has taken in as many trades as arrived during the stall
    _recovery(result, [wait_rows_above(setup.output, stopped_at + backlog, 60, proc,
                                        enough=setup.messages, feeder=_feeder(setup, prod))])
    result.extra["stall_s"] = stall_s
    _finish(setup, [prod], proc, {pid: setup.messages}, result)
    if setup.transport == "zmq-pushpull":
        result.expectation = "back-pressure: lost == 0, reported == true loss"
        result.passed = result.lost == 0 and _exact_loss(result)
    else:
        _judge_no_loss_or_exact(setup, result)
    return result


def producer_restart(setup: Setup) -> ScenarioResult:
    """Stop the producer mid-run and start a new one (new id, sequence numbers from 0)."""
    result = ScenarioResult("producer_restart", setup.transport, redact_url(setup.producer_url))
    first, second = f"chaos-prod1-{setup.transport}", f"chaos-prod2-{setup.transport}"
    half = setup.messages // 2
    proc = processor(setup, 0, producers=2)
    p1 = producer(setup, first, half, seed=13)
    p1.wait(half / setup.rate + 60)
    before = trade_rows(setup.output)
    p2 = producer(setup, second, setup.messages - half, seed=14)
    _recovery(result, [wait_rows_above(setup.output, before, 30, proc, feeder=_feeder(setup, p2))])
    _finish(setup, [p2], proc, {first: half, second: setup.messages - half}, result)
    _judge_no_loss_or_exact(setup, result)
    return result


def broker_restart(setup: Setup) -> ScenarioResult:
    """Kafka only: restart the embedded broker mid-run, between two producers.

    Apache Kafka keeps its log on disk: the restarted broker serves the same log and committed
    offsets, and the running processor carries on from its position (nothing re-read, no reset).
    Tansu (memory storage) loses everything: the processor must notice its position is past the
    new log's end and read the new log from its start instead of waiting there.
    """
    result = ScenarioResult("broker_restart", setup.transport, redact_url(setup.producer_url))
    broker = setup.broker
    assert broker is not None
    first, second = "chaos-broker1", "chaos-broker2"
    half = setup.messages // 2
    # a JVM restart can take a while
    proc = processor(setup, 0, producers=2, idle_exit=LONG_IDLE_EXIT_S)
    p1 = producer(setup, first, half, seed=15)
    p1.wait(half / setup.rate + 60)
    wait_rows_above(setup.output, half - 1, 20, proc)
    restarted = time.monotonic()
    if isinstance(broker, ApacheKafkaBroker):
        broker.restart()
    else:
        broker.stop()
        broker.start()
    result.extra["restart_s"] = round(time.monotonic() - restarted, 3)
    before = trade_rows(setup.output)
    p2 = producer(setup, second, setup.messages - half, seed=16)
    _recovery(result, [wait_rows_above(setup.output, before, 30, proc, feeder=_feeder(setup, p2))])
    _stop_when_complete(setup, [p2], proc)
    _finish(setup, [p2], proc, {first: half, second: setup.messages - half}, result)
    resets = int(_summary(processor_summary(setup, 0)).get("log_resets", -1))
    result.extra["log_resets"] = resets
    if isinstance(broker, ApacheKafkaBroker):
        result.expectation = ("the log survives the restart: lost 0, duplicated 0, and the "
                              "processor never resets its position (log_resets 0)")
        result.passed = (result.lost == 0 and result.duplicated == 0 and resets == 0
                         and result.sent > 0)
        result.note += (" Apache Kafka keeps its log on disk: the processor's fetches fail while "
                        "the broker is down, then continue from the same offsets.")
        return result
    result.expectation = ("the new, empty log is read from its start: lost 0 and duplicated 0 "
                          "(the first half was in the file before the restart)")
    result.passed = result.lost == 0 and result.duplicated == 0 and result.sent > 0
    result.note += (" Tansu uses memory storage: a restart loses every topic, "
                    "record and committed offset (anything not yet consumed is gone); the "
                    "processor's position is past the new log's end and its topic comes back "
                    "with 4 partitions, so the subscriber reads the new log and the new "
                    "partitions from their start (transports.kafka_core).")
    return result


#: A failover stream lasts at least this long (the rate is lowered if needed), and the fault
#: comes a sixth of the way in: the outage (fencing a dead broker alone takes up to 9 s, more on
#: a busy machine) ends while the producer still runs, so its final flush is not what waits.
FAILOVER_STREAM_S = 30.0
#: Processors that must outlive an outage: stopped by the scenario once every trade is in.
LONG_IDLE_EXIT_S = 60.0


def _stop_when_complete(setup: Setup, producers: list[Stage], proc: Stage,
                        timeout: float = 60.0) -> None:
    """After the producers end, SIGTERM the processor once the file holds every trade (or after
    ``timeout``); it flushes and exits 0, and no idle clock can end it during an outage."""
    for p in producers:
        p.wait(setup.messages / setup.rate + 120)
    wait_rows_above(setup.output, setup.messages - 1, timeout, proc)
    proc.signal(signal.SIGTERM)


def failover(setup: Setup) -> ScenarioResult:
    """The nearest thing each transport has to losing a broker, mid-stream.

    kafka-cluster: SIGKILL the broker leading the trade partition (3 replicas, acks=all,
    idempotent producer); the controller fences it and elects a new leader, clients move over.
    zmq-pushpull: there is no broker; the peer that holds the stream's other end (the
    processor) is SIGKILLed and restarted. Both report the failover time (kill -> first trade
    published after it reaches the processor) and the latency spike around it.
    """
    result = ScenarioResult("failover", setup.transport, redact_url(setup.producer_url))
    pid = f"chaos-failover-{setup.transport}"
    cluster = setup.broker if isinstance(setup.broker, ApacheKafkaCluster) else None
    # the stream outlasts a failover (fencing a dead broker alone takes up to 9 s), and the
    # processor's idle exit does not end it during the outage
    rate = min(setup.rate, setup.messages / FAILOVER_STREAM_S)
    proc = processor(setup, 0, idle_exit=LONG_IDLE_EXIT_S)
    prod = producer(setup, pid, setup.messages, seed=21, rate=rate)
    wait_rows_above(setup.output, 0, 60, proc)
    fault_at = time.monotonic() + setup.messages / rate / 6
    _wait_caught_up(setup.output, rate, fault_at)
    time.sleep(max(0.0, fault_at - time.monotonic()))
    if cluster is not None:
        leader = cluster.leader_of("binance.trade", 0)
        killed_ns = time.time_ns()
        cluster.kill(leader)
        new_leader = cluster.leader_of("binance.trade", 0, timeout=60, exclude=leader)
        result.extra.update(killed_node=leader, new_leader=new_leader,
                            leader_elected_s=round((time.time_ns() - killed_ns) / 1e9, 3))
    else:
        killed_ns = time.time_ns()
        proc.kill()
        proc = processor(setup, 1, idle_exit=LONG_IDLE_EXIT_S)
    result.extra["rate"] = rate
    _stop_when_complete(setup, [prod], proc, timeout=10.0 if cluster is None else 60.0)
    _finish(setup, [prod], proc, {pid: setup.messages}, result)
    result.faults = 1
    result.extra.update(failover_latency(setup.output, pid, killed_ns))
    result.recovery_s = result.extra.get("failover_s", math.nan)
    if cluster is not None:
        result.expectation = "acks=all on 3 replicas: lost 0 and duplicated 0"
        result.passed = result.lost == 0 and result.duplicated == 0 and result.sent > 0
        result.note += (f" node {result.extra['killed_node']} (leader of binance.trade[0]) "
                        f"SIGKILLed; node {result.extra['new_leader']} leads after "
                        f"{result.extra['leader_elected_s']} s (the controller fences a broker "
                        "after broker.session.timeout.ms without heartbeats, 9 s by default);")
    else:
        result.expectation = "no broker to fail over: reported loss (gaps not in file) == true loss"
        result.passed = _exact_loss(result) and result.sent > 0
        result.note += " the processor (the PULL peer) SIGKILLed and restarted at once;"
    return result


def _wait_caught_up(output: Path, rate: float, not_before: float, timeout: float = 60.0) -> None:
    """Until the processor keeps up (the file grows by the stream's rate, less than 1 s behind),
    so the baseline before a fault is steady-state latency, not a start-up backlog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        start_rows, start = trade_rows(output), time.monotonic()
        time.sleep(1.0)
        expected = rate * (time.monotonic() - start)
        grown = trade_rows(output) - start_rows  # faster than the stream: still catching up
        if 0.7 * expected <= grown <= 1.5 * expected + 50 and time.monotonic() >= not_before:
            return


def failover_latency(output: Path, producer_id: str, killed_ns: int) -> dict[str, float]:
    """From the trades table: p50/p99 publish->processor latency from 4 s to 1 s before the fault,
    the worst around it (records published from 1 s before the kill on), and the failover time:
    from the kill until the first trade published after it was received."""
    trades = _table_or_empty(output)
    if len(trades) == 0:
        return {}
    pids = trades["producer_id"]
    mine = trades[pids == (producer_id.encode() if pids.dtype.kind == "S" else producer_id)]
    publish = mine["publish_time_ns"].astype("int64")
    latency_ms = (mine["receive_time_ns"].astype("int64") - publish) / 1e6
    second = 1_000_000_000
    before = latency_ms[(publish >= killed_ns - 4 * second) & (publish < killed_ns - second)]
    around = latency_ms[publish >= killed_ns - second]
    after = mine["receive_time_ns"][publish >= killed_ns].astype("int64")
    out: dict[str, float] = {}
    if len(before):
        out["baseline_p50_ms"] = round(float(np.percentile(before, 50)), 2)
        out["baseline_p99_ms"] = round(float(np.percentile(before, 99)), 2)
    if len(around):
        out["spike_max_ms"] = round(float(around.max()), 1)
    if len(after):
        out["failover_s"] = round((int(after.min()) - killed_ns) / 1e9, 3)
    return out


def _table_or_empty(output: Path) -> np.ndarray:
    from sinks.hdf5_reader import read_table

    try:
        return read_table(output, "trades")
    except (OSError, KeyError):
        return np.zeros(0)


def disk_full(setup: Setup, limit_bytes: int = 400_000) -> ScenarioResult:
    """The processor's file hits a size limit (EFBIG, like ENOSPC); then it restarts with room."""
    result = ScenarioResult("disk_full", setup.transport, redact_url(setup.producer_url))
    pid = f"chaos-disk-{setup.transport}"
    proc = processor(setup, 0, preexec=file_size_limit(limit_bytes))
    prod = producer(setup, pid, setup.messages, seed=17)
    code = proc.wait(setup.messages / setup.rate + 30)
    failed_with = proc.last_line()[:200]
    rows_after_failure = trade_rows(setup.output)  # readable, at its last good checkpoint
    result.extra.update(exit_code=-1 if code is None else code, rows_at_failure=rows_after_failure)
    proc = processor(setup, 1)
    _recovery(result, [wait_rows_above(setup.output, rows_after_failure, 30, proc,
                                        feeder=_feeder(setup, prod))])
    _finish(setup, [prod], proc, {pid: setup.messages}, result)
    clear = code not in (0, None) and "error" in failed_with.lower()
    result.note += f" first run: exit {code}: {failed_with!r};"
    if setup.replayable:
        result.expectation = "clear error, file readable, restart with room: lost 0, dup 0"
        result.passed = clear and result.lost == 0 and result.duplicated == 0
    else:
        result.expectation = "clear error, file readable; loss only while no processor ran"
        result.passed = clear and result.reported_net <= result.lost
    return result


def unwritable_output(setup: Setup) -> ScenarioResult:
    """Output path whose folder cannot be created: a one-line error before anything is read."""
    result = ScenarioResult("unwritable_output", setup.transport, redact_url(setup.producer_url))
    blocker = setup.workdir / "not-a-folder"
    blocker.write_text("a file where the output folder should be\n")
    pid = f"chaos-unwritable-{setup.transport}"
    prod = producer(setup, pid, setup.messages, seed=18)
    bad = processor(setup, 0, output=blocker / "market.h5")
    code = bad.wait(60)
    line = bad.last_line()
    result.note += f" exit {code}: {line[:200]!r};"
    proc = processor(setup, 1)
    _recovery(result, [wait_rows_above(setup.output, 0, 30, proc, feeder=_feeder(setup, prod))])
    _finish(setup, [prod], proc, {pid: setup.messages}, result)
    clear = code == 2 and line.startswith("harness process: error:")
    if setup.replayable:
        result.expectation = "exit 2 with a one-line error; nothing consumed: lost 0, dup 0"
        result.passed = clear and result.lost == 0 and result.duplicated == 0
    else:
        result.expectation = "exit 2 with a one-line error; reported == true loss"
        result.passed = clear and _exact_loss(result)
    return result


def live_producer(setup: Setup, pid: str, endpoint: str, messages: int) -> Stage:
    return Stage(f"producer-{pid}", [
        "produce", "binance", "--source", "live", "--endpoint", endpoint, "--streams", "trade",
        "--symbols", "btcusdt,ethusdt", "--max-messages", str(messages), "--producer-id", pid,
        "--transport", setup.producer_url, "--output-dir", str(setup.workdir / "producer"),
        "--summary-json", str(setup.workdir / f"{pid}.summary.json"), "--progress-every", "2",
    ], setup.workdir / "logs")


def _wait_frames_after(emulator: object, frames_before: int, timeout: float) -> float:
    """Seconds until the emulator has sent a frame beyond ``frames_before``; ``nan`` if not."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if emulator.stats.frames_sent > frames_before:  # type: ignore[attr-defined]
            return time.monotonic() - start
        time.sleep(0.005)
    return float("nan")


def source_dropped(setup: Setup, drops: int = 3, rate: float = 400.0) -> ScenarioResult:
    """Abort the producer's websocket to the (emulated) exchange ``drops`` times mid-run.

    Binance does not replay: trades the exchange produced while the producer was reconnecting
    are lost at the source, before any transport sees them. The emulator's market is wrapped to
    count them (``x_source_lost``); the pipeline's own accounting starts at what the producer
    published, which must all arrive on Kafka and be reported exactly on ZeroMQ.
    """
    from emulators.binance import emulator_thread

    result = ScenarioResult("source_dropped", setup.transport, redact_url(setup.producer_url))
    pid = f"chaos-source-{setup.transport}"
    rate = min(rate, setup.rate)
    messages = min(setup.messages, int(rate * 8))  # ~8 s of trades: room for three drops
    summary = setup.workdir / f"{pid}.summary.json"
    times: list[float] = []
    reconnects: list[float] = []
    source_lost = 0
    with emulator_thread(symbols=("btcusdt", "ethusdt"), rate=rate, seed=19) as emu:
        unserved = UnservedTradeCounter(emu)
        proc = processor(setup, 0)
        prod = live_producer(setup, pid, emu.url, messages)
        first = wait_reconnected(emu, 0, 30)
        started = time.monotonic()
        duration = messages / rate
        for n in range(1, drops + 1):
            time.sleep(max(0.0, started + duration * n / (drops + 1) - time.monotonic()))
            if prod.proc.poll() is not None:
                result.note += f" producer had finished before drop {n};"
                break
            connections, counted = emu.stats.connections, unserved.unserved
            emu.drop_connections()
            reconnects.append(round(wait_reconnected(emu, connections, 30), 3))
            source_lost += unserved.unserved - counted
            # recovery: drop -> first frame the exchange sends on the new connection (the
            # producer publishes each frame as it arrives)
            times.append(reconnects[-1] + _wait_frames_after(emu, emu.stats.frames_sent, 30))
        code = prod.wait(duration + 60)
    if code != 0:
        result.note += f" {prod.name} exit {code}: {prod.last_line()[:160]};"
    published = _published_trades(summary)
    _recovery(result, times)
    proc_code = proc.wait(60)
    if proc_code not in (0, None):
        result.note += f" {proc.name} exit {proc_code}: {proc.last_line()[:160]};"
    result.absorb(account(setup.output, {pid: published}))
    result.extra.update(source_lost=source_lost, reconnect_s=max(reconnects, default=math.nan),
                        first_connect_s=round(first, 3), emulator_rate=rate)
    result.note += (f" {source_lost} trades the exchange produced while the producer was "
                    "disconnected are lost at the source (Binance does not replay) and are not "
                    "in sent/lost; recovery = drop until the first frame on the new connection;")
    if setup.replayable:
        result.expectation = "published == delivered: lost == 0 and duplicated == 0"
        result.passed = result.lost == 0 and result.duplicated == 0 and result.sent > 0
    else:
        result.expectation = "duplicated == 0; reported loss (gaps not in file) == true loss"
        result.passed = result.duplicated == 0 and _exact_loss(result) and result.sent > 0
    result.passed = result.passed and result.faults == drops and code == 0
    return result


def _published_trades(summary: Path) -> int:
    """Trades the producer says it published (its summary JSON), 0 if it wrote none."""
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return 0
    return int(data.get("published_by_topic", {}).get("binance.trade", 0))


SCENARIOS: dict[str, Callable[[Setup], ScenarioResult]] = {
    "processor_kill": processor_kill,
    "processor_stall": processor_stall,
    "producer_restart": producer_restart,
    "broker_restart": broker_restart,
    "failover": failover,
    "disk_full": disk_full,
    "unwritable_output": unwritable_output,
    "source_dropped": source_dropped,
}
#: Which transports each scenario runs on (broker restart needs a broker; the stall contrasts
#: PUSH/PULL back-pressure with PUB/SUB dropping).
TRANSPORTS: dict[str, tuple[str, ...]] = {
    "processor_kill": ("kafka", "zmq-pushpull"),
    "processor_stall": ("kafka", "zmq-pushpull", "zmq-pubsub"),
    "producer_restart": ("kafka", "zmq-pushpull"),
    "broker_restart": ("kafka",),
    "failover": ("kafka-cluster", "zmq-pushpull"),
    "disk_full": ("kafka", "zmq-pushpull"),
    "unwritable_output": ("kafka", "zmq-pushpull"),
    "source_dropped": ("kafka", "zmq-pushpull"),
}
