"""Consumer process: end-to-end latency from intended send time, plus exact loss accounting.

Latency = receive time - intended send time (``event_time_ns``), recorded per 1 s interval of
receive time. Optional per-message delay (a slow consumer) and a one-off stall (the honest-
latency check) are applied here. At the end the runner says how many messages each producer
sent, so a lost *tail* is counted; gaps and the unconsumed tail are reported separately because
a durable transport's tail is backlog, not loss.

Run by the runner as ``python -m harness.bench.worker_consumer '<json config>'``.
"""

from __future__ import annotations

import time
from typing import Any

from harness.bench import protocol
from harness.bench.metrics import IntervalRecorder, clamp_us
from harness.profiling import profile_from_environment
from transports import open_transport

POLL_MAX = 1000
POLL_TIMEOUT_S = 0.05


def run(config: dict[str, Any]) -> None:
    control = protocol.Control()
    transport = open_transport(config["url"])
    topic: str = config["topic"]
    subscriber = transport.subscriber([topic], group=config.get("group"), start="earliest")
    protocol.emit("ready", identity=transport.identity)
    # Keep polling while waiting: subscriptions (ZeroMQ connects, Kafka assignment) settle now.
    go = None
    while go is None and not control.stop.is_set():
        subscriber.poll(max_messages=POLL_MAX, timeout=POLL_TIMEOUT_S)
        command = control.poll()
        if command and command.get("cmd") == "go":
            go = command
    if go is None:
        _final(subscriber, topic, {}, 0.0)
        return
    start_ns: int = go["start_ns"]
    delay_s = config.get("delay_us", 0.0) / 1e6
    stall_s = config.get("stall_ms", 0.0) / 1e3
    stall_at_ns = start_ns + int(config.get("stall_at_s", 0.0) * 1e9)
    recorder = IntervalRecorder(start_ns)
    next_roll = start_ns + recorder.interval_ns
    expected: dict[str, int] | None = None
    expect_all = bool(config.get("expect_all", True))
    drain_deadline = drain_idle_ns = 0
    idle_ns = int(config.get("drain_idle_s", 1.0) * 1e9)
    last_message_ns = time.time_ns()
    stats = subscriber.stats
    poll = subscriber.poll
    hist = recorder.hist
    while not control.stop.is_set():
        batch = poll(max_messages=POLL_MAX, timeout=POLL_TIMEOUT_S)
        now = time.time_ns()
        if batch:
            last_message_ns = now
            hist = recorder.hist
            record = hist.record_value
            nbytes = 0
            for env in batch:
                received = env.receive_time_ns or now
                record(clamp_us(received - env.event_time_ns))
                nbytes += len(env.value)
            recorder.count += len(batch)
            recorder.bytes += nbytes
            if delay_s:
                time.sleep(delay_s * len(batch))
        if stall_s and now >= stall_at_ns:
            time.sleep(stall_s)
            stall_s = 0.0
        if now >= next_roll:
            for row in recorder.roll(now):
                protocol.emit("interval", **row)
            next_roll = start_ns + (recorder.index + 1) * recorder.interval_ns
        if expected is None:
            command = control.poll()
            if command and command.get("cmd") == "finish":
                expected = {str(k): int(v) for k, v in command["expected"].items()}
                drain_deadline = now + int(command.get("drain_timeout_s", 5.0) * 1e9)
                drain_idle_ns = idle_ns
        if expected is not None:
            if now >= drain_deadline:
                break
            if expect_all:
                report = stats.sequence.report()
                if report.received - report.duplicates >= sum(expected.values()):
                    break
            if now - last_message_ns >= drain_idle_ns:
                break
    for row in recorder.roll(time.time_ns()):
        protocol.emit("interval", **row)
    protocol.emit("interval", **recorder.snapshot())
    _final(subscriber, topic, expected or {}, (time.time_ns() - start_ns) / 1e9)
    subscriber.close()
    transport.close()


def _final(subscriber: Any, topic: str, expected: dict[str, int], elapsed_s: float) -> None:
    tracker = subscriber.stats.sequence
    gaps = tracker.report().lost  # missing numbers below the highest seen: truly dropped
    for producer_id, total in expected.items():
        tracker.expect_total(producer_id, topic, total)
    report = tracker.report()
    missing = {pid: [list(r) for r in tracker.missing_ranges(pid, topic)] for pid in expected}
    protocol.emit(
        "final",
        received=subscriber.stats.received,
        bytes=subscriber.stats.received_bytes,
        rejected=dict(subscriber.stats.rejected_by_kind),
        gaps=gaps,
        tail=report.lost - gaps,
        lost=report.lost,
        duplicates=report.duplicates,
        reordered=report.reordered,
        unsequenced=report.unsequenced,
        missing=missing,
        elapsed_s=elapsed_s,
    )


if __name__ == "__main__":
    with profile_from_environment("bench", "consumer"):  # harness --profile DIR bench ...
        protocol.run_worker(run)
