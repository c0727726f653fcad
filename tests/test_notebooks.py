"""The notebooks run top to bottom on freshly generated data, in a real Jupyter kernel.

Data: the pipeline over ZeroMQ on synthetic input (``harness run``, the README's command; or,
with ``HARNESS_NOTEBOOK_DATA=compose`` or before ``run`` existed, the application services of
compose/zmq.yml started as local processes: the same stage commands),
and a tiny real ``harness bench`` run. Parameters are injected by replacing the cell tagged
``parameters``. ``HARNESS_UPDATE_DOCS_IMG=1`` also writes each notebook's figure (the cell
tagged ``readme-figure``) to docs/img/<notebook>.png for the README.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest

from harness.cli import build_parser
from harness.compose_check import load_project, local_endpoints, run_locally
from transports.embedded_broker import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DOCS_IMG = ROOT / "docs" / "img"
NAMES = ("market", "sentiment", "transport_comparison")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY_WORKLOAD = """\
name: notebook-smoke
description: two rates, two transports, one second each (exercises the notebook, not a result)
transports: [kafka-python, zmq-pushpull]
payload: binance
kafka: {acks: all, linger_ms: 5}
warmup_s: 0.5
duration_s: 1
drain_timeout_s: 2
scenarios:
  - {name: r500, rate: 500}
  - {name: r2000, rate: 2000}
"""


def _subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """The venv's python3 kernel; installed into the venv if missing (jupyter_client then runs
    it with this interpreter, so the kernel imports the project)."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        from ipykernel.kernelspec import install

        install(prefix=sys.prefix)
    return "python3"


@pytest.fixture(scope="module")
def pipeline_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """market.h5 and sentiment.h5 from ~8 s of the synthetic pipeline over ZeroMQ."""
    out = tmp_path_factory.mktemp("pipeline")
    if "run" in _subcommands() and os.environ.get("HARNESS_NOTEBOOK_DATA") != "compose":
        cmd = [sys.executable, "-m", "harness.cli", "run", "--transport", "zmq", "--source",
               "synthetic", "--duration", "8", "--output-dir", str(out)]
        done = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        project = load_project(ROOT / "compose" / "zmq.yml",
                               env={"HARNESS_SOURCE": "synthetic",
                                    "BINANCE_SYNTHETIC_RATE": "100",
                                    "TWITTER_SYNTHETIC_RATE": "20"})
        (out / "dead-letters").mkdir()
        for name in ("candles-processor", "sentiment-processor"):
            project.services[name]["environment"]["HARNESS_IDLE_EXIT"] = "3"
        codes = run_locally(
            project,
            [(("candles-processor", "sentiment-processor"), 30.0),
             (("binance-producer", "twitter-producer"), 8.0)],
            local_endpoints(project, {}, free_tcp_port), {"/output": out}, out, settle_s=0.5)
        logs = "\n".join((out / f"{n}.log").read_text()[-2000:] for n in codes)
        assert set(codes.values()) == {0}, (codes, logs)
    found = {name: sorted(out.rglob(name)) for name in ("market.h5", "sentiment.h5")}
    assert all(len(paths) == 1 for paths in found.values()), found
    folder = found["market.h5"][0].parent  # harness run writes <output-dir>/<transport>/
    assert found["sentiment.h5"][0].parent == folder
    return folder


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) ``harness bench`` run folder: Kafka (embedded broker) and ZeroMQ."""
    work = tmp_path_factory.mktemp("bench")
    workload = work / "notebook-smoke.yaml"
    workload.write_text(TINY_WORKLOAD)
    cmd = [sys.executable, "-m", "harness.cli", "bench", str(workload),
           "--results-dir", str(work / "results")]
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_KAFKA_BOOTSTRAP"}
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "results"


def execute(name: str, parameters: str, kernel: str) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = textwrap.dedent(parameters).strip()
    client = NotebookClient(book, timeout=180, kernel_name=kernel,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError with the cell and traceback on failure
    return book


def figure_png(book: nbformat.NotebookNode) -> bytes:
    cells = [c for c in book.cells if "readme-figure" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    images = [o["data"]["image/png"] for o in cells[0].get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the figure cell produced no image"
    png = base64.b64decode(images[0])
    assert png.startswith(PNG_MAGIC)
    if os.environ.get("HARNESS_UPDATE_DOCS_IMG") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / f"{book.metadata['harness_name']}.png").write_bytes(png)
    return png


def run_notebook(name: str, parameters: str, kernel: str) -> dict[str, Any]:
    book = execute(name, parameters, kernel)
    book.metadata["harness_name"] = name
    text = "\n".join(o.get("text", "") for c in book.cells for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")
    return {"png": figure_png(book), "text": text, "book": book}


# ------------------------------------------------------------------------------ static


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs_and_has_one_parameter_cell(name: str) -> None:
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [code[0]], "exactly one parameter cell, the first code cell"
    assert '"/' not in tagged[0].source, "default paths relative to notebooks/ (../output)"
    assert book.metadata["kernelspec"]["name"] == "python3"


# ------------------------------------------------------------------------------ executed


@pytest.mark.slow
def test_market_notebook_plots_candles_volume_and_trade_counts(
        pipeline_output: Path, kernel_name: str) -> None:
    result = run_notebook("market", f"""
        MARKET_H5 = "{pipeline_output / 'market.h5'}"
        SYMBOL = "btcusdt"
        WINDOW = "1s"
        LAST_N = 120
    """, kernel_name)
    assert "candles for btcusdt" in result["text"]


@pytest.mark.slow
def test_sentiment_notebook_joins_tweets_with_price_windows(
        pipeline_output: Path, kernel_name: str) -> None:
    import h5py

    with h5py.File(pipeline_output / "sentiment.h5", "r") as f:  # harness run also has 1 s
        window = "1s" if "sentiment_1s" in f else "1m"
    result = run_notebook("sentiment", f"""
        SENTIMENT_H5 = "{pipeline_output / 'sentiment.h5'}"
        MARKET_H5 = "{pipeline_output / 'market.h5'}"
        WINDOW = "{window}"
        COINS = ["BTC", "ETH"]
        QUOTE = "USDT"
    """, kernel_name)
    assert "coins in the file" in result["text"]


@pytest.mark.slow
@pytest.mark.kafka
def test_transport_comparison_notebook_reads_a_real_bench_run(
        bench_results: Path, kernel_name: str) -> None:
    result = run_notebook("transport_comparison", f"""
        RESULTS_DIR = "{bench_results}"
        RUN = ""
    """, kernel_name)
    assert "4 trials, 4 ok" in result["text"]
