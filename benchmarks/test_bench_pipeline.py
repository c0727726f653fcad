"""Whole-pipeline throughput, producer -> transport -> candle processor -> HDF5, in trades/s,
beside the raw transport loops it is judged against, measured in the same run.

Run: ``.venv/bin/python benchmarks/test_bench_pipeline.py [N_TRADES]`` for the table (raw loops,
pipeline rows, ratios, the producer and the processor alone), or ``.venv/bin/pytest
benchmarks/test_bench_pipeline.py -s`` (figures in ``extra_info`` and printed).

The raw loops move N of the pipeline's own messages with nothing but the client library:
``raw zmq`` a pyzmq PUSH socket in another process sending the pipeline's ZeroMQ frame N times
to a PULL socket here (first to last receive), before and after each of ``ZMQ_ROUNDS`` rounds of
the ZeroMQ pipeline rows (the ratios are of the means: the raw loop alone moved 0.62-0.97 M
msg/s within minutes on this VM); ``raw kafka-python`` a ``KafkaProducer`` in
another process (the transport's producer settings) sending the pipeline's Kafka record (value,
key, both headers) N times, and a ``KafkaConsumer`` here, through the same embedded broker as
the Kafka pipeline row (first record's CreateTime to last receive). Kafka is measured in
``KAFKA_ROUNDS`` rounds, each on a fresh broker (the pipeline's topic and group names are fixed,
so a second pipeline on one broker would read the first one's trades): the broker is warmed up
by a short raw loop, then the raw loop runs before and after the pipeline. The Kafka ratio is
the mean pipeline rate over the mean raw rate of all rounds, so neither a broker that speeds up
or slows down during a round nor one noisy round favours either side; every round's rows are
printed. ``producer alone`` is the pipeline's producer command into a bare PULL socket that
discards (its summary's rate, first frame to last); ``processor alone`` runs the candle stage
and the HDF5 sink in this process on envelopes built in memory: what one core does with the
trades table, four candle windows and a checkpoint every ``FLUSH_INTERVAL_S``, with no transport
at all, the best of ``PROCESSOR_PASSES`` passes (each into a new file), as timeit reports the
best: on a shared machine other work only ever slows a pass down.

Every stage is the real ``harness`` command in its own process: ``harness produce binance
--source replay --speed 0`` replays a trade-only recording as fast as it can, ``harness process
candles`` writes trades + candles to HDF5. On ZeroMQ the processor binds and the producer
connects, so the first trades do not wait out the reconnect backoff of a processor that started
first. End to end = from the first publish (the smallest ``publish_time_ns`` in the file) to the
checkpoint that made the last trade durable (that checkpoint's ``time_ns``), so flush delay
counts. Each run also checks that every trade arrived. The producer and the processor share
this machine's two cores with whatever else runs, so compare the two transports inside one run,
never across runs.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import h5py
import numpy as np
import orjson
import pytest
from test_bench_zmq import (  # benchmarks/ is on sys.path (script, pytest)
    PUSH_CLOSE,
    PUSH_PRELUDE,
    raw_pull,
)

from core.dead_letters import DeadLetters
from core.recording import RecordingWriter
from sinks.hdf5 import Hdf5Sink
from sinks.hdf5_schema import CHECKPOINTS, valid_checkpoint
from stages.candles import CandleStage
from transports import Envelope, open_transport
from transports.brokers import Broker, free_tcp_port, make_broker
from transports.framing import CODEC, META_HEADER, encode_frame, encode_meta

with warnings.catch_warnings():  # kafka-python 3.0 schema loading warns via importlib
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

HARNESS = [sys.executable, "-m", "harness.cli"]
N_TRADES = 300_000
FLUSH_INTERVAL_S = 0.25  # a checkpoint every 0.25 s: the flush delay is part of the figure
T0_MS = 1_700_000_000_000
ROOT = Path(__file__).resolve().parents[1]
PRODUCER_ID = "binance-bench-0000000"  # as long as the producer's ids
#: Envelopes per ``stage.process`` call in the processor-alone row (``RunLimits.batch_size``).
PROCESSOR_BATCH = 5_000
#: The processor alone runs this many times; the fastest pass is reported.
PROCESSOR_PASSES = 3
#: Kafka rounds (a fresh broker each: raw loop, pipeline, raw loop).
KAFKA_ROUNDS = 2
#: ZeroMQ rounds (raw loop, every ZeroMQ pipeline row, raw loop); ratios are of the means.
ZMQ_ROUNDS = 2
#: The ZeroMQ pipeline rows: producer URL options and row name. The default packs only what
#: the unpaced replay hands over together (no message waits); ``batch=1`` is one frame per
#: message; a linger also batches single publishes that queue up, waiting up to 1 ms.
ZMQ_FRAMING = {
    "zmq": ("", "pipeline zmq (default framing)"),
    "zmq-frame": ("&batch=1", "pipeline zmq batch=1 (one per frame)"),
    "zmq-linger": ("&batch_linger_ms=1", "pipeline zmq batch_linger_ms=1"),
}


def write_trade_recording(path: Path, n: int, seed: int = 5) -> Path:
    """Binance combined-stream trade frames (bursty times, two symbols) as a replay recording."""
    rng = random.Random(seed)
    t = T0_MS
    with RecordingWriter(path, flush_every=10_000) as rec:
        for i in range(n):
            t += rng.choice((0, 0, 0, 1, 2, 5, 20))
            sym = "BTCUSDT" if i % 3 else "ETHUSDT"
            data = {"e": "trade", "E": t + 1, "s": sym, "t": 1_000_000 + i,
                    "p": f"{60_000 + rng.uniform(-50, 50):.2f}", "q": f"{rng.random():.5f}",
                    "T": t, "m": rng.random() < 0.54, "M": True}  # fmt: skip
            frame = {"stream": f"{sym.lower()}@trade", "data": data}
            rec.write(json.dumps(frame, separators=(",", ":")), recv_ns=t * 1_000_000)
    return path


def recorded_values(recording: Path) -> Iterator[tuple[str, bytes]]:
    """(symbol, value) as the producer publishes each recorded trade: orjson of ``data``."""
    with gzip.open(recording, "rt") as lines:
        for line in lines:
            record = json.loads(line)
            frame = record.get("raw")
            if frame is None:
                continue
            data = json.loads(frame)["data"]
            yield data["s"], orjson.dumps(data)


@dataclass
class PipelineMessage:
    """One trade as the pipeline carries it: its ZeroMQ frame, and its Kafka record (value,
    key and headers, the producer's ``x-harness`` envelope header included)."""

    frame: bytes
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]

    @property
    def record_bytes(self) -> int:
        return len(self.value) + len(self.key) + sum(len(k) + len(v) for k, v in self.headers)


def pipeline_message(recording: Path) -> PipelineMessage:
    symbol, value = next(recorded_values(recording))
    key, t_ns = symbol.encode(), T0_MS * 1_000_000
    headers = (("recv_ns", str(t_ns).encode()),)
    frame = encode_frame("binance.trade", value, key, headers, PRODUCER_ID, 0, t_ns, t_ns)
    meta = (META_HEADER, encode_meta(PRODUCER_ID, 0, t_ns, t_ns))
    return PipelineMessage(frame, value, key, [meta, *headers])


#: test_bench_zmq's raw sender (same socket options), sending one frame (argv 3, hex) N times.
RAW_ZMQ_SENDER = PUSH_PRELUDE + "for _ in range(n):\n    send(payload)\n" + PUSH_CLOSE


def raw_zmq(frame: bytes, n: int) -> float:
    """msg/s of a bare pyzmq PUSH -> PULL loop (sender in another process), same frames."""
    with raw_pull(RAW_ZMQ_SENDER, n, frame) as sock:
        recv = sock.recv
        recv()
        start = time.perf_counter()
        for _ in range(n - 1):
            recv()
        elapsed = time.perf_counter() - start
    return (n - 1) / elapsed


RAW_KAFKA_SENDER = """
import json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
from kafka import KafkaProducer
bootstrap, topic, n, record = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                         batch_size=16384, enable_idempotence=True)
send = producer.send
value, key = bytes.fromhex(record["value"]), bytes.fromhex(record["key"])
headers = [(name, bytes.fromhex(data)) for name, data in record["headers"]]
for _ in range(n):
    send(topic, value=value, key=key, headers=headers)
producer.flush(120)
producer.close(10)
"""


def raw_kafka(broker: Broker, message: PipelineMessage, n: int) -> float:
    """msg/s of a bare kafka-python produce -> consume loop through ``broker``: a producer
    process with the transport's producer settings sending the pipeline's own record (value,
    key, headers) N times, a consumer here (the transport's fetch settings), from the first
    record's CreateTime to the last record received."""
    topic = f"raw-{time.time_ns()}"
    with open_transport(broker.url) as admin:
        admin.create_topics([topic], partitions=1)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=500, max_poll_records=1000)  # fmt: skip
    record = json.dumps({"value": message.value.hex(), "key": message.key.hex(),
                         "headers": [(k, v.hex()) for k, v in message.headers]})  # fmt: skip
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        sender = subprocess.Popen(
            [sys.executable, "-c", RAW_KAFKA_SENDER, broker.bootstrap, topic, str(n), record]
        )
        received, first_ms = 0, 0
        while received < n:
            for records in consumer.poll(timeout_ms=1000, max_records=1000).values():
                if not first_ms:
                    first_ms = records[0].timestamp
                received += len(records)
        done_ns = time.time_ns()
        assert sender.wait(120) == 0
    finally:
        consumer.close(autocommit=False)
    return n / ((done_ns - first_ms * 1_000_000) / 1e9)


def processor_alone(recording: Path, workdir: Path) -> tuple[int, float]:
    """(trades, seconds) of the candle stage + HDF5 sink on one core, no transport: envelopes
    built in memory, ``PROCESSOR_BATCH`` per ``process`` call, a checkpoint (rows + state)
    every ``FLUSH_INTERVAL_S`` and one at the end, as ``harness process candles`` does."""
    envs = [
        Envelope("binance.trade", value, symbol.encode(), (), PRODUCER_ID, seq,
                 T0_MS * 1_000_000, T0_MS * 1_000_000, -1, -1, T0_MS * 1_000_000)
        for seq, (symbol, value) in enumerate(recorded_values(recording))
    ]  # fmt: skip
    dead = DeadLetters("candles")
    stage = CandleStage(dead)
    with Hdf5Sink(workdir / "processor-alone.h5", stage.tables()) as sink:
        started = last_flush = time.perf_counter()
        for i in range(0, len(envs), PROCESSOR_BATCH):
            for table, rows in stage.process(envs[i : i + PROCESSOR_BATCH]).items():
                sink.append(table, rows)
            now = time.perf_counter()
            if now - last_flush >= FLUSH_INTERVAL_S:
                sink.flush(state=stage.snapshot())
                last_flush = now
        for table, rows in stage.finish().items():
            sink.append(table, rows)
        sink.flush(state=stage.snapshot())
        seconds = time.perf_counter() - started
        assert sink.counts["trades"] == len(envs) and not dead.counts, dead.counts
    return len(envs), seconds


DRAIN = """
import sys, zmq
sock = zmq.Context().socket(zmq.PULL)
sock.bind(sys.argv[1])
print("bound", flush=True)
while True:
    sock.recv()
"""


def producer_alone(recording: Path, workdir: Path) -> float:
    """msg/s of ``harness produce binance --source replay --speed 0`` (the pipeline's producer,
    the transport's default framing) into a bare PULL socket that discards: the rate its
    summary reports, from its first frame to its last (start-up excluded)."""
    address = f"tcp://127.0.0.1:{free_tcp_port()}"
    drain = subprocess.Popen([sys.executable, "-c", DRAIN, address], stdout=subprocess.PIPE)
    summary = workdir / "producer-alone.json"
    try:
        assert drain.stdout is not None and drain.stdout.readline() == b"bound\n"
        subprocess.run(
            [*HARNESS, "produce", "binance", "--transport",
             f"zmq+{address}?pattern=pushpull&bind=subscriber", "--source", "replay",
             "--recording", str(recording), "--speed", "0", "--output-dir", str(workdir),
             "--summary-json", str(summary)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip
    finally:
        drain.kill()
        drain.wait()
    return float(json.loads(summary.read_text())["pace"]["achieved_rate"])


@dataclass
class PipelineRun:
    transport: str
    trades: int
    seconds: float
    producer_rate: float  # trades / producer process wall time (includes its start-up)

    @property
    def trades_per_s(self) -> float:
        return self.trades / self.seconds


def durable_at_ns(path: Path, table: str, rows: int) -> int:
    """time_ns of the first valid checkpoint at which ``table`` held ``rows`` rows."""
    with h5py.File(path, "r", swmr=True) as f:
        ds = f[CHECKPOINTS]
        tables = json.loads(ds.attrs["tables"])
        column = tables.index(table)
        for record in ds[:]:
            if valid_checkpoint(record) and int(record["rows"][column]) >= rows:
                return int(record["time_ns"])
    raise AssertionError(f"no checkpoint of {path} holds {rows} {table} rows")


def run_pipeline(
    transport: str, recording: Path, n: int, workdir: Path, broker: Broker | None = None
) -> PipelineRun:
    """One producer -> processor run over ``transport`` (a key of ``ZMQ_FRAMING`` or "kafka");
    the Kafka row uses ``broker`` (or starts its own: its topics must be new to it)."""
    with ExitStack() as stack:
        if transport == "kafka":
            if broker is None:
                broker = stack.enter_context(
                    make_broker(log_path=workdir / "broker.log", folder=workdir / "broker")
                )
            producer_url = processor_url = broker.url + "?linger_ms=5"
        else:
            # The processor binds and the producer connects: no reconnect backoff of a
            # processor that started first delays the first trades (up to ~0.8 s otherwise).
            processor_url = f"zmq+tcp://127.0.0.1:{free_tcp_port()}?pattern=pushpull&bind=subscriber"
            producer_url = processor_url + ZMQ_FRAMING[transport][0]
        output = workdir / f"{transport}.h5"
        summary = workdir / f"{transport}-producer.json"
        processor = subprocess.Popen(
            [*HARNESS, "process", "candles", "--transport", processor_url, "--output",
             str(output), "--flush-interval", str(FLUSH_INTERVAL_S), "--end-after-producers",
             "1", "--idle-exit", "60", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=(workdir / f"{transport}-processor.log").open("wb"),
        )  # fmt: skip
        time.sleep(1.0)  # connected / assigned before the first publish
        started = time.monotonic()
        subprocess.run(
            [*HARNESS, "produce", "binance", "--transport", producer_url, "--source", "replay",
             "--recording", str(recording), "--speed", "0", "--output-dir", str(workdir),
             "--summary-json", str(summary)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip
        producer_seconds = time.monotonic() - started
        assert processor.wait(600) == 0, (workdir / f"{transport}-processor.log").read_text()
    with h5py.File(output, "r", swmr=True) as f:
        first_publish = int(np.min(f["trades/table"]["publish_time_ns"]))
        stored = len(f["trades/table"])
    assert stored == n, f"{transport}: {stored} of {n} trades stored"
    seconds = (durable_at_ns(output, "trades", n) - first_publish) / 1e9
    return PipelineRun(transport, n, seconds, n / producer_seconds)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trade_recording(tmp_path_factory.mktemp("rec") / "trades.jsonl.gz", N_TRADES)


@pytest.mark.slow
@pytest.mark.parametrize("transport", [*ZMQ_FRAMING, "kafka"])
def test_pipeline_end_to_end(benchmark, transport: str, recording: Path, tmp_path: Path) -> None:
    runs: list[PipelineRun] = []

    def once() -> None:
        workdir = Path(tempfile.mkdtemp(dir=tmp_path))
        runs.append(run_pipeline(transport, recording, N_TRADES, workdir))

    benchmark.pedantic(once, rounds=1, iterations=1)
    best = max(runs, key=lambda r: r.trades_per_s)
    benchmark.extra_info["trades_per_s"] = round(best.trades_per_s)
    benchmark.extra_info["producer_trades_per_s"] = round(best.producer_rate)
    print(f"\n{transport}: {best.trades_per_s:,.0f} trades/s end to end "
          f"({N_TRADES:,} trades in {best.seconds:.2f} s)")  # fmt: skip


def profile_pipeline(n: int, folder: Path, transport: str) -> None:
    """One pipeline row with every ``harness`` process profiled into ``folder`` (cProfile,
    ``HARNESS_PROFILE``); ``harness profile summarize FOLDER`` reads them."""
    os.environ["HARNESS_PROFILE"] = str(folder.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        recording_path = write_trade_recording(work / "trades.jsonl.gz", n)
        r = run_pipeline(transport, recording_path, n, work)
    print(f"{transport}: {r.trades_per_s:,.0f} trades/s end to end, profiles in {folder}")


def main() -> None:
    args = sys.argv[1:]
    if "--profile" in args:  # test_bench_pipeline.py N --profile DIR [TRANSPORT]
        at = args.index("--profile")
        transport = args[at + 2] if len(args) > at + 2 else "zmq"
        profile_pipeline(int(args[0]), Path(args[at + 1]), transport)
        return
    n = int(args[0]) if args else N_TRADES
    rows: list[tuple[str, int, float, float | None, str]] = []  # name, msgs, s, producer/s, ratio

    def step(what: str) -> None:
        print(f"... {what}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        step(f"writing a {n:,}-trade recording")
        recording_path = write_trade_recording(work / "trades.jsonl.gz", n)
        message = pipeline_message(recording_path)

        def pipeline(transport: str, broker: Broker | None = None,
                     run_dir: Path | None = None) -> PipelineRun:
            step(f"pipeline over {transport}")
            run_dir = run_dir or work / transport
            run_dir.mkdir(parents=True)
            return run_pipeline(transport, recording_path, n, run_dir, broker)

        zmq_raws: list[float] = []
        zmq_runs: dict[str, list[PipelineRun]] = {transport: [] for transport in ZMQ_FRAMING}
        for round_no in range(1, ZMQ_ROUNDS + 1):
            for when in ("before", "after"):
                if when == "after":
                    for transport, (_options, name) in ZMQ_FRAMING.items():
                        r = pipeline(transport, run_dir=work / f"{transport}-{round_no}")
                        zmq_runs[transport].append(r)
                        rows.append((f"{name} {round_no}", n, r.seconds, r.producer_rate, ""))
                step(f"raw pyzmq loop, round {round_no} {when} the pipelines")
                zmq_raws.append(raw_zmq(message.frame, n))
                rows.append((f"raw zmq PUSH/PULL {round_no} {when} ({len(message.frame)} B)", n,
                             n / zmq_raws[-1], None, ""))  # fmt: skip
        raw_mean = mean(zmq_raws)
        rows.append(("raw zmq PUSH/PULL mean", n, n / raw_mean, None, ""))
        for transport, (_options, name) in ZMQ_FRAMING.items():
            rate = mean([r.trades_per_s for r in zmq_runs[transport]])
            producer_rate = mean([r.producer_rate for r in zmq_runs[transport]])
            rows.append((f"{name} mean", n, n / rate, producer_rate,
                         f"{rate / raw_mean:.3f} x raw"))  # fmt: skip
        kafka_raws: list[float] = []
        kafka_pipelines: list[float] = []
        for round_no in range(1, KAFKA_ROUNDS + 1):
            step(f"Kafka round {round_no} of {KAFKA_ROUNDS}: starting a fresh embedded broker")
            folder = work / f"kafka-{round_no}"
            with make_broker(log_path=folder / "broker.log", folder=folder / "broker") as broker:
                step("warming the broker up (a short raw loop, not reported)")
                raw_kafka(broker, message, min(n, max(5_000, n // 10)))
                for when in ("before", "after"):
                    if when == "after":
                        r = pipeline("kafka", broker, folder / "pipeline")
                        kafka_pipelines.append(r.trades_per_s)
                        rows.append((f"pipeline kafka-python {round_no}, {broker.label}", n,
                                     r.seconds, r.producer_rate, ""))  # fmt: skip
                    step(f"raw kafka-python loop, {when} the pipeline")
                    kafka_raws.append(raw_kafka(broker, message, n))
                    rows.append((f"raw kafka-python {round_no} {when}, {broker.label}", n,
                                 n / kafka_raws[-1], None, ""))  # fmt: skip
        ratio = mean(kafka_pipelines) / mean(kafka_raws)
        rows.append((f"pipeline kafka-python mean, {broker.label}", n,
                     n / mean(kafka_pipelines), None, f"{ratio:.2f} x raw"))  # fmt: skip
        step("producer alone")
        rate = producer_alone(recording_path, work)
        rows.append(("producer alone (to a bare PULL socket)", n, n / rate, None, ""))
        passes = []
        for pass_no in range(1, PROCESSOR_PASSES + 1):
            step(f"processor alone, pass {pass_no} of {PROCESSOR_PASSES}")
            (folder := work / f"processor-{pass_no}").mkdir()
            passes.append(processor_alone(recording_path, folder))
        trades, seconds = min(passes, key=lambda p: p[1])
        rows.append((f"processor alone, one core (best of {PROCESSOR_PASSES})", trades, seconds,
                     None, ""))  # fmt: skip
    print(f"{n:,} trades, {time.strftime('%Y-%m-%d %H:%M')}, {CODEC} codec, "
          f"{message.record_bytes} B Kafka records; ratios compare this run only")  # fmt: skip
    print(f"{'row':46} {'msgs':>9} {'seconds':>7} {'msg/s':>9} {'producer/s':>10}  ratio")
    for name, msgs, secs, producer, ratio in rows:
        shown = f"{producer:>10,.0f}" if producer else f"{'':>10}"
        print(f"{name:46} {msgs:>9,} {secs:>7.2f} {msgs / secs:>9,.0f} {shown}  {ratio}".rstrip())


if __name__ == "__main__":
    main()
