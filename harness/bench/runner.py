"""Run one trial (scenario x transport x rate) with producer and consumer processes.

Consumers start first and report ready, then producers; everyone gets the same wall-clock start
instant. The runner samples CPU/RSS, collects per-interval JSON from every worker, tells the
consumers how many messages each producer sent, lets them drain, and aggregates. A Ctrl-C stops
the workers and keeps what they measured (the trial is marked ``interrupted``).
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from harness.bench import metrics
from harness.bench.system_stats import ProcessSample, ProcessSampler
from harness.bench.workload import Scenario, TransportSpec
from producers.runtime.pacing import PACE_TOLERANCE
from transports import open_transport
from transports.brokers import free_tcp_port
from transports.sequence import intersect_all, split_tail

READY_TIMEOUT_S = 60.0
START_MARGIN_S = 0.3
FINAL_GRACE_S = 20.0
DRAIN_IDLE_S = 1.0

ProgressFn = Callable[[str, float], None]  # (status line, fraction of the trial done)


@dataclass
class TrialContext:
    """What every trial of a run shares: the broker address, the log folder, progress output."""

    log_dir: Path
    broker_bootstrap: str = ""
    broker_pid: int | None = None
    broker_identity: str = ""
    progress: ProgressFn | None = None
    interrupted: threading.Event = field(default_factory=threading.Event)


@dataclass
class TrialResult:
    scenario: str
    transport: str
    target_rate: float
    phase: str  # "fixed", "sweep" or "max"
    status: str = "ok"  # ok | failed | interrupted
    error: str = ""
    identity: str = ""
    display_url: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    intervals: list[dict[str, Any]] = field(default_factory=list)
    e2e_hist: str = ""
    publish_hist: str = ""
    processes: list[ProcessSample] = field(default_factory=list)

    @property
    def sustainable(self) -> bool:
        return bool(self.summary.get("sustainable", False))


def build_url(spec: TransportSpec, scenario: Scenario, ctx: TrialContext, port: int) -> str:
    """The URL for one trial: presets get the workload's kafka/zmq options; templates filled."""
    fill = {"broker": ctx.broker_bootstrap, "port": port, "consumers": scenario.consumers}
    if spec.url:
        return spec.url.format(**fill)
    if spec.name in ("kafka-python", "confluent-kafka"):
        scheme = "kafka" if spec.name == "kafka-python" else "kafka+confluent"
        query = urlencode({k: _text(v) for k, v in scenario.kafka.items()})
        return f"{scheme}://{ctx.broker_bootstrap}" + (f"?{query}" if query else "")
    pattern = "pubsub" if spec.name == "zmq-pubsub" else "pushpull"
    options: dict[str, Any] = {"pattern": pattern}
    # One fixed end binds: the single side when the other has several processes.
    options["bind"] = "subscriber" if scenario.producers > 1 else "publisher"
    if pattern == "pubsub":
        options["wait_subscribers"] = scenario.consumers
    options.update(scenario.zmq)
    query = urlencode({k: _text(v) for k, v in options.items()})
    return f"zmq+tcp://127.0.0.1:{port}?{query}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Worker:
    """One child process speaking JSON lines; its stdout is read on a thread into a queue."""

    def __init__(self, role: str, index: int, module: str, config: dict[str, Any],
                 inbox: queue.Queue[tuple[_Worker, dict[str, Any]]], log_path: Path) -> None:
        self.role = role
        self.name = f"{role}{index}"
        self.ready: dict[str, Any] | None = None
        self.final: dict[str, Any] | None = None
        self.error = ""
        self.intervals: list[dict[str, Any]] = []
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # Ctrl-C goes to the runner, which stops workers cleanly
        )
        self._inbox = inbox
        threading.Thread(target=self._read, name=f"bench-{self.name}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library printing to stdout; not ours
            if isinstance(message, dict):
                self._inbox.put((self, message))
        self._inbox.put((self, {"type": "exit", "code": self.proc.wait()}))

    def send(self, **command: Any) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.send(cmd="stop")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        self._log.close()


class TrialFailedError(Exception):
    pass


def run_trial(
    scenario: Scenario, spec: TransportSpec, rate: float, phase: str, ctx: TrialContext
) -> TrialResult:
    result = TrialResult(scenario.name, spec.name, rate, phase)
    tag = f"{scenario.name}-{spec.name}-{int(rate)}-{uuid.uuid4().hex[:6]}"
    topic = f"bench-{tag}"
    url = build_url(spec, scenario, ctx, free_tcp_port())
    inbox: queue.Queue[tuple[_Worker, dict[str, Any]]] = queue.Queue()
    workers: list[_Worker] = []
    sampler = ProcessSampler(time.time_ns())
    start_ns = 0
    try:
        if spec.is_kafka:
            with open_transport(url) as admin:
                admin.create_topics([topic], partitions=scenario.partitions)
                result.display_url = admin.display_url
        consumers = [
            _Worker("consumer", i, "harness.bench.worker_consumer",
                    _consumer_config(scenario, url, topic, tag, i),
                    inbox, ctx.log_dir / f"{tag}-consumer{i}.log")
            for i in range(scenario.consumers)
        ]
        workers += consumers
        _await(inbox, consumers, "ready", READY_TIMEOUT_S, ctx)
        per_producer = rate / scenario.producers if rate > 0 else 0.0
        producers = [
            _Worker("producer", i, "harness.bench.worker_producer",
                    _producer_config(scenario, url, topic, tag, i, per_producer),
                    inbox, ctx.log_dir / f"{tag}-producer{i}.log")
            for i in range(scenario.producers)
        ]
        workers += producers
        _await(inbox, producers, "ready", READY_TIMEOUT_S, ctx)
        ready = producers[0].ready or {}
        result.identity = str(ready.get("identity", ""))
        if spec.is_kafka and ctx.broker_pid and ctx.broker_identity:
            # The client sees host:port and cannot know it is the embedded broker we started.
            client = result.identity.split(" @ ")[0]
            result.identity = f"{client} @ {ctx.broker_identity}"
        result.display_url = str(ready.get("display_url", "")) or result.display_url
        for w in workers:
            sampler.watch(w.role, w.proc.pid)
        if ctx.broker_pid and spec.is_kafka:
            sampler.watch("broker", ctx.broker_pid)
        start_ns = time.time_ns() + int(START_MARGIN_S * 1e9)
        sampler.start_ns = start_ns
        for w in workers:
            w.send(cmd="go", start_ns=start_ns)
        run_s = scenario.warmup_s + scenario.duration_s
        _collect_until_final(inbox, producers, start_ns, run_s + FINAL_GRACE_S, sampler,
                             ctx, spec.name, rate, run_s)
        expected = {str(p.final["producer_id"]): int(p.final["published"])
                    for p in producers if p.final}
        for c in consumers:
            c.send(cmd="finish", expected=expected, drain_timeout_s=scenario.drain_timeout_s)
        _collect_until_final(inbox, consumers, start_ns,
                             run_s + scenario.drain_timeout_s + FINAL_GRACE_S, sampler, ctx,
                             spec.name, rate, run_s)
    except KeyboardInterrupt:
        ctx.interrupted.set()
        result.status, result.error = "interrupted", "stopped by Ctrl-C"
        for w in workers:
            w.send(cmd="stop")
        _drain_inbox(inbox, workers, timeout=5.0)
    except TrialFailedError as exc:
        result.status, result.error = "failed", str(exc)
    except Exception as exc:  # a transport error in setup: record it, go on with the next trial
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        for w in workers:
            w.stop()
    result.processes = sampler.samples
    if start_ns:
        _aggregate(result, scenario, workers, sampler)
    else:
        result.summary = _base_summary(result, scenario)
    return result


def _consumer_config(s: Scenario, url: str, topic: str, tag: str, i: int) -> dict[str, Any]:
    group = None
    if s.consumers > 1 and not s.fan_out:
        group = f"bench-{tag}"  # load-balanced: one group shares the work (Kafka joins a group)
    return {
        "url": url,
        "topic": topic,
        "group": group,
        "delay_us": s.consumer_delay_us,
        "stall_ms": s.consumer_stall_ms if i == 0 else 0.0,
        "stall_at_s": s.consumer_stall_at_s,
        "expect_all": s.consumers == 1 or s.fan_out,
        "drain_idle_s": DRAIN_IDLE_S,
    }


def _producer_config(
    s: Scenario, url: str, topic: str, tag: str, i: int, rate: float
) -> dict[str, Any]:
    return {
        "url": url,
        "topic": topic,
        "producer_id": f"{tag}-p{i}",
        "rate": rate,
        "schedule": s.schedule,
        "burst_size": s.burst_size,
        "seed": i,
        "payload": s.payload,
        "message_bytes": s.message_bytes,
        "warmup_s": s.warmup_s,
        "duration_s": s.duration_s,
    }


def _handle(worker: _Worker, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind == "interval":
        worker.intervals.append(message)
    elif kind == "ready":
        worker.ready = message
    elif kind == "final":
        worker.final = message
    elif kind == "error":
        worker.error = str(message.get("message", "worker failed"))
    elif kind == "exit" and worker.final is None and not worker.error:
        worker.error = f"{worker.name} exited with code {message.get('code')} before reporting"


def _await(inbox: queue.Queue[tuple[_Worker, dict[str, Any]]], group: list[_Worker],
           attr: str, timeout: float, ctx: TrialContext) -> None:
    deadline = time.monotonic() + timeout
    while any(getattr(w, attr) is None for w in group):
        for w in group:
            if w.error:
                raise TrialFailedError(f"{w.name}: {w.error}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TrialFailedError(f"workers not {attr} within {timeout:.0f} s")
        try:
            worker, message = inbox.get(timeout=min(left, 0.2))
        except queue.Empty:
            continue
        _handle(worker, message)


def _collect_until_final(
    inbox: queue.Queue[tuple[_Worker, dict[str, Any]]], group: list[_Worker], start_ns: int,
    limit_s: float, sampler: ProcessSampler, ctx: TrialContext, name: str, rate: float,
    run_s: float,
) -> None:
    deadline = start_ns + int(limit_s * 1e9)
    next_sample = time.monotonic() + 1.0
    while any(w.final is None and not w.error for w in group):
        if time.time_ns() > deadline:
            raise TrialFailedError(f"{group[0].role}s did not finish within {limit_s:.0f} s")
        try:
            worker, message = inbox.get(timeout=0.2)
            _handle(worker, message)
            if message.get("type") == "interval" and ctx.progress and worker.role == "consumer":
                elapsed = (time.time_ns() - start_ns) / 1e9
                ctx.progress(_status_line(name, rate, message), min(elapsed / run_s, 1.0))
        except queue.Empty:
            pass
        if time.monotonic() >= next_sample:
            sampler.sample()
            next_sample += 1.0
    for w in group:
        if w.error:
            raise TrialFailedError(f"{w.name}: {w.error}")


def _drain_inbox(inbox: queue.Queue[tuple[_Worker, dict[str, Any]]], workers: list[_Worker],
                 timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(w.final is None and not w.error for w in workers) and time.monotonic() < deadline:
        try:
            worker, message = inbox.get(timeout=0.2)
        except queue.Empty:
            continue
        _handle(worker, message)


def _status_line(name: str, rate: float, interval: dict[str, Any]) -> str:
    hist = metrics.decode(str(interval["hist"]))
    p99 = hist.get_value_at_percentile(99) / 1000 if hist.get_total_count() else float("nan")
    target = f"{rate:,.0f}/s" if rate else "max"
    return f"{name} @ {target}: consumed {interval['count']:,}/s, p99 {p99:.2f} ms"


# ---------------------------------------------------------------- aggregation


def _merge_intervals(workers: list[_Worker]) -> dict[int, dict[str, Any]]:
    by_index: dict[int, dict[str, Any]] = {}
    for w in workers:
        for row in w.intervals:
            i = int(row["i"])
            slot = by_index.setdefault(i, {"count": 0, "bytes": 0, "hists": []})
            slot["count"] += int(row["count"])
            slot["bytes"] += int(row["bytes"])
            slot["hists"].append(str(row["hist"]))
    return by_index


def _base_summary(result: TrialResult, s: Scenario) -> dict[str, Any]:
    return {
        "scenario": s.name,
        "transport": result.transport,
        "identity": result.identity,
        "display_url": result.display_url,
        "phase": result.phase,
        "target_rate": result.target_rate,
        "schedule": s.schedule,
        "payload": s.payload,
        "producers": s.producers,
        "consumers": s.consumers,
        "fan_out": s.fan_out,
        "duration_s": s.duration_s,
        "warmup_s": s.warmup_s,
        "latency_bound_ms": s.latency_bound_ms,
        "consumer_delay_us": s.consumer_delay_us,
        "consumer_stall_ms": s.consumer_stall_ms,
        "status": result.status,
        "error": result.error,
        "sustainable": False,
    }


def _aggregate(
    result: TrialResult, s: Scenario, workers: list[_Worker], sampler: ProcessSampler
) -> None:
    producers = [w for w in workers if w.role == "producer"]
    consumers = [w for w in workers if w.role == "consumer"]
    pub = _merge_intervals(producers)
    con = _merge_intervals(consumers)
    first = math.ceil(s.warmup_s - 1e-9)  # intervals before this one overlap the warm-up
    last = max([*pub, *con], default=-1)
    cum_pub = cum_con = 0
    e2e_total, pub_total = metrics.new_histogram(), metrics.new_histogram()
    rows = []
    for i in range(last + 1):
        p = pub.get(i, {"count": 0, "bytes": 0, "hists": []})
        c = con.get(i, {"count": 0, "bytes": 0, "hists": []})
        cum_pub += p["count"]
        cum_con += c["count"]
        e2e = metrics.merge(c["hists"])
        ph = metrics.merge(p["hists"])
        if i >= first:
            e2e_total.add(e2e)
            pub_total.add(ph)
        row: dict[str, Any] = {
            "t_s": float(i + 1),
            "warmup": i < first,
            "published": p["count"],
            "published_bytes": p["bytes"],
            "consumed": c["count"],
            "consumed_bytes": c["bytes"],
            "backlog": cum_pub * s.copies - cum_con,
        }
        row.update({f"e2e_{k}": v for k, v in metrics.summarize(e2e).items() if k != "count"})
        row.update({f"pub_{k}": v for k, v in metrics.summarize(ph).items() if k != "count"})
        rows.append(row)
    result.intervals = rows
    result.e2e_hist = metrics.encode(e2e_total)
    result.publish_hist = metrics.encode(pub_total)

    end = max(first + 1, math.floor(s.warmup_s + s.duration_s + 1e-9))
    window = end - first
    measured = [r for r in rows if first <= r["t_s"] - 1 < end]
    published_total = sum(int(p.final["published"]) for p in producers if p.final)
    loss = loss_figures(
        {str(p.final["producer_id"]): int(p.final["published"]) for p in producers if p.final},
        [c.final for c in consumers if c.final],
        shared=not s.fan_out,
        copies=s.copies,
    )
    summary = _base_summary(result, s)
    summary.update({
        "published": published_total,
        "consumed": sum(int(c.final["received"]) for c in consumers if c.final),
        "pub_rate": sum(r["published"] for r in measured) / window,
        "pub_mb_s": sum(r["published_bytes"] for r in measured) / window / 1e6,
        "cons_rate": sum(r["consumed"] for r in measured) / window / s.copies,
        "cons_mb_s": sum(r["consumed_bytes"] for r in measured) / window / 1e6 / s.copies,
        "max_backlog": max((r["backlog"] for r in rows), default=0),
        "not_sent": sum(int(p.final.get("behind", 0)) for p in producers if p.final),
        "publish_errors": sum(sum(p.final.get("errors", {}).values()) for p in producers
                              if p.final),
        "rejected": sum(sum(c.final.get("rejected", {}).values()) for c in consumers if c.final),
        **loss,
    })
    summary.update({f"e2e_{k}": v for k, v in metrics.summarize(e2e_total).items()})
    summary.update({f"pub_{k}": v for k, v in metrics.summarize(pub_total).items()
                    if k != "count"})
    for role, stats in sampler.summary().items():
        summary.update({f"{role}_{k}": v for k, v in stats.items()})
    # What the transport does with a slow consumer: keep (durable), drop, or push back.
    capabilities = (producers[0].ready or {}).get("capabilities", {}) if producers else {}
    summary["durable"] = bool(capabilities.get("durable", False))
    summary["drops_when_slow"] = bool(capabilities.get("drops_when_slow", False))
    target = result.target_rate
    keeps_pace = summary["not_sent"] == 0 and (
        target <= 0 or summary["pub_rate"] >= (1.0 - PACE_TOLERANCE) * target)
    summary["kept_pace"] = bool(keeps_pace)
    summary["sustainable"] = bool(
        result.status == "ok"
        and summary["lost"] == 0
        and summary["unconsumed"] == 0
        and summary["e2e_count"] > 0
        and summary["e2e_p99"] <= s.latency_bound_ms
        and keeps_pace
    )
    result.summary = summary


def loss_figures(
    totals: Mapping[str, int], finals: list[dict[str, Any]], *, shared: bool, copies: int
) -> dict[str, int]:
    """Lost (gaps: dropped), unconsumed (tail: still queued at the end), dups, reorders, from
    what each producer published (``totals``) and each consumer's final report (``finals``).

    A missing tail is what was in flight when the consumers stopped: a durable transport keeps
    it for a later read, a non-durable one discards it at shutdown. A gap (a number missing
    while later ones arrived) is a drop by the transport.

    Fan-out and single consumers: each must see every message, so their counts add up.
    Load-balanced (``shared``) consumers: a message is missing only if *no* consumer saw it.
    """
    lost = tail = 0
    if not finals:
        return {"lost": 0, "unconsumed": sum(totals.values()) * copies, "duplicates": 0,
                "reordered": 0}
    for pid, total in totals.items():
        unseen = [[0, total - 1]] if total else []  # a consumer that never saw this producer
        views = [[(int(a), int(b)) for a, b in f.get("missing", {}).get(pid, unseen)]
                 for f in finals]
        if not shared or len(finals) == 1:
            for missing in views:
                g, t = split_tail(missing, total)
                lost, tail = lost + g, tail + t
        else:
            g, t = split_tail(intersect_all(views), total)
            lost, tail = lost + g, tail + t
    received = sum(int(f["received"]) for f in finals)
    if not shared or len(finals) == 1:
        duplicates = sum(int(f["duplicates"]) for f in finals)
    else:
        duplicates = max(0, received - (sum(totals.values()) - lost - tail))
    reordered = sum(int(f["reordered"]) for f in finals)
    return {"lost": lost, "unconsumed": tail, "duplicates": duplicates, "reordered": reordered}
