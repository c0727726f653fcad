"""Class-data sharing for the broker JVMs: an archive of the classes Kafka loads at start-up.

The apache/kafka image ships one for the same reason: mapping the archive instead of loading
and verifying a few thousand classes from 45 jars takes about 2 s off every broker start
(README, "The Kafka broker"). The first broker that stops cleanly writes it (JDK 17's
``-XX:ArchiveClassesAtExit``, into a file of its own, renamed into place after it exited);
every later start maps it. The archive belongs to one JVM build and one class path, both in
its name; a JVM that cannot use it says so in the broker log and starts without it.
``HARNESS_KAFKA_CDS=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from transports.brokers.jars import KafkaJars, cache_root
from transports.brokers.java import JavaRuntime

CDS_ENV = "HARNESS_KAFKA_CDS"


def archive_path(java: JavaRuntime, jars: KafkaJars) -> Path:
    jar_names = sorted(p.name for p in jars.libs.glob("*.jar"))
    key = "\n".join([java.path, java.version, str(jars.libs), *jar_names])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_root() / "cds" / f"kafka-{jars.version}-java{java.major}-{digest}.jsa"


def jvm_flags(java: JavaRuntime, jars: KafkaJars) -> tuple[list[str], Path | None]:
    """Flags for a broker JVM, and the file it writes the archive to (to ``keep`` after it
    exited), if there is no archive yet."""
    if os.environ.get(CDS_ENV, "1") == "0":
        return [], None
    final = archive_path(java, jars)
    if final.is_file():
        return [f"-XX:SharedArchiveFile={final}"], None
    with contextlib.suppress(OSError):
        final.parent.mkdir(parents=True, exist_ok=True)
        pending = final.with_suffix(f".{os.getpid()}.{id(final)}.tmp")
        return [f"-XX:ArchiveClassesAtExit={pending}"], pending
    return [], None


def keep(pending: Path | None, java: JavaRuntime, jars: KafkaJars) -> None:
    """After the JVM that wrote ``pending`` exited: make it the archive (first one wins)."""
    if pending is None:
        return
    final = archive_path(java, jars)
    with contextlib.suppress(OSError):
        if pending.is_file() and pending.stat().st_size > 0 and not final.exists():
            os.replace(pending, final)
    with contextlib.suppress(OSError):
        pending.unlink()
