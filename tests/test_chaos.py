"""``harness chaos --quick`` as users run it: kill -9 the processor three times on each transport.

Kafka must lose and duplicate nothing; ZeroMQ must report exactly what it lost, where the truth
is recomputed by this test from what the producer sent and what the HDF5 file holds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hdf5_helpers import assert_opens_in_pandas_and_pytables

from harness.chaos.results import read_chaos
from sinks.hdf5_reader import read_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.kafka
def test_quick_chaos_run_kafka_exactly_once_zmq_loss_reported_exactly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "chaos", "--quick", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    (run_dir,) = tmp_path.glob("*-chaos")
    metadata, rows = read_chaos(run_dir)
    assert_opens_in_pandas_and_pytables(run_dir / "chaos.h5", ["chaos"])
    assert metadata["settings"]["quick"] is True and metadata["git_revision"]
    assert (run_dir / "report.md").read_text().count("| processor_kill |") == 2
    by_transport = {r["transport"]: r for r in rows}
    assert set(by_transport) == {"kafka", "zmq-pushpull"}
    for row in rows:
        assert row["status"] == "ok", row["note"]
        assert row["faults"] == 3 and row["sent"] == 9000

    kafka = by_transport["kafka"]
    assert kafka["lost"] == 0 and kafka["duplicated"] == 0, kafka
    assert kafka["broker"].startswith(("Apache Kafka 4.", "tansu ")), kafka["broker"]
    assert kafka["delivered"] == kafka["sent"]

    zmq = by_transport["zmq-pushpull"]
    # The truth, recomputed here from the producer's id and count and from the file itself.
    output = run_dir / "runs" / "processor_kill-zmq-pushpull" / "market.h5"
    trades = read_table(output, "trades")
    mine = trades["seq"][trades["producer_id"] == b"chaos-kill-zmq-pushpull"]
    true_lost = 9000 - len(set(mine.tolist()) & set(range(9000)))
    assert zmq["lost"] == true_lost
    assert zmq["reported_net"] == true_lost, zmq
    assert zmq["duplicated"] == 0
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.slow
def test_source_dropped_three_websocket_drops_no_duplicates_loss_reported_exactly(
    tmp_path: Path,
) -> None:
    """Abort the producer's exchange websocket three times: it reconnects, nothing duplicates."""
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "chaos", "--scenarios", "source_dropped",
         "--transports", "zmq-pushpull", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    (run_dir,) = tmp_path.glob("*-chaos")
    _, (row,) = read_chaos(run_dir)
    assert row["status"] == "ok" and row["faults"] == 3, row["note"]
    assert row["sent"] > 0 and row["duplicated"] == 0, row
    assert row["reported_net"] == row["lost"], row
    assert row["x_source_lost"] >= 0 and row["recovery_s"] < 30, row
    summary = run_dir / "runs" / "source_dropped-zmq-pushpull" / \
        "chaos-source-zmq-pushpull.summary.json"
    assert f'"binance.trade": {row["sent"]}' in summary.read_text()
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.kafka
def test_killing_the_partition_leader_of_a_three_broker_cluster_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """3 Apache Kafka brokers (RF 3, min.insync.replicas 2), acks=all: SIGKILL the broker leading
    the trade partition mid-stream; the real processor's HDF5 file holds every trade once."""
    messages = 3000
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "chaos", "--scenarios", "failover",
         "--transports", "kafka-cluster", "--messages", str(messages),
         "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=400, cwd=ROOT, check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    (run_dir,) = tmp_path.glob("*-chaos")
    _, (row,) = read_chaos(run_dir)
    assert row["status"] == "ok", row["note"]
    assert row["broker"].startswith("Apache Kafka 4.") and "3 brokers" in row["broker"]
    assert row["x_killed_node"] != row["x_new_leader"], row  # a leader really died
    # The truth, recomputed here from the file the processor wrote.
    output = run_dir / "runs" / "failover-kafka-cluster" / "market.h5"
    trades = read_table(output, "trades")
    mine = trades["seq"][trades["producer_id"] == b"chaos-failover-kafka-cluster"].tolist()
    assert sorted(mine) == list(range(messages))  # 0 lost, 0 duplicated
    assert row["lost"] == 0 and row["duplicated"] == 0 and row["sent"] == messages
    assert row["x_failover_s"] > 0 and row["x_spike_max_ms"] >= row["x_baseline_p99_ms"]
    report = (run_dir / "report.md").read_text()
    assert "## Failover" in report and "partition leader" in report
    assert done.returncode == 0, done.stdout[-3000:]
