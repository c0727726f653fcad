"""A group member must not stall after the rejoin a fresh topic's metadata used to cause.

kafka-python 3.0.12 built its snapshot of a subscription's partitions only from a metadata
update after ``subscribe()``; that update usually came back after the first join, so the group
leader rejoined a moment later, and a ``poll`` that timed out in the middle of that rejoin left
the member REBALANCING for ever: no heartbeat, no fetch, nothing received (CI: the compose
test's sentiment processor got 0 of 117 tweets). With short polls the stall hit 5 of 12 and 14
of 24 trials before the fix (``KafkaPythonSubscriber._subscribe`` and
``_revive_stalled_join``). Each trial here is what a processor does at start-up: a new topic,
a new group, short polls, then records published a few seconds later, which must all arrive.
"""

from __future__ import annotations

import time
import uuid

import pytest

from transports import open_transport

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TRIALS = 6
RECORDS = 8


def test_fresh_topic_group_member_receives_after_start_up_rejoins(kafka_url: str) -> None:
    url = f"{kafka_url}?partitions=4"
    missing = []
    with open_transport(url) as transport:
        for trial in range(TRIALS):
            topic = f"t-group-join-{uuid.uuid4().hex[:8]}"
            sub = transport.subscriber([topic], group=f"g-{topic}", start="earliest")
            try:
                joined_by = time.monotonic() + 3.0
                while time.monotonic() < joined_by:  # short polls: a join outlasts many
                    sub.poll(1000, timeout=0.01)
                publisher = transport.publisher()
                for i in range(RECORDS):
                    publisher.publish(topic, f"m{i}".encode(), key=f"k{i}".encode())
                publisher.close()
                got, deadline = 0, time.monotonic() + 15.0
                while got < RECORDS and time.monotonic() < deadline:
                    got += len(sub.poll(1000, timeout=0.01))
            finally:
                sub.close()
            if got != RECORDS:
                missing.append(f"trial {trial}: {got} of {RECORDS}")
    assert not missing, missing
