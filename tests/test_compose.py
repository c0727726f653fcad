"""The compose files, checked without Docker: parsed, validated against the real CLI, then run.

Static checks go through ``compose_check`` (the real ``harness`` argparse parser and each
command's ``Setting`` declarations, so a renamed flag or environment variable fails here). The
run test starts every application service's command as a local process, host names mapped to
127.0.0.1 and ports to free ones, and reads the HDF5 files the processors wrote.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Any

import h5py
import pytest
from compose_check import (
    ComposeError,
    Project,
    check_compose_version,
    effective_values,
    healthcheck_argv,
    interpolate,
    is_harness_service,
    is_long_running,
    load_project,
    local_endpoints,
    problems,
    run_healthcheck_locally,
    run_locally,
    start_locally,
)

from harness.cli import build_parser
from producers.binance.topics import TOPIC_BY_EVENT, event_for_stream_type
from transports.brokers import free_tcp_port, make_broker
from transports.brokers.apache import CONFIG_DIR, read_properties, shared_settings
from transports.brokers.jars import pinned_version

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose"
PROJECTS = {
    "zmq": (COMPOSE / "zmq.yml",),
    "kafka": (COMPOSE / "kafka.yml",),
    "kafka-cluster": (COMPOSE / "kafka.yml", COMPOSE / "kafka-cluster.yml"),
}
APP_SERVICES = ("binance-producer", "twitter-producer", "candles-processor", "sentiment-processor")
#: No .env of a developer's machine leaks into what the tests see.
CLEAN_ENV: dict[str, str] = {}


def project(key: str, **env: str) -> Project:
    return load_project(*PROJECTS[key], env={**CLEAN_ENV, **env})


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


# ------------------------------------------------------------------------- static checks


@pytest.mark.parametrize("key", sorted(PROJECTS))
def test_compose_project_has_no_problems(key: str, parser: argparse.ArgumentParser) -> None:
    """Images/builds, commands vs the real parser, HARNESS_* vs settings, volumes, env files,
    depends_on targets and conditions, acyclic start order."""
    assert problems(project(key), parser) == []


@pytest.mark.parametrize("key", sorted(PROJECTS))
def test_every_application_service_is_present_and_uses_the_one_image(key: str) -> None:
    services = project(key).services
    for name in (*APP_SERVICES, "bench"):
        assert is_harness_service(services[name]), name
        assert "container_name" not in services[name], f"{name} could not be scaled"
    images = {services[n]["image"] for n in (*APP_SERVICES, "bench")}
    assert len(images) == 1
    # Jupyter: the same Dockerfile, one stage further (the app image plus JupyterLab).
    assert services["jupyter"]["build"]["target"] == "jupyter"
    assert {services[n]["build"]["context"] for n in (*APP_SERVICES, "bench", "jupyter")} == {".."}
    assert {tuple(services[n]["profiles"]) for n in ("bench", "jupyter")} == {("bench",),
                                                                             ("jupyter",)}
    assert all("profiles" not in services[n] for n in APP_SERVICES)


def test_only_the_transport_differs_between_kafka_and_zmq() -> None:
    kafka, zmq = project("kafka").services, project("zmq").services
    ignored = {"depends_on", "expose"}
    for name in (*APP_SERVICES, "bench", "jupyter"):
        a = {k: v for k, v in kafka[name].items() if k not in ignored}
        b = {k: v for k, v in zmq[name].items() if k not in ignored}
        env_a, env_b = a.pop("environment", {}) or {}, b.pop("environment", {}) or {}
        assert a == b, name
        transport_keys = {"HARNESS_TRANSPORT", "HARNESS_KAFKA_BOOTSTRAP"}
        assert {k: v for k, v in env_a.items() if k not in transport_keys} == \
            {k: v for k, v in env_b.items() if k not in transport_keys}, name
    assert kafka["candles-processor"]["environment"]["HARNESS_TRANSPORT"].startswith("kafka://")
    assert zmq["candles-processor"]["environment"]["HARNESS_TRANSPORT"].startswith("zmq+tcp://")


def test_zeromq_links_pair_one_binding_producer_with_its_processor() -> None:
    env = {n: s["environment"]["HARNESS_TRANSPORT"] for n, s in project("zmq").services.items()
           if n in APP_SERVICES}
    assert env["binance-producer"].startswith("zmq+tcp://0.0.0.0:5555?")
    assert env["candles-processor"].startswith("zmq+tcp://binance-producer:5555?")
    assert env["twitter-producer"].startswith("zmq+tcp://0.0.0.0:5556?")
    assert env["sentiment-processor"].startswith("zmq+tcp://twitter-producer:5556?")
    for url in env.values():  # PUSH/PULL, producer binds: --scale load-balances processors
        assert "pattern=pushpull" in url and "bind=publisher" in url
    assert "kafka" not in project("zmq").services


def test_source_defaults_to_live_with_one_variable_fallback(
        parser: argparse.ArgumentParser) -> None:
    def sources(**env: str) -> dict[str, str]:
        out = {}
        for name in ("binance-producer", "twitter-producer"):
            service = project("kafka", **env).services[name]
            out[name] = effective_values(parser, service["command"],
                                         service["environment"])["source"]
        return out

    assert set(sources().values()) == {"live"}
    assert set(sources(HARNESS_SOURCE="synthetic").values()) == {"synthetic"}
    assert set(sources(HARNESS_SOURCE="replay").values()) == {"replay"}
    assert sources(TWITTER_SOURCE="synthetic") == {"binance-producer": "live",
                                                   "twitter-producer": "synthetic"}


def test_kafka_broker_is_pinned_healthchecked_and_topics_cover_what_producers_publish() -> None:
    services = project("kafka").services
    broker = services["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", broker["image"])
    assert broker["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "kafka-broker-api-versions" in " ".join(broker["healthcheck"]["test"])
    topics_service = services["kafka-topics"]
    assert topics_service["restart"] == "no"
    created = set(topics_service["environment"]["TOPICS"].split())
    producer = services["binance-producer"]["command"]
    streams = producer[producer.index("--streams") + 1].split(",")
    published = {TOPIC_BY_EVENT[event_for_stream_type(s)] for s in streams}
    from producers.twitter.schema import TOPIC as TWITTER_TOPIC

    assert published | {TWITTER_TOPIC} <= created
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["kafka-topics"]["condition"] == "service_completed_successfully"
    assert int(topics_service["environment"]["PARTITIONS"]) == 4
    assert "partitions=4" in services["binance-producer"]["environment"]["HARNESS_TRANSPORT"]


#: Per-node settings compose sets itself (addresses, ids, heap); everything else comes from the
#: one properties source the embedded broker runs too.
NODE_SETTINGS = {"node.id", "process.roles", "controller.quorum.voters", "listeners",
                 "advertised.listeners", "log.dirs"}


def kafka_env_properties(env: dict[str, Any]) -> dict[str, str]:
    """The apache/kafka image's KAFKA_* -> property rule: _ is '.', __ is '_', ___ is '-'."""
    out = {}
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name in ("KAFKA_HEAP_OPTS", "KAFKA_OPTS"):
            continue
        key = name.removeprefix("KAFKA_").lower()
        key = key.replace("___", "\0").replace("__", "\1").replace("_", ".")
        out[key.replace("\0", "-").replace("\1", "_")] = str(value)
    return out


@pytest.mark.parametrize(("key", "brokers"), [("kafka", 1), ("kafka-cluster", 3)])
def test_compose_brokers_run_the_embedded_brokers_settings_and_version(
    key: str, brokers: int
) -> None:
    services = project(key).services
    nodes = [n for n in ("kafka", "kafka-2", "kafka-3") if n in services]
    assert len(nodes) == brokers
    source = str(CONFIG_DIR.relative_to(ROOT))
    for name in nodes:
        node = services[name]
        assert node["image"] == f"apache/kafka:{pinned_version()}"
        mounts = [str(v).split(":") for v in node["volumes"]]
        assert any(m[0].endswith(source) and m[1] == "/mnt/shared/config" for m in mounts), mounts
        props = kafka_env_properties(node["environment"])
        shared = shared_settings(brokers)
        assert set(props) - NODE_SETTINGS <= set(shared), set(props) - NODE_SETTINGS
        for prop, value in props.items():
            if prop in shared:
                assert shared[prop] == value, (name, prop)
        if brokers == 3:  # every cluster setting reaches the image (it takes one file)
            assert read_properties(CONFIG_DIR / "cluster.properties").items() <= props.items()
        assert props["process.roles"] == shared["process.roles"]


def test_cluster_override_runs_three_brokers_with_replication_factor_three() -> None:
    services = project("kafka-cluster").services
    brokers = [n for n, s in services.items() if str(s.get("image", "")).startswith(
        "apache/kafka:") and n != "kafka-topics"]
    assert sorted(brokers) == ["kafka", "kafka-2", "kafka-3"]
    assert len({services[b]["image"] for b in brokers} | {services["kafka-topics"]["image"]}) == 1
    ids = {services[b]["environment"]["KAFKA_NODE_ID"] for b in brokers}
    assert ids == {"1", "2", "3"}
    for b in brokers:
        env = services[b]["environment"]
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert services[b]["healthcheck"]
    assert services["kafka-topics"]["environment"]["REPLICATION"] == "3"
    for name in APP_SERVICES:
        url = services[name]["environment"]["HARNESS_TRANSPORT"]
        assert "replication=3" in url and url.count(":9092") == 3
        assert {"kafka", "kafka-2", "kafka-3"} <= set(services[name]["depends_on"])


def test_secrets_only_come_from_the_git_ignored_env_file() -> None:
    for path in COMPOSE.glob("*.yml"):
        assert "TWITTER_BEARER_TOKEN:" not in path.read_text(), path
    ignored = subprocess.run(["git", "check-ignore", "-q", "compose/.env"], cwd=ROOT)
    assert ignored.returncode == 0, "compose/.env must be git-ignored"
    example = (COMPOSE / ".env.example").read_text()
    assert re.search(r"^TWITTER_BEARER_TOKEN=$", example, re.M)
    for name in APP_SERVICES:
        env_files = project("kafka").services[name]["env_file"]
        assert env_files == [{"path": ".env", "required": False}]


def test_dockerfile_builds_one_non_root_harness_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim AS app$", text, re.M)
    assert "pip install --no-deps ." in text
    # the compiled envelope codec must be in the image, not silently the pure-Python fallback
    assert 'HARNESS_CODEC=c python -c "import transports.framing"' in text
    assert re.search(r"^USER harness$", text, re.M)
    assert 'ENTRYPOINT ["harness"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "compose/.env", ".venv", "output", "results"} <= set(ignored)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:  # every installed package is in the build context of the image
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in text, package
    assert (ROOT / pyproject["project"]["readme"]).is_file(), "COPY of the readme would fail"
    # `pip install .` is not editable: shipped workloads are passed to bench by path.
    assert "COPY benchmarks/workloads ./benchmarks/workloads" in text
    bench = project("zmq").services["bench"]["command"]
    assert bench[1] == "/app/benchmarks/workloads/default.yaml"
    assert (ROOT / "benchmarks" / "workloads" / "default.yaml").is_file()


def test_every_long_running_service_has_a_real_healthcheck(
        parser: argparse.ArgumentParser) -> None:
    """Brokers check the broker; application services (the ZeroMQ stack included) run
    `harness health` on the heartbeat file their own --heartbeat touches."""
    for key in PROJECTS:
        services = project(key).services
        for name, service in services.items():
            if is_long_running(service):
                assert service.get("healthcheck", {}).get("test"), (key, name)
        for name in APP_SERVICES:
            service = services[name]
            argv = healthcheck_argv(service)
            assert argv and argv[0] == "health", (key, name)
            args = parser.parse_args(argv)  # the real CLI parses it
            beat = effective_values(parser, service["command"],
                                    service.get("environment") or {})["heartbeat"]
            assert beat == args.heartbeat, (key, name)
        assert "urlopen" in " ".join(services["jupyter"]["healthcheck"]["test"])
        assert not is_long_running(services["bench"])  # a one-shot: no healthcheck needed
    zmq = project("zmq").services
    assert zmq["candles-processor"]["depends_on"]["binance-producer"]["condition"] == \
        "service_healthy"


def test_the_minimum_compose_version_is_stated_in_every_file_and_the_readme() -> None:
    """`env_file: {path, required}` needs Compose 2.24.0; v1 fails `config` with no hint."""
    for key in PROJECTS:
        assert check_compose_version(project(key)) == []
    for path in COMPOSE.glob("*.yml"):
        assert "Docker Compose 2.24.0 or later" in path.read_text(), path
    assert "Docker Compose 2.24.0 or later" in (ROOT / "README.md").read_text()


def test_harness_health_exit_codes(tmp_path: Path) -> None:
    beat = tmp_path / "beat"

    def health(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", "health", str(beat), *extra],
                              capture_output=True, text=True, timeout=60, check=False)

    missing = health()
    assert missing.returncode == 1 and "no heartbeat" in missing.stdout
    beat.touch()
    assert health("--max-age", "30").returncode == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    stale = health("--max-age", "60")
    assert stale.returncode == 1 and "stuck" in stale.stdout


@pytest.mark.slow
def test_healthchecks_pass_on_the_running_zeromq_stack(tmp_path: Path) -> None:
    """Every application service of compose/zmq.yml, run locally as compose would run it,
    keeps its heartbeat fresh, and its compose healthcheck command exits 0 against it; a
    service whose loop is frozen (SIGSTOP) goes stale."""
    proj = project("zmq", HARNESS_SOURCE="synthetic", BINANCE_SYNTHETIC_RATE="100")
    endpoints = local_endpoints(proj, {}, free_tcp_port)
    paths = {"/output": tmp_path, "/recordings": tmp_path / "recordings"}
    procs = {name: start_locally(proj, name, endpoints, paths, tmp_path,
                                 {"HARNESS_DURATION": "60"}) for name in APP_SERVICES}
    try:
        deadline = time.monotonic() + 60
        pending = set(APP_SERVICES)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                assert procs[name].poll() is None, (tmp_path / f"{name}.log").read_text()
                if (tmp_path / f"{name}.tmp" / "core.heartbeat").exists():
                    pending.discard(name)
            time.sleep(0.5)
        assert not pending, f"no heartbeat from {pending}"
        for name in APP_SERVICES:
            done = run_healthcheck_locally(proj, name, paths, tmp_path)
            assert done.returncode == 0, (name, done.stdout, done.stderr)
            assert done.stdout.startswith("healthy"), done.stdout
        # a frozen loop: its heartbeat stops; with a short limit the check fails
        frozen = procs["candles-processor"]
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            time.sleep(3.0)
            beat = tmp_path / "candles-processor.tmp" / "core.heartbeat"
            stale = subprocess.run([sys.executable, "-m", "harness.cli", "health", str(beat),
                                    "--max-age", "2"], capture_output=True, text=True,
                                   timeout=60, check=False)
            assert stale.returncode == 1, stale.stdout
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------ the validator itself


def test_interpolation_follows_compose_rules() -> None:
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("${A}-${MISSING:-d}-${EMPTY:-e}-${EMPTY-f}", env) == "a-d-e-"
    assert interpolate("${X:-${Y:-${A}}}", env) == "a"
    assert interpolate("$$HOME and $$x", env) == "$HOME and $x"
    with pytest.raises(ComposeError, match="required"):
        interpolate("${MISSING:?set it}", env)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_validator_catches_renamed_flags_unknown_settings_and_cycles(
        tmp_path: Path, parser: argparse.ArgumentParser) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim AS app\n")
    compose = write(tmp_path / "c.yml", """
        services:
          base:
            build: {context: ., target: app}
            image: dual-transport-harness:t
            command: [broker]
          a:
            extends: {service: base}
            command: [produce, binance, --no-such-flag, "1"]
            depends_on: [b]
          b:
            extends: {service: base}
            command: [produce, binance]
            environment: {HARNESS_NOT_A_SETTING: "1", HARNESS_SOURCE: moon}
            depends_on: {a: {condition: service_healthy}}
          c:
            image: busybox
            volumes: ["./missing:/data"]
            env_file: [.env]
    """)
    found = "\n".join(problems(load_project(compose, env={}), parser))
    assert "a: command" in found and "--no-such-flag" in found
    assert "c.yml: must say 'Docker Compose 2.24.0 or later'" not in found  # c: list env_file
    assert "HARNESS_NOT_A_SETTING is not a setting" in found
    assert "HARNESS_SOURCE='moon' is not one of live, replay, synthetic" in found
    assert "b: waits for a healthy but a has no healthcheck" in found
    assert "depends_on cycle" in found
    assert "c: image 'busybox' is not pinned" in found
    assert "bind source ./missing" in found
    assert "env_file" in found and "required but missing" in found


def test_validator_catches_healthchecks_that_can_never_pass(
        tmp_path: Path, parser: argparse.ArgumentParser) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim AS app\n")
    (tmp_path / ".env.example").write_text("")
    compose = write(tmp_path / "c.yml", """
        name: t
        x-app: &app
          build: {context: ., target: app}
          image: dual-transport-harness:t
          restart: unless-stopped
        services:
          silent:
            <<: *app
            command: [process, candles]
            healthcheck: {test: [CMD, harness, health, /tmp/beat]}
          elsewhere:
            <<: *app
            command: [process, candles, --heartbeat, /tmp/other]
            healthcheck: {test: [CMD, harness, health, /tmp/beat, --max-age, "5"]}
          misspelt:
            <<: *app
            command: [process, candles, --heartbeat, /tmp/beat]
            healthcheck: {test: [CMD, harness, health, /tmp/beat, --max-agee, "60"]}
          unchecked:
            image: busybox:1.36
            restart: always
            env_file: [{path: .env, required: false}]
    """)
    found = "\n".join(problems(load_project(compose, env={}), parser))
    assert "silent: healthcheck reads /tmp/beat but the service runs without --heartbeat" in found
    assert "elsewhere: healthcheck reads /tmp/beat but the service beats /tmp/other" in found
    assert "elsewhere: healthcheck --max-age 5 s is under three heartbeats" in found
    assert "misspelt: healthcheck 'harness health" in found and "--max-agee" in found
    assert "unchecked: a long-running service needs a healthcheck" in found
    assert "c.yml: must say 'Docker Compose 2.24.0 or later' (env_file entries" in found


def test_extends_merges_environment_and_never_inherits_depends_on(tmp_path: Path) -> None:
    write(tmp_path / "base.yml", """
        services:
          app:
            image: x:1
            environment: {A: "1", B: "2"}
            volumes: ["./o:/out", "./r:/rec"]
            depends_on: [db]
    """)
    top = write(tmp_path / "top.yml", """
        services:
          svc:
            extends: {file: base.yml, service: app}
            environment: [B=3, C=4]
            volumes: ["./other:/out"]
    """)
    svc = load_project(top, env={}).services["svc"]
    assert svc["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert sorted(svc["volumes"]) == ["./other:/out", "./r:/rec"]
    assert "depends_on" not in svc


# -------------------------------------------------------------------------------- run them


def _h5_rows(path: Path, prefix: str) -> dict[str, int]:
    with h5py.File(path, "r") as f:  # each table is <name>/table (sinks.hdf5_layout)
        return {name: int(f[name]["table"].shape[0]) for name in f if name.startswith(prefix)
                and "table" in f[name]}


def run_project(key: str, out: Path, bootstrap: str | None) -> dict[str, Any]:
    """Start the application services of ``key`` locally on synthetic data; logs + exit codes.

    Consumers start first (a Kafka group join takes ~3 s on Tansu) and outlive the producers.
    """
    proj = project(key, HARNESS_SOURCE="synthetic", BINANCE_SYNTHETIC_RATE="100",
                   TWITTER_SYNTHETIC_RATE="20")
    brokers = {h: bootstrap for h in ("kafka", "kafka-2", "kafka-3") if bootstrap}
    endpoints = local_endpoints(proj, brokers, free_tcp_port)
    paths = {"/output": out, "/recordings": out / "recordings", "/results": out}
    processors = [n for n in APP_SERVICES if n.endswith("processor")]
    producers = [n for n in APP_SERVICES if n.endswith("producer")]
    # Stop when the producer's end announcement says everything arrived (at most after 30 s);
    # the idle exit is only the safety net (it also runs before the first message).
    for name in processors:
        env = proj.services[name].setdefault("environment", {})
        env.update(HARNESS_END_AFTER_PRODUCERS="1", HARNESS_END_GRACE="10",
                   HARNESS_IDLE_EXIT="25")
    codes = run_locally(proj, [(processors, 30.0), (producers, 6.0)], endpoints, paths, out,
                        settle_s=3.0 if bootstrap else 0.5)
    logs = {n: (out / f"{n}.log").read_text(errors="replace") for n in codes}
    return {"codes": codes, "logs": logs, "out": out}


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.parametrize("key", ["zmq", "kafka"])
def test_compose_services_run_the_pipeline_as_local_processes(key: str, tmp_path: Path) -> None:
    """Each application service's exact command and environment, run locally, produces candles
    and sentiment rows in the HDF5 files the compose file says it writes."""
    if key == "kafka":
        # A private broker: the compose topic names are fixed (binance.trade, ...) and other
        # tests on the session broker must neither see these records nor feed this group.
        with make_broker(folder=tmp_path / "broker") as broker:
            result = run_project(key, tmp_path, broker.bootstrap)
    else:
        result = run_project(key, tmp_path, None)
    detail = "\n".join(f"--- {n} (exit {result['codes'][n]})\n{log[-3000:]}"
                       for n, log in result["logs"].items())
    # the run-folder layout `harness run` writes, one folder per transport
    run = result["out"] / "runs" / "compose" / key
    market = _h5_rows(run / "market.h5", "candles_")
    trades = _h5_rows(run / "market.h5", "trades").get("trades", 0)
    sentiment = _h5_rows(run / "sentiment.h5", "")
    ok = (set(result["codes"].values()) == {0} and market
          and all(rows > 0 for rows in market.values()) and trades > 0
          and sentiment.get("tweets", 0) > 0)
    if not ok:  # pytest.fail keeps every service's log whole (an assert message is cut short)
        pytest.fail(f"codes {result['codes']}; market {market}; trades {trades}; "
                    f"sentiment {sentiment}\n{detail}", pytrace=False)
