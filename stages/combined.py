"""Several stages in one processor: one subscription, one HDF5 file, one checkpoint.

Why: a ZeroMQ PUSH socket deals messages round-robin to the processors connected to it, so two
processors reading the same Binance producer would each get half of every topic. Running the
candle and order-book stages in one process gives each all of its topics on every transport,
and one checkpoint covers both (their states travel together, keyed by stage name).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from core.dead_letters import DeadLetters
from stages.runner import Rows, Stage
from transports import Envelope


class CombinedStage(Stage):
    """Routes each message to the stage(s) reading its topic; tables must not overlap."""

    def __init__(self, dead_letters: DeadLetters, stages: Sequence[Stage]) -> None:
        super().__init__(dead_letters)
        self.stages = list(stages)
        self.name = "+".join(s.name for s in self.stages)
        self.topics = tuple(dict.fromkeys(t for s in self.stages for t in s.topics))
        self._by_topic = {t: [s for s in self.stages if t in s.topics] for t in self.topics}
        seen: dict[str, str] = {}
        for stage in self.stages:
            for table in stage.tables():
                if table in seen:
                    raise ValueError(f"stages {seen[table]} and {stage.name} both write {table}")
                seen[table] = stage.name

    def tables(self) -> Mapping[str, np.dtype]:
        return {name: dtype for s in self.stages for name, dtype in s.tables().items()}

    def process(self, batch: list[Envelope]) -> Mapping[str, Rows]:
        parts: dict[int, list[Envelope]] = {}
        for env in batch:
            for stage in self._by_topic.get(env.topic, ()):
                parts.setdefault(id(stage), []).append(env)
        out: dict[str, Rows] = {}
        for stage in self.stages:
            mine = parts.get(id(stage))
            if mine:
                out.update(stage.process(mine))
        return out

    def finish(self) -> Mapping[str, Rows]:
        out: dict[str, Rows] = {}
        for stage in self.stages:
            out.update(stage.finish())
        return out

    def snapshot(self) -> bytes:
        return json.dumps({s.name: s.snapshot().decode() for s in self.stages}).encode()

    def restore(self, state: bytes) -> None:
        if not state:
            return
        data = json.loads(state)
        for stage in self.stages:
            stage.restore(str(data.get(stage.name, "")).encode())
