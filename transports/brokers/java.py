"""Find a Java runtime able to run Apache Kafka 4.x brokers (Java 17 or newer).

``JAVA_HOME`` wins when set (as for Kafka's own scripts); otherwise ``java`` on ``PATH``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from transports.brokers.process import BrokerUnavailableError

MIN_JAVA = 17
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


class JavaMissingError(BrokerUnavailableError):
    """No usable Java >= 17."""


@dataclass(frozen=True, slots=True)
class JavaRuntime:
    path: str
    major: int
    version: str  # e.g. "OpenJDK 17.0.15"

    def tool(self, name: str) -> str:
        """A JDK tool beside ``java`` (e.g. ``jcmd``), or '' if the runtime has none."""
        candidate = Path(self.path).with_name(name)
        return str(candidate) if candidate.exists() else ""


def find_java() -> JavaRuntime:
    """The Java that will run the broker; ``JavaMissingError`` says why there is none."""
    home = os.environ.get("JAVA_HOME", "")
    path = os.environ.get("PATH", "")
    return _find_java(home, path)


@functools.lru_cache(maxsize=8)
def _find_java(home: str, path: str) -> JavaRuntime:
    if home:
        binary = str(Path(home) / "bin" / "java")
        where = f"JAVA_HOME={home}"
        if not os.access(binary, os.X_OK):
            raise JavaMissingError(f"no Java at {where} (bin/java missing)")
    else:
        found = shutil.which("java", path=path)
        if found is None:
            raise JavaMissingError("no Java on PATH (and JAVA_HOME is not set)")
        binary, where = found, found
    try:
        done = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=20,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaMissingError(f"Java at {where} does not run: {exc}") from None
    text = done.stderr + done.stdout
    match = _VERSION.search(text)
    if done.returncode != 0 or match is None:
        raise JavaMissingError(f"Java at {where} does not report a version")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise JavaMissingError(f"Java at {where} is version {major}; Apache Kafka 4 needs "
                               f">= {MIN_JAVA}")
    vendor = "OpenJDK" if "openjdk" in text.lower() else "Java"
    full = match.group(0).split('"')[1]
    return JavaRuntime(binary, major, f"{vendor} {full}")
