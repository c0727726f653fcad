"""Two small Kafka measurements behind the README's settings table, on an embedded broker.

    python benchmarks/kafka_probes.py join [--engine apache|tansu]
        seconds from subscribing with a consumer group to its first record, per session timeout
    python benchmarks/kafka_probes.py fetch-wait [--engine apache|tansu]
        publish->receive latency at ~100 msg/s with fetch_max_wait_ms 5 and 500

Both clients each; one record at a time, so what is measured is the broker's and the client's
reaction, not throughput. Figures move a lot on a busy machine: compare rows of one run.
"""

from __future__ import annotations

import argparse
import time
import uuid

from transports import open_transport
from transports.brokers import Broker, make_broker

CLIENTS = ("kafka", "kafka+confluent")


def join(broker: Broker) -> None:
    for scheme in CLIENTS:
        for session in (6000, 45000):
            url = f"{scheme}://{broker.bootstrap}?session_timeout_ms={session}&partitions=4"
            with open_transport(url) as t:
                topic = f"join-{uuid.uuid4().hex[:8]}"
                with t.publisher() as pub:
                    pub.publish(topic, b"x")
                started = time.monotonic()
                sub = t.subscriber([topic], group=f"g-{topic}")
                got = []
                while not got and time.monotonic() - started < 60:
                    got = sub.poll(10, 0.05)
                print(f"{broker.label} {scheme} session {session} ms: first record after "
                      f"{time.monotonic() - started:.2f} s", flush=True)
                sub.close()


def fetch_wait(broker: Broker, messages: int = 200) -> None:
    for wait in (5, 500):
        for scheme in CLIENTS:
            url = f"{scheme}://{broker.bootstrap}?partitions=1&fetch_max_wait_ms={wait}"
            with open_transport(url) as t:
                topic = f"fw-{uuid.uuid4().hex[:8]}"
                t.create_topics([topic])
                sub = t.subscriber([topic])
                lat: list[float] = []
                with t.publisher() as pub:
                    for _ in range(messages):
                        pub.publish(topic, b"x")
                        until = time.monotonic() + 0.01
                        while time.monotonic() < until:
                            lat += [(e.receive_time_ns - e.publish_time_ns) / 1e6
                                    for e in sub.poll(100, 0.002)]
                deadline = time.monotonic() + 5
                while len(lat) < messages and time.monotonic() < deadline:
                    lat += [(e.receive_time_ns - e.publish_time_ns) / 1e6
                            for e in sub.poll(100, 0.05)]
                sub.close()
            lat.sort()
            print(f"{broker.label} {scheme} fetch_max_wait_ms={wait}: p50 "
                  f"{lat[len(lat) // 2]:.1f} ms, p99 {lat[int(len(lat) * 0.99)]:.1f} ms "
                  f"({len(lat)} of {messages})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("probe", choices=("join", "fetch-wait"))
    parser.add_argument("--engine", default="apache", choices=("apache", "tansu"))
    args = parser.parse_args()
    with make_broker(args.engine) as broker:
        (join if args.probe == "join" else fetch_wait)(broker)


if __name__ == "__main__":
    main()
