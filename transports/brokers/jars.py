"""Apache Kafka's broker jars: an existing install (``KAFKA_HOME``) or a user cache filled once.

The cache is filled by Maven from ``pom.xml`` beside this file (``mvn dependency:copy-dependencies``
into a temporary folder, renamed into place only when complete), under a file lock so two first
runs at once neither corrupt it nor fetch twice. Its folder name carries the Kafka version and a
hash of the pom, so changing the pom gets a fresh cache instead of a stale one.

    HARNESS_KAFKA_CACHE   the cache folder (default: $XDG_CACHE_HOME or ~/.cache, then
                          dual-transport-harness/)
    KAFKA_HOME            use this Kafka 4.x installation's libs/ instead of the cache
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from transports.brokers.java import find_java
from transports.brokers.process import BrokerUnavailableError

POM = Path(__file__).with_name("pom.xml")
CACHE_ENV = "HARNESS_KAFKA_CACHE"
KAFKA_HOME_ENV = "KAFKA_HOME"
FETCH_TIMEOUT_S = 900.0
_MANIFEST = "jars.txt"
_KAFKA_JAR = re.compile(r"kafka_2\.1[23]-(\d+\.\d+\.\d+[^/]*?)\.jar$")


@dataclass(frozen=True, slots=True)
class KafkaJars:
    libs: Path
    version: str
    source: str  # "cache <folder>" or "KAFKA_HOME=<folder>"

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")


def pinned_version() -> str:
    """The Kafka version of ``pom.xml`` (the one version compose runs too)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"{POM} has no kafka.version property")
    return node.text.strip()


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dual-transport-harness"


def cache_folder() -> Path:
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:10]
    return cache_root() / f"kafka-{pinned_version()}-{digest}"


def kafka_jars(say: Callable[[str], None] | None = None) -> KafkaJars:
    """The jars to run: ``KAFKA_HOME``'s, else the cache (fetched now if it is empty)."""
    home = os.environ.get(KAFKA_HOME_ENV)
    if home:
        return _installed(Path(home))
    folder = cache_folder()
    version = pinned_version()
    if _complete(folder):
        return KafkaJars(folder / "libs", version, f"cache {folder}")
    say = say or _stderr
    with _locked(folder.parent / f"{folder.name}.lock", say):
        if not _complete(folder):  # another process may have filled it while we waited
            _fetch(folder, version, say)
    return KafkaJars(folder / "libs", version, f"cache {folder}")


def _installed(home: Path) -> KafkaJars:
    libs = home / "libs"
    versions = sorted({m.group(1) for p in libs.glob("kafka_2.1*.jar")
                       if (m := _KAFKA_JAR.search(p.name))})
    if not versions:
        raise BrokerUnavailableError(
            f"KAFKA_HOME={home} has no libs/kafka_2.13-<version>.jar (not a Kafka install?)")
    version = versions[-1]
    if int(version.split(".")[0]) < 4:
        raise BrokerUnavailableError(
            f"KAFKA_HOME={home} holds Kafka {version}; the embedded broker needs Kafka 4.x "
            "(KRaft combined mode as run here); unset KAFKA_HOME to use the pinned "
            f"{pinned_version()}")
    return KafkaJars(libs, version, f"KAFKA_HOME={home}")


def _complete(folder: Path) -> bool:
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return False
    names = manifest.read_text().split()
    return bool(names) and all((folder / "libs" / n).is_file() for n in names)


@contextlib.contextmanager
def _locked(path: Path, say: Callable[[str], None]) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"harness: waiting for another process fetching Apache Kafka's jars ({path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch(folder: Path, version: str, say: Callable[[str], None]) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailableError(
            f"Apache Kafka {version}'s jars are not cached yet and Maven (mvn) is not installed "
            f"to fetch them: install Maven, or set {KAFKA_HOME_ENV} to a Kafka 4.x install, or "
            "use kafka://?engine=tansu")
    java = find_java()
    env = {**os.environ, "JAVA_HOME": str(Path(java.path).resolve().parents[1])}
    if folder.exists():  # a folder without a manifest: an interrupted copy from an old version
        shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    say(f"harness: fetching Apache Kafka {version} jars with Maven into {folder} "
        "(first run only, ~45 jars, ~45 MB)...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder.parent) as tmp:
        work = Path(tmp)
        shutil.copy(POM, work / "pom.xml")  # Maven may write beside its pom: never in the package
        argv = [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
                f"-DoutputDirectory={work / 'staged' / 'libs'}", "-Dmdep.includeScope=runtime"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=work,
                                  timeout=FETCH_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise BrokerUnavailableError(
                f"fetching Apache Kafka's jars with Maven took over {FETCH_TIMEOUT_S:.0f} s "
                "(no access to Maven Central?)") from None
        staged = work / "staged"
        jars = sorted(p.name for p in (staged / "libs").glob("*.jar"))
        if done.returncode != 0 or f"kafka_2.13-{version}.jar" not in jars:
            detail = " ".join((done.stdout + done.stderr).split())[-400:]
            raise BrokerUnavailableError(
                f"Maven could not fetch Apache Kafka {version}'s jars (exit {done.returncode}): "
                f"{detail or 'no output'}")
        (staged / _MANIFEST).write_text("\n".join(jars) + "\n")
        os.replace(staged, folder)
    say(f"harness: Apache Kafka {version} jars ready ({len(jars)} jars, "
        f"{time.monotonic() - started:.0f} s); later runs use the cache")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
