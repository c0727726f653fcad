"""The brokers the harness starts: Apache Kafka (log on disk, ready = a produce was acked), the
Tansu fallback, which engine a machine gets, and the jar cache (fetched once, under a lock)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import UserError
from transports import open_transport, replayable
from transports.base import TransportError
from transports.brokers import (
    ENGINE_ENV,
    REQUIRE_APACHE_ENV,
    ApacheKafkaBroker,
    BrokerUnavailableError,
    TansuBroker,
    cds,
    choose_engine,
    kafka_api_versions,
    make_broker,
    port_is_free,
)
from transports.brokers.apache import READY_TOPIC, read_properties, shared_settings
from transports.brokers.jars import kafka_jars, pinned_version
from transports.brokers.java import find_java
from transports.brokers.registry import lookup

pytestmark = pytest.mark.kafka


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without Java: JAVA_HOME names an empty folder (it wins over PATH)."""
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    monkeypatch.delenv(REQUIRE_APACHE_ENV, raising=False)
    monkeypatch.delenv(ENGINE_ENV, raising=False)


# -- Apache Kafka ----------------------------------------------------------------------------


def test_apache_broker_is_ready_to_produce_keeps_its_log_on_disk_and_stops_cleanly(
    tmp_path: Path,
):
    folder = tmp_path / "kafka"
    with ApacheKafkaBroker(folder=folder) as broker:
        assert broker.running and broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert broker.identity.startswith(f"Apache Kafka {pinned_version()} (embedded, KRaft")
        assert lookup(broker.bootstrap) == broker.identity  # other processes learn the engine
        assert kafka_api_versions(broker.host, broker.port) > 40
        # ready already meant an acknowledged produce: the readiness record is in the log
        with open_transport(broker.url) as t:
            sub = replayable(t).subscriber([READY_TOPIC])
            ends = sub.end_positions()
            sub.close()
        assert ends == {(READY_TOPIC, 0): 1}
        config = read_properties(folder / "server.properties")
        assert {k: config[k] for k in shared_settings(1)} == shared_settings(1)
        assert config["log.dirs"] == str(folder / "data")
        pid = broker.pid
        with socket.create_connection((broker.host, broker.port)):
            broker.stop()  # a connected client does not hold the shutdown up
    assert pid is not None and not broker.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # no orphan JVM
    assert port_is_free(broker.host, broker.port) and lookup(broker.bootstrap) is None
    assert (folder / "data" / "meta.properties").is_file()  # a given folder is kept
    assert "Transition from STARTING to STARTED" in (folder / "broker.log").read_text()
    # a clean stop leaves the class-data archive that makes every later start faster
    assert cds.archive_path(find_java(), kafka_jars()).is_file()
    broker.stop()  # twice is fine


def test_apache_chosen_port_that_is_taken_is_a_clear_error(free_tcp_port: int, tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_tcp_port))
        holder.listen()
        with pytest.raises(TransportError, match=f"127.0.0.1:{free_tcp_port} is already in use"):
            ApacheKafkaBroker(port=free_tcp_port, folder=tmp_path / "k").start()


# -- Tansu, the fallback ---------------------------------------------------------------------


def test_tansu_starts_answers_kafka_names_itself_and_stops(free_tcp_port: int, tmp_path: Path):
    log = tmp_path / "logs" / "tansu.log"
    with TansuBroker(port=free_tcp_port, log_path=log) as broker:
        assert broker.identity.startswith("tansu ") and "memory storage" in broker.identity
        assert kafka_api_versions("127.0.0.1", free_tcp_port) > 10
        with socket.create_connection((broker.host, broker.port)):
            broker.stop(timeout=3)  # SIGINT: Tansu would wait for clients on SIGTERM
    assert port_is_free(broker.host, broker.port)
    assert "listening on" in log.read_text()


def test_missing_tansu_binary_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(BrokerUnavailableError, match="binary not found") as info:
        TansuBroker().start()
    assert isinstance(info.value, UserError) and isinstance(info.value, TransportError)


# -- which engine ----------------------------------------------------------------------------


def test_without_java_auto_falls_back_to_tansu_with_one_warning(
    no_java: None, caplog: pytest.LogCaptureFixture, unique_topic: str
):
    with pytest.raises(BrokerUnavailableError, match="no Java at JAVA_HOME="):
        find_java()
    with caplog.at_level(logging.WARNING, logger="transports.brokers"):
        assert choose_engine("auto") == "tansu"
        assert choose_engine(None) == "tansu"  # said once per process, not per broker
    warned = [r.getMessage() for r in caplog.records if r.name == "transports.brokers"]
    assert len(warned) <= 1  # 0 when an earlier test in this process already said it
    with open_transport("kafka://?partitions=1") as t:  # the user's URL: it still runs
        assert " @ tansu " in t.identity
        sub = t.subscriber([unique_topic])
        with t.publisher() as pub:
            pub.publish(unique_topic, b"on tansu")
        got = []
        while not got:
            got = sub.poll(10, 0.5)
        sub.close()
    assert [e.value for e in got] == [b"on tansu"]


def test_without_java_forcing_apache_or_requiring_it_is_an_error(
    no_java: None, monkeypatch: pytest.MonkeyPatch
):
    with pytest.raises(BrokerUnavailableError, match="cannot run Apache Kafka: Java >= 17"):
        choose_engine("apache")
    with pytest.raises(TransportError, match="cannot run Apache Kafka"):
        open_transport("kafka://?engine=apache")
    monkeypatch.setenv(REQUIRE_APACHE_ENV, "1")
    with pytest.raises(BrokerUnavailableError, match=f"{REQUIRE_APACHE_ENV} is set, no fallback"):
        make_broker()
    assert choose_engine("tansu") == "tansu"  # asking for Tansu by name is always allowed


def test_engine_comes_from_the_url_then_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(REQUIRE_APACHE_ENV, raising=False)
    monkeypatch.setenv(ENGINE_ENV, "tansu")
    assert choose_engine("auto") == "tansu"
    assert isinstance(make_broker(), TansuBroker)
    assert isinstance(make_broker("apache"), ApacheKafkaBroker)  # the URL's word wins
    monkeypatch.setenv(ENGINE_ENV, "zookeeper")
    with pytest.raises(BrokerUnavailableError, match="unknown Kafka engine 'zookeeper'"):
        choose_engine(None)


def test_a_cluster_needs_apache_kafka():
    with pytest.raises(BrokerUnavailableError, match="needs Apache Kafka"):
        make_broker("tansu", brokers=3)


# -- the jar cache ---------------------------------------------------------------------------

FAKE_MVN = textwrap.dedent("""\
    #!/bin/sh
    # Stands in for Maven Central (unreachable from a test): "resolves" after a pause
    for arg in "$@"; do
      case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac
    done
    echo "run" >> "$FAKE_MVN_RUNS"
    sleep 1
    mkdir -p "$out"
    for jar in kafka_2.13-VERSION.jar kafka-clients-VERSION.jar; do echo x > "$out/$jar"; done
    """)


def test_jar_cache_is_filled_once_under_a_lock_by_concurrent_first_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN.replace("VERSION", pinned_version()))
    mvn.chmod(0o755)
    runs = tmp_path / "runs.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "HARNESS_KAFKA_CACHE": str(tmp_path / "cache"), "FAKE_MVN_RUNS": str(runs)}
    env.pop("KAFKA_HOME", None)
    code = "from transports.brokers.jars import kafka_jars; print(kafka_jars().libs)"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert runs.read_text().count("run") == 1  # one fetch; the other waited and reused it
    (printed,) = {out.strip() for out, _ in outputs}  # both run from the same folder
    libs = Path(printed)
    assert libs.is_relative_to(tmp_path / "cache") and libs.name == "libs"
    assert sorted(p.name for p in libs.iterdir())[0].startswith("kafka")
    progress = "".join(err for _, err in outputs)
    assert progress.count("harness: fetching Apache Kafka") == 1 and "jars ready" in progress
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.stdout.strip() == str(libs) and again.stderr == ""  # the cache, silently
    assert runs.read_text().count("run") == 1


def test_missing_maven_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_KAFKA_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    with pytest.raises(BrokerUnavailableError, match=r"Maven \(mvn\) is not installed") as info:
        kafka_jars()
    assert "\n" not in str(info.value)


def test_kafka_home_install_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    libs = tmp_path / "kafka_2.13-4.1.0" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.0.jar").write_text("x")
    monkeypatch.setenv("KAFKA_HOME", str(libs.parent))
    found = kafka_jars()
    assert (found.libs, found.version) == (libs, "4.1.0")
    (libs / "kafka_2.13-4.1.0.jar").rename(libs / "kafka_2.13-3.9.1.jar")
    with pytest.raises(BrokerUnavailableError, match=r"needs Kafka 4\.x"):
        kafka_jars()
