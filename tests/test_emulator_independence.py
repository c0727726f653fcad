"""The emulators are test doubles of Binance and Twitter: they must not share the producers' code.

An emulator that parsed frames with the producer's schema, or ran on its runtime, would agree
with the producer's bugs instead of catching them. What they may still take from ``producers/``
is listed here, each with its reason; the list is meant to shrink, never to grow.
"""

from __future__ import annotations

import ast
from pathlib import Path

EMULATORS = Path(__file__).resolve().parent.parent / "emulators"

#: Module -> why an emulator may import it.
ALLOWED = {
    # The recording file format (one module); moves to the bottom package core/recording.py.
    "producers.runtime.recording": "recording file format",
}


def producer_imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return {m for m in modules if m == "producers" or m.startswith("producers.")}


def test_emulators_import_no_producer_parser_or_runtime() -> None:
    files = sorted(EMULATORS.glob("*.py"))
    assert files
    found = {f.name: producer_imports(f) - set(ALLOWED) for f in files}
    assert not {name: mods for name, mods in found.items() if mods}, found


def test_allowed_list_is_still_needed() -> None:
    used = set().union(*(producer_imports(f) for f in EMULATORS.glob("*.py")))
    assert set(ALLOWED) <= used, f"drop from ALLOWED: {set(ALLOWED) - used}"
