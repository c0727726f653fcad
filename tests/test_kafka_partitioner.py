"""The kafka-python publisher's partitioner remembers key hashes; placements must stay exactly
kafka-python's (and so Kafka's Java client's): a key on another partition would break per-key
order against every other producer of the topic."""

from __future__ import annotations

import random

from transports.kafka_python import (  # kafka-python's own, imported where its warnings are muted
    DefaultPartitioner,
    _RememberedKeyPartitioner,
)


class FakeCluster:
    """The two ClusterMetadata calls a partitioner makes, for a topic of ``count`` partitions."""

    def __init__(self, count: int) -> None:
        self.count = count

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))


def test_remembered_hashes_place_every_key_where_kafka_python_does() -> None:
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randint(1, 24)) for _ in range(500)] + [b"BTCUSDT", b"ETHUSDT"]
    remembered, default = _RememberedKeyPartitioner(), DefaultPartitioner()
    for count in (1, 3, 4, 7, 12, 4):  # a topic that grows, and the same count again
        cluster = FakeCluster(count)
        for key in keys * 2:  # the second pass answers from the remembered hashes
            assert remembered.partition("t", None, key, None, None, cluster) == \
                default.partition("t", None, key, None, None, cluster)


def test_keyless_records_keep_the_default_choice() -> None:
    cluster = FakeCluster(4)
    picks = {_RememberedKeyPartitioner().partition("t", None, None, None, None, cluster)
             for _ in range(200)}
    assert picks <= {0, 1, 2, 3} and len(picks) > 1
