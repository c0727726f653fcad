"""The import directions between top-level packages: layers without cycles.

``core`` (errors, dead letters, settings, redaction, the recording format) is the bottom;
transports, sinks and processors (pure logic) sit on it; stages wire consume -> process -> sink
-> commit; producers feed transports; the emulators are test doubles of outside services and
share no code with the producers they stand in for; ``harness`` (CLI) is on top. Imports are read
with ``ast``, so a module named in a string (``importlib.import_module("x.y")`` or a
``"x.y:Class"`` registry entry) counts like an ``import`` statement.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Which top-level packages each one may import (itself always).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "transports": {"core"},
    "processors": {"core"},
    # A sink stores the transport's positions in the same commit as the rows (exactly-once).
    "sinks": {"core", "transports"},
    "stages": {"core", "transports", "sinks", "processors"},
    # Depth sync keeps a local order book (processors.order_book) to check the stream it sends.
    "producers": {"core", "transports", "processors"},
    "emulators": {"core"},
    "harness": {"core", "transports", "sinks", "processors", "stages", "producers", "emulators"},
    "benchmarks": {"core", "transports", "sinks", "processors", "stages", "producers",
                   "emulators", "harness"},
    "tests": set(),  # filled below: tests may import everything
}
ALLOWED["tests"] = set(ALLOWED) - {"tests"}

_MODULE_STRING = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+(:[A-Za-z_]\w*)?")


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(tree: ast.AST) -> Iterator[str]:
    """Every absolute module an ``import``, a ``from ... import`` or a module string names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if _MODULE_STRING.fullmatch(text):
                dotted = text.split(":", 1)[0]
                if dotted.split(".")[0] in ALLOWED and _is_module(dotted):
                    yield dotted


@functools.cache
def import_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for module in imported_modules(tree):
                target = module.split(".")[0]
                if target in ALLOWED and target != package:
                    where = f"{path.relative_to(ROOT)} imports {module}"
                    edges.setdefault((package, target), []).append(where)
    return edges


def forbidden(package: str) -> list[str]:
    return [
        where
        for (source, target), wheres in import_edges().items()
        if source == package and target not in ALLOWED[package]
        for where in wheres
    ]


@pytest.mark.parametrize("package", list(ALLOWED))
def test_package_imports_only_the_layers_below(package: str) -> None:
    """For ``emulators`` this also means they share no code with the producers they stand in
    for: a test double running the producer's parser would agree with its bugs."""
    assert forbidden(package) == []


def test_the_allowed_directions_have_no_cycle() -> None:
    """The table itself is a partial order, so obeying it means no package cycle."""
    seen: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, " -> ".join((*path, package))
        if package in seen:
            return
        for below in ALLOWED[package]:
            visit(below, (*path, package))
        seen.add(package)

    for package in ALLOWED:
        visit(package, ())


def test_a_module_named_in_a_string_counts_as_an_import() -> None:
    tree = ast.parse('import importlib\nimportlib.import_module("harness.cli")\n'
                     'REGISTRY = {"kafka": "transports.zmq:ZmqTransport"}\nTOPIC = "harness.ready"')
    assert set(imported_modules(tree)) == {"importlib", "harness.cli", "transports.zmq"}
