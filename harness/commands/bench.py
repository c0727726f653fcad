"""``harness bench [WORKLOAD]``: Kafka vs ZeroMQ end to end; ``harness bench compare A B``.

A run writes results/<timestamp>-<workload>/ with results.h5, PNG plots and report.md (every
column), prints tables that fit 100 columns and a verdict computed from the figures. Ctrl-C
stops the current trial and keeps everything measured.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.redaction import redact_argv
from core.settings import Setting, add_settings, folder_path, redacted, resolve
from transports.brokers import ENGINES

SETTINGS = (
    Setting("transports", "", "comma-separated transport names to run (default: the workload's)"),
    Setting("results_dir", "results", "folder that receives one sub-folder per run",
            parse=folder_path),
    Setting("kafka_bootstrap", "",
            "host:port of an external Kafka broker (default: start an embedded one)"),
    Setting("kafka_engine", "auto", "embedded broker: apache (Apache Kafka), tansu (in memory) "
            "or auto (Apache Kafka if Java >= 17 runs)", choices=ENGINES,
            env="HARNESS_KAFKA_ENGINE"),
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="end-to-end Kafka vs ZeroMQ benchmark (or: bench compare RUN_A RUN_B)",
        description="Run a workload (a shipped name such as default, max-throughput, or a YAML "
        "path) on every transport it lists; or 'compare RUN_A RUN_B' to compare two runs.",
    )
    parser.add_argument("target", nargs="*", metavar="WORKLOAD | compare A B",
                        help="workload name or file (default: default)")
    add_settings(parser, SETTINGS)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    target: list[str] = list(args.target)
    if target and target[0] == "compare":
        if len(target) != 3:
            raise UserError("usage: harness bench compare RUN_A RUN_B (run folders or .h5 files)")
        return compare(target[1], target[2])
    if len(target) > 1:
        raise UserError(f"expected one workload, got {' '.join(target)}")
    settings = resolve(args, SETTINGS)
    return run(target[0] if target else "default", settings)


def _open_run(path_text: str) -> Any:
    from harness.bench.results import read_results

    path = Path(path_text)
    file = path / "results.h5" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"no results file at {file}")
    try:
        return read_results(file)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{file}: not a bench results file ({exc})") from None


def compare(a: str, b: str) -> int:
    from harness.bench.compare import compare_runs, compare_sentences
    from harness.bench.report import print_tables
    from harness.text_table import wrap

    run_a, run_b = _open_run(a), _open_run(b)
    print_tables(compare_runs(run_a, run_b))
    print(wrap("\n".join(["Verdict (B against A):", *compare_sentences(run_a, run_b)])))
    return 0


def run(workload_name: str, settings: dict[str, Any]) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.bench.report import build_tables, print_tables, verdict_lines, write_report
    from harness.bench.results import read_results, run_metadata, write_results
    from harness.bench.suite import SuiteResult, run_workload
    from harness.bench.workload import load_workload
    from harness.text_table import wrap

    workload = load_workload(workload_name)
    only = tuple(t.strip() for t in str(settings["transports"]).split(",") if t.strip())
    known = {t.name for s in workload.scenarios for t in s.transports}
    unknown = [t for t in only if t not in known]
    if unknown:
        raise UserError(f"transport(s) {', '.join(unknown)} not in workload {workload.name!r}; "
                        f"it has: {', '.join(sorted(known))}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(settings["results_dir"]) / f"{stamp}-{workload.name}"
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    results_file = out_dir / "results.h5"
    command = "harness bench " + " ".join(shlex.quote(a) for a in redact_argv(sys.argv[2:]))
    metadata = run_metadata(workload, {**redacted(settings, SETTINGS), "command": command})
    console = Console(stderr=True)
    suite = SuiteResult()
    stop = threading.Event()
    console.print(f"[bold]harness bench[/] {workload.name}: {len(workload.scenarios)} "
                  f"scenario(s) -> {out_dir}")
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        current: dict[str, Any] = {}

        def on_start(scenario: Any, spec: Any, rate: float, phase: str) -> None:
            label = f"{scenario.name} | {spec.name} @ {f'{rate:,.0f}/s' if rate else 'max'}"
            current["task"] = progress.add_task(label, total=1.0)
            current["label"] = label

        def on_progress(line: str, fraction: float) -> None:
            if "task" in current:
                progress.update(current["task"], completed=fraction,
                                description=f"{current['label']} | {line.split(': ', 1)[-1]}")

        def on_done(result: Any) -> None:
            s = result.summary
            verdict = result.status if result.status != "ok" else (
                f"p99 {s.get('e2e_p99', float('nan')):.2f} ms, lost {s.get('lost', 0):,}"
                + (", sustainable" if result.phase == "sweep" and result.sustainable else ""))
            progress.update(current["task"], completed=1.0,
                            description=f"{current['label']} | {verdict}")
            write_results(results_file, workload, suite, metadata)

        try:
            run_workload(workload, out_dir / "logs", only, str(settings["kafka_bootstrap"]),
                         on_start, on_done, on_progress, stop, suite,
                         kafka_engine=settings["kafka_engine"])
        except KeyboardInterrupt:
            suite.interrupted = True
    if stop.is_set():
        suite.interrupted = True
    write_results(results_file, workload, suite, metadata)
    data = read_results(results_file)
    print_tables(build_tables(data))
    print(wrap("\n".join(["Verdict:", *verdict_lines(data)])))
    report = write_report(data, out_dir, command)
    console.print(f"results: {results_file}\nreport:  {report}")
    if suite.interrupted:
        console.print("[yellow]interrupted: partial results kept[/]")
        return 130
    return 0
