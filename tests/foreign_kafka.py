"""kafka-python used directly: a foreign producer writing records the harness did not."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():  # kafka-python 3.0 schema loading warns via importlib
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

__all__ = ["KafkaProducer"]
