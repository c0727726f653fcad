"""A local Apache Kafka cluster: three KRaft nodes (each broker and controller, each its own JVM
with a small heap) on 127.0.0.1, replication factor 3 and min.insync.replicas 2
(``config/cluster.properties``), so acks=all survives the loss of any one broker.

Used by ``harness broker --brokers 3``, the failover chaos scenario and its test: ``leader_of``
names the node leading a partition, ``kill`` SIGKILLs one (no shutdown, as a crash), ``revive``
starts it again on its own log.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from transports.brokers.apache import (
    ENGINE,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    KafkaNode,
    describe,
    format_nodes,
    new_cluster_id,
    shared_settings,
    wait_writable,
)
from transports.brokers.jars import kafka_jars
from transports.brokers.java import JavaRuntime, find_java
from transports.brokers.process import (
    BrokerHandle,
    BrokerProcess,
    BrokerStartError,
    free_tcp_port,
    stop_all,
)
from transports.brokers.registry import announce, withdraw

log = logging.getLogger("transports.brokers.cluster")

#: Heap of each node: three JVMs share the machine with the clients under test.
CLUSTER_HEAP = "384m"


class ApacheKafkaCluster(BrokerHandle):
    """``brokers`` Apache Kafka nodes forming one KRaft quorum; ``folder`` as for one broker."""

    engine = ENGINE

    def __init__(self, brokers: int = 3, host: str = "127.0.0.1", folder: Path | None = None,
                 heap: str = CLUSTER_HEAP) -> None:
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        self.brokers = brokers
        self.host = host
        self.folder = folder
        self._own_folder = False
        self.heap = heap
        self.nodes: list[KafkaNode] = []
        self.version = ""
        self.identity = f"Apache Kafka ({brokers} brokers)"
        self.cluster_id = ""
        self.started_s = float("nan")
        self._java: JavaRuntime | None = None

    @property
    def label(self) -> str:
        return f"Apache Kafka {self.version} x{self.brokers}".strip()

    @property
    def bootstrap(self) -> str:
        if not self.nodes:
            raise BrokerStartError("the cluster has no addresses before start()")
        return ",".join(n.bootstrap for n in self.nodes)

    def _processes(self) -> list[BrokerProcess]:
        return [n.process for n in self.nodes]

    def node(self, node_id: int) -> KafkaNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} in this cluster")

    def start(self, timeout: float = START_TIMEOUT_S) -> ApacheKafkaCluster:
        """Format, start every JVM, wait until a record replicated on all nodes is acked."""
        if self.running:
            return self
        started = time.monotonic()
        deadline = started + timeout * max(1.0, self.brokers / 2)
        java = self._java = find_java()
        jars = kafka_jars()
        self.version, self.identity = jars.version, describe(jars, java, self.brokers)
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="apache-kafka-cluster-"))
            self._own_folder = True
        if not self.nodes:
            self.nodes = [
                KafkaNode(i, self.folder / f"node-{i}", self.host, free_tcp_port(self.host),
                          free_tcp_port(self.host), self.heap)
                for i in range(1, self.brokers + 1)
            ]
        voters = ",".join(n.voter for n in self.nodes)
        settings = shared_settings(self.brokers)
        try:
            for n in self.nodes:
                n.write_config(voters, settings)
            self.cluster_id = self.cluster_id or new_cluster_id()
            format_nodes(self.nodes, java, jars, self.cluster_id)
            for n in self.nodes:
                if not n.process.running:
                    n.spawn(java, jars)
            for n in self.nodes:
                n.wait_listening(deadline)
            wait_writable(self.bootstrap, self.brokers, deadline, self._check_alive)
        except BrokerStartError:
            self.stop()
            raise
        self.started_s = time.monotonic() - started
        log.info("%s on %s (ready in %.1f s)", self.identity, self.bootstrap, self.started_s)
        announce(self.bootstrap, self.identity, self.pids)
        return self

    def _check_alive(self) -> None:
        for n in self.nodes:
            code = n.process.exit_code()
            if code is not None:
                raise BrokerStartError(
                    f"Apache Kafka node {n.node_id} exited with code {code}: "
                    f"{n.process.log_tail()}")

    def leader_of(self, topic: str, partition: int = 0, timeout: float = 10.0,
                  exclude: int | None = None) -> int:
        """The node id leading ``topic[partition]`` now (from a fresh metadata request); with
        ``exclude``, wait for a leader other than that node (after killing it)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "client.id": "harness-admin"})
        deadline = time.monotonic() + timeout
        while True:
            try:
                meta = admin.list_topics(topic, timeout=2.0)
                part = meta.topics[topic].partitions.get(partition)
                if part is not None and part.leader >= 0 and part.leader != exclude:
                    return int(part.leader)
            except (KafkaException, KeyError):
                pass
            if time.monotonic() > deadline:
                raise BrokerStartError(f"no leader for {topic}[{partition}] on {self.bootstrap}")
            time.sleep(0.1)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no controlled shutdown, its log stays on disk."""
        self.node(node_id).process.kill()

    def revive(self, node_id: int, timeout: float = START_TIMEOUT_S) -> float:
        """Start a killed node again on its own log; seconds until it answers requests."""
        assert self._java is not None, "revive() before start()"
        node = self.node(node_id)
        started = time.monotonic()
        node.spawn(self._java, kafka_jars())
        node.wait_listening(started + timeout)
        announce(self.bootstrap, self.identity, self.pids)
        return time.monotonic() - started

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every node (SIGTERM, then SIGKILL; SIGKILL at once when the folder is a temporary
        one, removed here with everything in it)."""
        if self.nodes:
            withdraw(self.bootstrap)
        if self._own_folder:  # the logs are about to be deleted: nothing to shut down for
            for n in self.nodes:
                n.process.kill()
        else:  # a kept folder: controlled shutdown of every node at once
            stop_all([n.process for n in self.nodes], timeout)
        if self._own_folder and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder, self._own_folder = None, False
            self.nodes = []
