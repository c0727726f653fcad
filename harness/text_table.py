"""Plain-text tables that fit a terminal: columns beyond the width wrap into further blocks.

A table too wide for ``width`` columns is cut into blocks of whole columns, each repeating the
key columns (transport, scenario...) on the left, so no cell is ever truncated or wrapped
mid-number. ``width=None`` keeps one block: the full table, for report files.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

TERMINAL_WIDTH = 100
GAP = "  "


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    width: int | None = TERMINAL_WIDTH,
    keys: int = 1,
    title: str = "",
    note: str = "",
) -> str:
    """The table as text: key columns left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    blocks = _blocks(widths, keys, width)
    out = []
    if title:
        out.append(title)
    for n, columns in enumerate(blocks):
        if n:
            out.append("")
        shown = [*range(min(keys, len(widths))), *columns]
        for r, row in enumerate(cells):
            line = GAP.join(
                row[i].ljust(widths[i]) if i < keys else row[i].rjust(widths[i]) for i in shown
            ).rstrip()
            out.append(line)
            if r == 0:
                out.append(GAP.join("-" * widths[i] for i in shown))
    if note:
        out.append(wrap(note, width))
    return "\n".join(out)


def _blocks(widths: Sequence[int], keys: int, width: int | None) -> list[list[int]]:
    rest = list(range(keys, len(widths)))
    if width is None or not rest:
        return [rest]
    key_width = sum(widths[:keys]) + len(GAP) * max(keys - 1, 0)
    blocks: list[list[int]] = [[]]
    used = key_width
    for i in rest:
        extra = len(GAP) + widths[i]
        if blocks[-1] and used + extra > width:
            blocks.append([])
            used = key_width
        blocks[-1].append(i)
        used += extra
    return blocks


def wrap(text: str, width: int | None = TERMINAL_WIDTH) -> str:
    """Paragraphs wrapped to ``width``; lines starting with spaces keep their indent."""
    if width is None:
        return text
    lines = []
    for line in text.splitlines() or [""]:
        indent = line[: len(line) - len(line.lstrip())]
        lines.append(textwrap.fill(line.strip(), width, initial_indent=indent,
                                   subsequent_indent=indent + ("  " if indent else ""),
                                   break_long_words=False, break_on_hyphens=False)
                     if line.strip() else "")
    return "\n".join(lines)
