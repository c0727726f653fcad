"""Apache Kafka, embedded: one KRaft node (broker and controller in one JVM) with its log on disk.

The jars come from ``jars.py`` (a user cache filled once by Maven, or ``KAFKA_HOME``), the
settings from ``config/server.properties`` (the file compose mounts too) plus this node's
addresses. A new folder is formatted (``kafka-storage format``: cluster id, node id) before the
first start; a restart of the same folder keeps its log, offsets and committed positions, as a
real broker's restart does.

"Ready" means a record was produced with ``acks=all`` and acknowledged: the broker registered
with the controller, was unfenced, and leads a partition. An open port alone is not enough.
"""

from __future__ import annotations

import base64
import concurrent.futures
import logging
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from transports.brokers import cds
from transports.brokers.jars import KafkaJars, kafka_jars
from transports.brokers.java import JavaRuntime, find_java
from transports.brokers.process import (
    BrokerHandle,
    BrokerProcess,
    BrokerStartError,
    free_tcp_port,
    port_is_free,
    wait_answering,
)
from transports.brokers.registry import announce, withdraw

log = logging.getLogger("transports.brokers.apache")

ENGINE = "apache-kafka"
CONFIG_DIR = Path(__file__).with_name("config")
LOG4J_CONFIG = Path(__file__).with_name("log4j2.xml")
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
#: Heap of one broker JVM; a local broker with a few topics lives well within it.
DEFAULT_HEAP = "512m"
#: The topic readiness writes one record to (created by the harness, one partition).
READY_TOPIC = "harness.ready"
#: Kafka's own start script's JVM flags (kafka-run-class.sh), so the broker runs as it would.
JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
             "-Djava.awt.headless=true", "-XX:+ExitOnOutOfMemoryError")
#: The storage tool runs for a second: compile less, collect simply, start sooner.
TOOL_FLAGS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
_rdkafka_log = logging.getLogger("transports.brokers.apache.probe")


def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not a key=value line: {raw!r}")
        out[key.strip()] = value.strip()
    return out


def shared_settings(brokers: int = 1) -> dict[str, str]:
    """``server.properties``, plus ``cluster.properties`` for three brokers or more."""
    settings = read_properties(CONFIG_DIR / "server.properties")
    if brokers >= 3:
        settings.update(read_properties(CONFIG_DIR / "cluster.properties"))
    return settings


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as Kafka's Uuid)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class KafkaNode:
    """One Apache Kafka JVM in KRaft combined mode, in ``folder`` (config, data, log)."""

    def __init__(self, node_id: int, folder: Path, host: str, port: int, controller_port: int,
                 heap: str, log_path: Path | None = None) -> None:
        self.node_id = node_id
        self.folder = folder
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.log_path = log_path or folder / "broker.log"
        self.process = BrokerProcess(f"Apache Kafka node {node_id}", self.log_path,
                                     signal.SIGTERM)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def config_path(self) -> Path:
        return self.folder / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def voter(self) -> str:
        return f"{self.node_id}@{self.host}:{self.controller_port}"

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def write_config(self, voters: str, shared: Mapping[str, str]) -> None:
        own = {
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},"
                         f"CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "log.dirs": str(self.data_dir),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [f"# written by the harness: {CONFIG_DIR / 'server.properties'} + addresses"]
        lines += [f"{k}={v}" for k, v in {**shared, **own}.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def format(self, java: JavaRuntime, jars: KafkaJars, cluster_id: str) -> None:
        """``kafka-storage format`` of a new data folder (its output goes to the node's log)."""
        argv = [java.path, *TOOL_FLAGS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-Dharness.kafka.loglevel=WARN", "-cp", jars.classpath,
                "kafka.tools.StorageTool", "format", "-t", cluster_id,
                "-c", str(self.config_path)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"$ kafka-storage format -t {cluster_id} -c {self.config_path}\n".encode())
            out.flush()
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=120, check=False)
        if done.returncode != 0 or not self.formatted:
            raise BrokerStartError(
                f"kafka-storage format of {self.data_dir} failed (exit {done.returncode}): "
                f"{self.process.log_tail()}")

    def spawn(self, java: JavaRuntime, jars: KafkaJars) -> None:
        sharing, pending = cds.jvm_flags(java, jars)
        argv = [java.path, f"-Xms{self.heap}", f"-Xmx{self.heap}", *JVM_FLAGS, *sharing,
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.folder}",
                "-cp", jars.classpath, "kafka.Kafka", str(self.config_path)]
        self.process.spawn(argv)
        if pending is not None:
            self.process.on_stopped = lambda: cds.keep(pending, java, jars)

    def wait_listening(self, deadline: float) -> None:
        """Until the client port answers ApiVersions (Kafka opens it once unfenced)."""
        wait_answering(self.process, self.host, self.port, deadline)


def format_nodes(nodes: list[KafkaNode], java: JavaRuntime, jars: KafkaJars,
                 cluster_id: str) -> None:
    """Format every node that has no data yet, in parallel (each is a short JVM run)."""
    todo = [n for n in nodes if not n.formatted]
    if not todo:
        return
    with concurrent.futures.ThreadPoolExecutor(len(todo)) as pool:
        for future in [pool.submit(n.format, java, jars, cluster_id) for n in todo]:
            future.result()


def wait_writable(bootstrap: str, brokers: int, deadline: float,
                  check_alive: Callable[[], None]) -> None:
    """Until ``brokers`` brokers are registered and a record to ``READY_TOPIC`` (replicated on
    all of them, up to 3) is acknowledged with acks=all."""
    from confluent_kafka import KafkaError, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    common = {"bootstrap.servers": bootstrap, "client.id": "harness-ready",
              "logger": _rdkafka_log}
    admin = AdminClient(common)
    last = "no answer yet"
    while time.monotonic() < deadline:
        check_alive()
        try:
            meta = admin.list_topics(timeout=2.0)
            if len(meta.brokers) < brokers:
                last = f"{len(meta.brokers)} of {brokers} brokers registered"
                time.sleep(0.2)
                continue
            if READY_TOPIC not in meta.topics:
                futures = admin.create_topics(
                    [NewTopic(READY_TOPIC, 1, min(brokers, 3))], request_timeout=10.0)
                try:
                    futures[READY_TOPIC].result(10.0)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
            break
        except KafkaException as exc:
            last = str(exc)
            time.sleep(0.2)
    else:
        raise BrokerStartError(f"Apache Kafka on {bootstrap} not ready in time: {last}")
    left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
    producer = Producer({**common, "acks": "all", "linger.ms": 0, "message.timeout.ms": left_ms})
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err.str())

    producer.produce(READY_TOPIC, b"ready", on_delivery=delivered)
    while len(producer) and time.monotonic() < deadline:
        check_alive()
        producer.poll(0.1)
    left = producer.flush(0)
    if left or errors:
        raise BrokerStartError(
            f"Apache Kafka on {bootstrap} did not acknowledge a produce in time: "
            f"{errors[0] if errors else 'still queued'}")


def describe(jars: KafkaJars, java: JavaRuntime, brokers: int) -> str:
    """The identity results carry: engine, version, topology, storage, Java."""
    topology = "1 broker" if brokers == 1 else f"{brokers} brokers, RF {min(brokers, 3)}"
    return f"Apache Kafka {jars.version} (embedded, KRaft, {topology}, log on disk; {java.version})"


class ApacheKafkaBroker(BrokerHandle):
    """One embedded Apache Kafka node; ``folder`` holds its config and log (a temporary folder,
    removed by ``stop()``, unless one is given: then it is kept, and a restart reuses its log).
    """

    engine = ENGINE
    brokers = 1

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_path: Path | None = None, folder: Path | None = None,
                 heap: str = DEFAULT_HEAP) -> None:
        self.host = host
        self.port = port
        self._requested_port = port
        self._controller_port: int | None = None
        self.log_path = log_path
        self.folder = folder
        self._own_folder = False
        self.heap = heap
        self.node: KafkaNode | None = None
        self.version = ""
        self.identity = "Apache Kafka (embedded)"
        self.cluster_id = ""
        self.started_s = float("nan")

    @property
    def label(self) -> str:
        return f"Apache Kafka {self.version}".strip()

    def _processes(self) -> list[BrokerProcess]:
        return [self.node.process] if self.node is not None else []

    def start(self, timeout: float = START_TIMEOUT_S) -> ApacheKafkaBroker:
        """Format (new folder), start the JVM, wait until a produce is acknowledged."""
        if self.running:
            return self
        started = time.monotonic()
        deadline = started + timeout
        java, jars = find_java(), kafka_jars()
        self.version, self.identity = jars.version, describe(jars, java, 1)
        if self.folder is None:
            self.folder, self._own_folder = Path(tempfile.mkdtemp(prefix="apache-kafka-")), True
        last: BrokerStartError | None = None
        for attempt in range(3):
            node = self._make_node()
            fresh = not node.formatted
            try:
                node.write_config(node.voter, shared_settings(1))
                if fresh:
                    self.cluster_id = new_cluster_id()
                    node.format(java, jars, self.cluster_id)
                node.spawn(java, jars)
                self.node = node
                node.wait_listening(deadline)
                wait_writable(self.bootstrap, 1, deadline, self._check_alive)
                self.started_s = time.monotonic() - started
                log.info("%s listening on %s (ready in %.1f s)", self.identity, self.bootstrap,
                         self.started_s)
                announce(self.bootstrap, self.identity, self.pids)
                return self
            except BrokerStartError as exc:
                last = exc
                node.process.stop(5.0)
                self.node = None
                # a new broker whose ports were taken meanwhile: new ports, new cluster
                if not (fresh and self._requested_port is None and attempt < 2
                        and time.monotonic() < deadline):
                    break
                shutil.rmtree(node.data_dir, ignore_errors=True)
                self.port = self._controller_port = None
        assert last is not None
        self.stop()
        raise last

    def _make_node(self) -> KafkaNode:
        assert self.folder is not None
        if self.port is None:
            self.port = free_tcp_port(self.host)
        elif self.node is None and self._requested_port is not None and not port_is_free(
                self.host, self.port):
            raise BrokerStartError(
                f"cannot start the embedded Kafka broker: {self.host}:{self.port} is already in "
                "use (pick another --port or stop what holds it)")
        if self._controller_port is None:
            self._controller_port = free_tcp_port(self.host)
        return KafkaNode(1, self.folder, self.host, self.port, self._controller_port, self.heap,
                         self.log_path)

    def _check_alive(self) -> None:
        if self.node is None or self.node.process.exit_code() is not None:
            tail = self.node.process.log_tail() if self.node else ""
            raise BrokerStartError(f"Apache Kafka on {self.bootstrap} exited while starting: "
                                   f"{tail}")

    def restart(self, timeout: float = START_TIMEOUT_S) -> ApacheKafkaBroker:
        """Stop the JVM cleanly and start it again on the same folder and ports (log kept)."""
        if self.node is not None:
            self.node.process.stop(STOP_TIMEOUT_S)
            self.node = None
        return self.start(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash; the log on disk stays, ``start()`` recovers it."""
        if self.node is not None:
            self.node.process.kill()
            self.node = None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL; removes a temporary folder."""
        if self.port is not None:
            withdraw(self.bootstrap)
        if self.node is not None:
            self.node.process.stop(timeout)
            self.node = None
        if self._own_folder and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder, self._own_folder = None, False
            self._controller_port = None
