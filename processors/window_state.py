"""Snapshot and restore of a ``PanedWindows`` aggregator as JSON (never pickle).

The HDF5 sink stores this snapshot with every checkpoint, so a processor killed mid-window
resumes with exactly the open windows it had at the checkpoint and re-reads only the messages
after it: the candles of a crashed-and-restarted run equal those of a clean run.

States are ``__slots__`` classes holding numbers, strings, lists and tuples; JSON keeps floats
exactly (Python writes the shortest repr that round-trips) and tuples are tagged so comparisons
such as ``(time, id) < first_key`` still work after a restore.
"""

from __future__ import annotations

from typing import Any

from processors.windowing import PanedWindows

_FORMAT = 1


def _encode(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"t": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(_decode(v) for v in value["t"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _state_to_json(state: Any) -> list[Any]:
    return [_encode(getattr(state, name)) for name in type(state).__slots__]


def _state_from_json(cls: type, values: list[Any]) -> Any:
    state = cls.__new__(cls)
    for name, value in zip(cls.__slots__, values, strict=True):
        setattr(state, name, _decode(value))
    return state


def snapshot_windows(agg: PanedWindows[Any, Any], state_class: type) -> dict[str, Any]:
    """Everything the aggregator needs to continue: watermark, counters, open panes/windows."""
    return {
        "format": _FORMAT,
        "state": state_class.__name__,
        "sizes_ms": list(agg.sizes_ms),
        "grace_ms": agg.grace_ms,
        "max_event_ms": agg.max_event_ms,
        "watermark_ms": agg.watermark_ms,
        "late_count": agg.late_count,
        "late_by_window": [[k, v] for k, v in agg.late_by_window.items()],
        "panes": [
            [start, key, _state_to_json(st)]
            for start, by_key in agg.panes.items()
            for key, st in by_key.items()
        ],
        "windows": [
            [size, start, key, _state_to_json(st)]
            for size, by_start in agg.windows.items()
            for start, by_key in by_start.items()
            for key, st in by_key.items()
        ],
    }


def restore_windows(agg: PanedWindows[Any, Any], state_class: type, data: dict[str, Any]) -> None:
    """Load a snapshot into a fresh aggregator configured with the same windows and grace."""
    if data.get("format") != _FORMAT or data.get("state") != state_class.__name__:
        raise ValueError(f"snapshot is not a {state_class.__name__} window snapshot")
    if tuple(data["sizes_ms"]) != tuple(agg.sizes_ms) or data["grace_ms"] != agg.grace_ms:
        raise ValueError(
            f"checkpoint was written with windows {data['sizes_ms']} ms and grace "
            f"{data['grace_ms']} ms; restart with the same settings or a new output file"
        )
    agg.max_event_ms = data["max_event_ms"]
    agg.watermark_ms = data["watermark_ms"]
    agg.late_count = data["late_count"]
    agg.late_by_window = {int(k): int(v) for k, v in data["late_by_window"]}
    agg.panes = {}
    for start, key, values in data["panes"]:
        agg.panes.setdefault(start, {})[key] = _state_from_json(state_class, values)
    agg.windows = {size: {} for size in agg.sizes_ms}
    for size, start, key, values in data["windows"]:
        agg.windows[size].setdefault(start, {})[key] = _state_from_json(state_class, values)

