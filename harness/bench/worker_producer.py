"""Producer process: publishes on an open-loop schedule and records publish latency.

Each message carries its *intended* send time as ``event_time_ns``; the consumer measures
end-to-end latency from it. Publish latency is the time ``publish()`` returned minus the
intended time, so a blocking or late sender is visible in both.

Run by the runner as ``python -m harness.bench.worker_producer '<json config>'``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from harness.bench import protocol
from harness.bench.metrics import IntervalRecorder, clamp_us
from harness.bench.payloads import make_payloads
from harness.bench.schedule import make_schedule
from harness.profiling import profile_from_environment
from transports import TransportError, open_transport

SLEEP_THRESHOLD_NS = 50_000  # closer than this to the intended time: send now, do not sleep
#: A sender still this far behind after the end is blocked, not merely late by a sleep overshoot.
BEHIND_GRACE_NS = 1_000_000_000


def run(config: dict[str, Any]) -> None:
    control = protocol.Control()
    transport = open_transport(config["url"])
    publisher = transport.publisher(producer_id=config["producer_id"])
    topic: str = config["topic"]
    key = config["producer_id"].encode() if config.get("keyed", True) else None
    payloads = make_payloads(config["payload"], config["message_bytes"], config["seed"])
    protocol.emit(
        "ready",
        identity=transport.identity,
        display_url=transport.display_url,
        capabilities=_capabilities(transport),
    )
    go = control.wait_for("go")
    if go is None:
        protocol.emit("final", published=0, bytes=0, errors={}, producer_id=publisher.producer_id)
        return
    start_ns: int = go["start_ns"]
    end_ns = start_ns + int((config["warmup_s"] + config["duration_s"]) * 1e9)
    rate: float = config["rate"]
    schedule = (
        make_schedule(config["schedule"], rate, config["burst_size"], config["seed"])
        if rate > 0
        else None
    )
    recorder = IntervalRecorder(start_ns)
    next_roll = start_ns + recorder.interval_ns
    errors: dict[str, int] = {}
    published = published_bytes = behind = 0
    n_payloads = len(payloads)
    stop = control.stop
    while True:
        if schedule is None:
            intended = time.time_ns()
        else:
            intended = start_ns + next(schedule)
            if intended >= end_ns:
                break
            wait = intended - time.time_ns()
            if wait > SLEEP_THRESHOLD_NS and stop.wait(wait / 1e9):
                break
        if intended >= end_ns or stop.is_set():
            break
        if schedule is not None and time.time_ns() >= end_ns + BEHIND_GRACE_NS:
            # Blocked (back-pressure) so long that the run is over: stop sending, but count the
            # intended messages never sent, so a sender that fell behind is not hidden.
            behind = 1 + sum(1 for _ in itertools.takewhile(
                lambda offset: start_ns + offset < end_ns, schedule))
            break
        value = payloads[published % n_payloads]
        try:
            publisher.publish(topic, value, key=key, event_time_ns=intended)
        except TransportError as exc:
            kind = type(exc).__name__
            errors[kind] = errors.get(kind, 0) + 1
            continue
        done = time.time_ns()
        recorder.hist.record_value(clamp_us(done - intended))
        recorder.count += 1
        recorder.bytes += len(value)
        published += 1
        published_bytes += len(value)
        if done >= next_roll:
            for row in recorder.roll(done):
                protocol.emit("interval", **row)
            next_roll = start_ns + (recorder.index + 1) * recorder.interval_ns
    flush_started = time.time_ns()
    try:
        publisher.flush()
    except TransportError as exc:
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    for row in recorder.roll(time.time_ns()):
        protocol.emit("interval", **row)
    protocol.emit("interval", **recorder.snapshot())
    protocol.emit(
        "final",
        producer_id=publisher.producer_id,
        published=published,
        bytes=published_bytes,
        errors=errors,
        behind=behind,
        flush_ms=(time.time_ns() - flush_started) / 1e6,
    )
    publisher.close()
    transport.close()


def _capabilities(transport: Any) -> dict[str, bool]:
    caps = transport.capabilities
    names = ("durable", "replayable", "ordered_per_key", "load_balanced", "fan_out",
             "drops_when_slow")
    return {name: bool(getattr(caps, name)) for name in names}


if __name__ == "__main__":
    with profile_from_environment("bench", "producer"):  # harness --profile DIR bench ...
        protocol.run_worker(run)
