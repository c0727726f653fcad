"""The notebooks run top to bottom, exactly as committed, on the output of real short runs.

They are executed unmodified in a real Jupyter kernel from a copy of the repository's layout:
``notebooks/`` beside ``output/runs/<time>/zmq/{market,sentiment}.h5`` with ``output/latest``
pointing at that run (what ``harness run``/``harness demo`` leave) and ``results/<run>/`` from a
tiny real ``harness bench``. The data: ~8 s of the synthetic pipeline over ZeroMQ (``harness run``;
with ``HARNESS_NOTEBOOK_DATA=compose`` the application services of compose/zmq.yml started as
local processes instead) -- a short run, so the notebooks' short-run handling is what runs -- and
a bench with ONE offered rate, the case whose panels used to come out empty.
``HARNESS_UPDATE_DOCS_IMG=1`` also writes each notebook's figure (the cell tagged
``readme-figure``) to docs/img/<notebook>.png for the README.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from compose_check import load_project, local_endpoints, run_locally
from hdf5_helpers import short_run

from transports.brokers import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DOCS_IMG = ROOT / "docs" / "img"
NAMES = ("market", "sentiment", "transport_comparison")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_NAME = "20260101-000000"

ONE_RATE_WORKLOAD = """\
name: notebook-smoke
description: one rate, two transports, one second each (exercises the notebook, not a result)
transports: [kafka-python, zmq-pushpull]
payload: binance
kafka: {acks: all, linger_ms: 5}
warmup_s: 0.5
duration_s: 1
drain_timeout_s: 2
scenarios:
  - {name: r1000, rate: 1000}
"""


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
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's layout the notebooks expect: notebooks/, output/, results/."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    return root


def _pipeline_run(scratch: Path) -> Path:
    """The folder holding market.h5 and sentiment.h5 of ~8 s of the pipeline over ZeroMQ."""
    if os.environ.get("HARNESS_NOTEBOOK_DATA") != "compose":
        return short_run(scratch, 8)
    else:
        project = load_project(ROOT / "compose" / "zmq.yml",
                               env={"HARNESS_SOURCE": "synthetic",
                                    "BINANCE_SYNTHETIC_RATE": "100",
                                    "TWITTER_SYNTHETIC_RATE": "20"})
        (scratch / "dead-letters").mkdir()
        for name in ("candles-processor", "sentiment-processor"):
            project.services[name]["environment"]["HARNESS_IDLE_EXIT"] = "3"
        codes = run_locally(
            project,
            [(("candles-processor", "sentiment-processor"), 30.0),
             (("binance-producer", "twitter-producer"), 8.0)],
            local_endpoints(project, {}, free_tcp_port), {"/output": scratch}, scratch,
            settle_s=0.5)
        logs = "\n".join((scratch / f"{n}.log").read_text()[-2000:] for n in codes)
        assert set(codes.values()) == {0}, (codes, logs)
    found = {name: sorted(scratch.rglob(name)) for name in ("market.h5", "sentiment.h5")}
    assert all(len(paths) == 1 for paths in found.values()), found
    folder = found["market.h5"][0].parent
    assert found["sentiment.h5"][0].parent == folder
    return folder


@pytest.fixture(scope="module")
def pipeline_output(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """output/runs/<time>/zmq/ from a real run, and output/latest -> runs/<time>."""
    folder = _pipeline_run(tmp_path_factory.mktemp("pipeline"))
    run = tree / "output" / "runs" / RUN_NAME
    run.mkdir(parents=True)
    shutil.copytree(folder, run / "zmq")
    (tree / "output" / "latest").symlink_to(Path("runs") / RUN_NAME, target_is_directory=True)
    return run / "zmq"


@pytest.fixture(scope="module")
def bench_results(tree: Path) -> Path:
    """results/<time>-notebook-smoke/ from a real (tiny) ``harness bench``: Kafka and ZeroMQ."""
    work = tree / "bench-work"
    work.mkdir()
    workload = work / "notebook-smoke.yaml"
    workload.write_text(ONE_RATE_WORKLOAD)
    cmd = [sys.executable, "-m", "harness.cli", "bench", str(workload),
           "--results-dir", str(tree / "results")]
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_KAFKA_BOOTSTRAP"}
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return tree / "results"


def execute(tree: Path, name: str, kernel: str) -> nbformat.NotebookNode:
    """Run ``tree/notebooks/<name>.ipynb`` as committed, from its own folder."""
    from nbclient import NotebookClient

    path = tree / "notebooks" / f"{name}.ipynb"
    assert path.read_bytes() == (NOTEBOOKS / f"{name}.ipynb").read_bytes()  # unmodified
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=180, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
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


def run_notebook(tree: Path, name: str, kernel: str) -> dict[str, Any]:
    book = execute(tree, name, kernel)
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
    if name != "transport_comparison":  # one variable chooses the transport, at the top
        assert tagged[0].source.splitlines()[1].startswith('TRANSPORT = "zmq"')
    assert book.metadata["kernelspec"]["name"] == "python3"


# ------------------------------------------------------------------------------ executed


@pytest.mark.slow
def test_market_notebook_picks_a_window_with_candles_on_a_short_run(
        tree: Path, pipeline_output: Path, kernel_name: str) -> None:
    result = run_notebook(tree, "market", kernel_name)
    assert "candles for BTCUSDT" in result["text"]
    assert "showing 1s" in result["text"]  # 8 s hold one or two 1-minute candles: too few
    assert str(pipeline_output / "market.h5") in result["text"]  # read through output/latest


@pytest.mark.slow
def test_sentiment_notebook_joins_tweets_with_price_windows(
        tree: Path, pipeline_output: Path, kernel_name: str) -> None:
    result = run_notebook(tree, "sentiment", kernel_name)
    assert "coins in the file" in result["text"] and "showing 1s" in result["text"]


@pytest.mark.slow
@pytest.mark.kafka
def test_transport_comparison_notebook_reads_a_real_bench_run_with_one_rate(
        tree: Path, bench_results: Path, kernel_name: str) -> None:
    result = run_notebook(tree, "transport_comparison", kernel_name)
    assert "2 trials, 2 ok" in result["text"]
    assert "one offered rate (1,000 msg/s)" in result["text"]
