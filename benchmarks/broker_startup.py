"""Start-up time of the embedded Apache Kafka broker and of the 3-broker cluster.

    python benchmarks/broker_startup.py [--runs 3]

"Ready" is what the harness waits for before using a broker: a record produced with acks=all
was acknowledged (for the cluster: replicated on all three nodes). Each run formats a new
temporary folder, as a fresh ``kafka://`` does; stop is SIGTERM (controlled shutdown).
"""

from __future__ import annotations

import argparse
import statistics
import time

from transports.brokers import ApacheKafkaBroker, ApacheKafkaCluster, Broker


def measure(make: type[ApacheKafkaBroker] | type[ApacheKafkaCluster], runs: int) -> None:
    ready, stop = [], []
    for _ in range(runs):
        broker: Broker = make()
        started = time.monotonic()
        broker.start()
        ready.append(time.monotonic() - started)
        started = time.monotonic()
        broker.stop()
        stop.append(time.monotonic() - started)
    name = "one broker" if make is ApacheKafkaBroker else "3-broker cluster"
    print(f"{name}: ready in {', '.join(f'{r:.1f}' for r in ready)} s "
          f"(median {statistics.median(ready):.1f}); stop {statistics.median(stop):.1f} s",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    measure(ApacheKafkaBroker, args.runs)
    measure(ApacheKafkaCluster, args.runs)


if __name__ == "__main__":
    main()
