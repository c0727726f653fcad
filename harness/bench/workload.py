"""Workload files: what to send, how fast, for how long, over which transports.

A file is either one scenario, or shared settings plus a ``scenarios:`` list whose entries
override them. Every mistake becomes one ``WorkloadError`` line naming the file and the key,
because a typo in a benchmark definition must never silently fall back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from core.errors import UserError

WORKLOAD_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "workloads"

SCHEDULES = ("uniform", "bursts", "binance")
PAYLOADS = ("fixed", "binance", "depth")
RATE_MODES = ("fixed", "sweep", "max")

#: Built-in transport presets; ``{broker}``, ``{port}``, ``{consumers}`` and the ``kafka``/``zmq``
#: sections are filled in per trial by the runner.
PRESETS = ("kafka-python", "confluent-kafka", "zmq-pushpull", "zmq-pubsub")


class WorkloadError(UserError):
    """A workload file that cannot be used; one line, names the file and the offending key."""


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """One transport under test: a preset name or an explicit URL template."""

    name: str
    url: str = ""  # empty: built from the preset and the workload's kafka/zmq sections

    @property
    def is_kafka(self) -> bool:
        return self.name in ("kafka-python", "confluent-kafka") or self.url.startswith("kafka")


@dataclass(frozen=True, slots=True)
class Sweep:
    """Max-sustainable-throughput search: multiply the rate, then bisect, within a time budget."""

    start: float = 2000.0
    factor: float = 2.0
    max_rate: float = 256_000.0
    bisect_steps: int = 2
    budget_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measured situation; every field can be set in the file (see benchmarks/workloads)."""

    name: str = "scenario"
    description: str = ""
    payload: str = "fixed"  # fixed | binance (synthetic trade frames) | depth (depth@100ms diffs)
    message_bytes: int = 170
    schedule: str = "uniform"  # uniform | bursts (burst_size share one instant) | binance
    burst_size: int = 1
    rate_mode: str = "fixed"  # fixed | sweep | max
    rate: float = 1000.0  # msg/s over all producers (fixed), or the sweep's start
    rates: tuple[float, ...] = ()  # explicit list for a sweep; else multiply/bisect
    sweep: Sweep = field(default_factory=Sweep)
    duration_s: float = 5.0
    warmup_s: float = 1.0
    drain_timeout_s: float = 5.0
    producers: int = 1
    consumers: int = 1
    fan_out: bool = False  # each consumer gets every message (pubsub / separate Kafka readers)
    partitions: int = 1
    latency_bound_ms: float = 50.0
    consumer_delay_us: float = 0.0  # per-message work in the consumer (overload scenarios)
    consumer_stall_ms: float = 0.0  # one pause of the consumer (honest-latency check)
    consumer_stall_at_s: float = 2.0  # seconds after the start (warm-up included)
    kafka: Mapping[str, Any] = field(default_factory=lambda: {"acks": "1", "linger_ms": 5})
    zmq: Mapping[str, Any] = field(default_factory=lambda: {"hwm": 1000})
    transports: tuple[TransportSpec, ...] = tuple(TransportSpec(n) for n in PRESETS)

    @property
    def copies(self) -> int:
        """How many times each message should be consumed (fan-out delivers to all)."""
        return self.consumers if self.fan_out else 1


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    description: str
    path: str
    text: str
    scenarios: tuple[Scenario, ...]


_SCENARIO_FIELDS = {f.name: f for f in fields(Scenario)}
_SWEEP_FIELDS = {f.name for f in fields(Sweep)}


def resolve_path(name_or_path: str) -> Path:
    """A path to a file, or the name of a shipped workload (``default``, ``max-throughput``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = WORKLOAD_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in WORKLOAD_DIR.glob("*.yaml")))
    raise WorkloadError(f"no workload file or shipped workload {name_or_path!r}; shipped: {names}")


def load_workload(name_or_path: str) -> Workload:
    path = resolve_path(name_or_path)
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkloadError(f"{path}: cannot read workload: {first}") from None
    return parse_workload(data, source=str(path), text=text)


def parse_workload(data: Any, source: str = "<workload>", text: str = "") -> Workload:
    if not isinstance(data, dict):
        raise WorkloadError(f"{source}: a workload must be a mapping of settings")
    data = dict(data)
    name = str(data.pop("name", Path(source).stem))
    description = str(data.pop("description", ""))
    scenario_list = data.pop("scenarios", None)
    base = _scenario(data, source, "", Scenario(name=name, description=description))
    if scenario_list is None:
        scenarios: tuple[Scenario, ...] = (base,)
    else:
        if not isinstance(scenario_list, list) or not scenario_list:
            raise WorkloadError(f"{source}: 'scenarios' must be a non-empty list")
        scenarios = tuple(
            _scenario(dict(item) if isinstance(item, dict) else item, source, f"scenarios[{i}].",
                      replace(base, name=f"s{i}", description=""))
            for i, item in enumerate(scenario_list)
        )
    seen = [s.name for s in scenarios]
    if len(set(seen)) != len(seen):
        raise WorkloadError(f"{source}: scenario names must be unique, got {seen}")
    return Workload(name, description, source, text, scenarios)


def _scenario(data: Any, source: str, where: str, base: Scenario) -> Scenario:
    if not isinstance(data, dict):
        raise WorkloadError(f"{source}: {where.rstrip('.') or 'workload'} must be a mapping")
    values: dict[str, Any] = {}
    for key, raw in data.items():
        spec = _SCENARIO_FIELDS.get(key)
        if spec is None:
            accepted = ", ".join(sorted([*_SCENARIO_FIELDS, "scenarios"]))
            raise WorkloadError(f"{source}: unknown key {where}{key!r}; accepted: {accepted}")
        try:
            values[key] = _convert(key, raw, getattr(base, key))
        except (TypeError, ValueError) as exc:
            raise WorkloadError(f"{source}: {where}{key}: {exc}") from None
    scenario = replace(base, **values)
    try:
        _validate(scenario)
    except ValueError as exc:
        raise WorkloadError(f"{source}: {where.rstrip('.') or scenario.name}: {exc}") from None
    return scenario


def _convert(key: str, raw: Any, current: Any) -> Any:
    if key == "transports":
        if not isinstance(raw, list) or not raw:
            raise ValueError("expected a non-empty list of preset names or {name, url}")
        return tuple(_transport(item) for item in raw)
    if key == "sweep":
        if not isinstance(raw, dict):
            raise ValueError("expected a mapping with " + ", ".join(sorted(_SWEEP_FIELDS)))
        unknown = set(raw) - _SWEEP_FIELDS
        if unknown:
            raise ValueError(f"unknown {sorted(unknown)}; accepted: {sorted(_SWEEP_FIELDS)}")
        return replace(current, **{k: _number(k, v, getattr(current, k)) for k, v in raw.items()})
    if key in ("kafka", "zmq"):
        if not isinstance(raw, dict):
            raise ValueError("expected a mapping of URL options")
        return {str(k): v for k, v in raw.items()}
    if key == "rates":
        if not isinstance(raw, list) or not all(_is_number(r) and r > 0 for r in raw):
            raise ValueError("expected a list of positive msg/s numbers")
        return tuple(float(r) for r in raw)
    if key == "rate" and raw == "max":
        return 0.0
    if isinstance(current, bool):
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw
    if isinstance(current, int | float):
        return _number(key, raw, current)
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {raw!r}")
    return raw


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(key: str, raw: Any, current: Any) -> Any:
    if not _is_number(raw):
        raise ValueError(f"expected a number, got {raw!r}")
    if raw < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if raw != int(raw):
            raise ValueError(f"expected a whole number, got {raw!r}")
        return int(raw)
    return float(raw)


def _transport(item: Any) -> TransportSpec:
    if isinstance(item, str):
        if item not in PRESETS:
            raise ValueError(f"unknown transport preset {item!r}; presets: {', '.join(PRESETS)}")
        return TransportSpec(item)
    if isinstance(item, dict) and set(item) <= {"name", "url"} and "name" in item:
        name, url = str(item["name"]), str(item.get("url", ""))
        if not url and name not in PRESETS:
            raise ValueError(f"transport {name!r} needs a url (or use one of {PRESETS})")
        if url and "://" not in url:
            raise ValueError(f"transport {name!r}: url {url!r} has no scheme")
        return TransportSpec(name, url)
    raise ValueError(f"expected a preset name or {{name, url}}, got {item!r}")


def _validate(s: Scenario) -> None:
    checks = [
        (s.payload in PAYLOADS, f"payload must be one of {', '.join(PAYLOADS)}"),
        (s.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
        (s.rate_mode in RATE_MODES, f"rate_mode must be one of {', '.join(RATE_MODES)}"),
        (s.rate_mode != "fixed" or s.rate > 0, "a fixed rate_mode needs rate > 0"),
        (s.message_bytes >= 16, "message_bytes must be at least 16"),
        (s.duration_s > 0, "duration_s must be positive"),
        (s.producers >= 1 and s.consumers >= 1, "producers and consumers must be >= 1"),
        (s.partitions >= 1, "partitions must be >= 1"),
        (s.burst_size >= 1, "burst_size must be >= 1"),
        (s.latency_bound_ms > 0, "latency_bound_ms must be positive"),
        (s.sweep.factor > 1, "sweep.factor must be > 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
