"""Run the chosen scenarios on each transport, one fresh broker/port and folder per run.

"kafka" is one embedded broker (Apache Kafka, log on disk in the run's folder; Tansu where Java is
missing); "kafka-cluster" is three Apache Kafka brokers with replication factor 3.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.chaos.scenarios import SCENARIOS, TRANSPORTS, ScenarioResult, Setup
from transports import open_transport
from transports.brokers import ApacheKafkaCluster, free_tcp_port, make_broker

log = logging.getLogger("harness.chaos")

#: Small HWM and kernel buffers for the stall, so the HWM (not a multi-MB buffer) is what a
#: 3 s stall runs into; the other scenarios use the transport defaults users get.
STALL_ZMQ_OPTIONS = "&hwm=500&sndbuf=65536&rcvbuf=65536"
QUICK_PLAN = (("processor_kill", "kafka"), ("processor_kill", "zmq-pushpull"))


def plan(scenarios: Iterable[str], transports: Iterable[str] | None) -> list[tuple[str, str]]:
    wanted = set(transports) if transports else None
    return [(s, t) for s in scenarios for t in TRANSPORTS[s] if wanted is None or t in wanted]


def _setup(scenario: str, transport: str, workdir: Path, rate: float, messages: int) -> Setup:
    if transport in ("kafka", "kafka-cluster"):
        if transport == "kafka":
            broker = make_broker(port=free_tcp_port(), log_path=workdir / "logs" / "broker.log",
                                 folder=workdir / "broker")
            options = "partitions=1"
        else:
            broker = ApacheKafkaCluster(3, folder=workdir / "cluster")
            options = "partitions=1&replication=3"
        setup = Setup(transport, "", "", workdir, rate, messages, broker)
        broker.start()  # before the URL: a cluster's addresses exist once it runs
        url = f"kafka://{broker.bootstrap}?{options}"
        setup.producer_url = setup.processor_url = url
        with open_transport(url) as t:
            t.create_topics(["binance.trade"], 1)
        return setup
    pattern = transport.removeprefix("zmq-")
    extra = STALL_ZMQ_OPTIONS if scenario == "processor_stall" else ""
    url = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern={pattern}{extra}"
    producer_url = url + ("&wait_subscribers=1" if pattern == "pubsub" else "")
    return Setup(transport, producer_url, url, workdir, rate, messages)


def run_plan(
    runs: list[tuple[str, str]],
    out_dir: Path,
    *,
    rate: float,
    messages: int,
    on_result: Callable[[list[ScenarioResult]], None] | None = None,
) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    for scenario, transport in runs:
        workdir = out_dir / "runs" / f"{scenario}-{transport}"
        shutil.rmtree(workdir, ignore_errors=True)
        (workdir / "logs").mkdir(parents=True)
        log.info("chaos: %s on %s", scenario, transport)
        setup: Setup | None = None
        started = time.monotonic()
        try:
            setup = _setup(scenario, transport, workdir, rate, messages)
            result = SCENARIOS[scenario](setup)
        except Exception as exc:  # one broken run must not cost the others their results
            log.exception("chaos: %s on %s failed", scenario, transport)
            result = ScenarioResult(scenario, transport, "", status="error",
                                    note=f"{type(exc).__name__}: {exc}")
        finally:
            if setup is not None and setup.broker is not None:
                result_broker = setup.broker.identity
                setup.broker.stop()
            else:
                result_broker = ""
        result.broker = result_broker
        result.seconds = round(time.monotonic() - started, 2)
        results.append(result)
        if on_result:
            on_result(results)
    return results
