"""Tables that stay readable at any console width (a log file gets rich's 80 columns).

rich shrinks a table wider than the console by cutting its cells ("recal…"). Here a table that
does not fit is split by columns instead: every part repeats the first (key) column and holds
as many further columns as fit, so every header and every cell is printed whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from semid.grid import Grid

# Width a column costs beyond its text: one space of padding on each side, plus the rule.
_COLUMN_OVERHEAD = 3
_MARKUP = re.compile(r"(\*\*|`)")
_WRAP = 24  # text with spaces may wrap onto lines of this many characters


def column_groups(widths: Sequence[int], budget: int) -> list[list[int]]:
    """Split columns 1.. into groups that fit ``budget`` characters beside column 0."""
    first = widths[0] + _COLUMN_OVERHEAD
    groups: list[list[int]] = []
    current: list[int] = []
    used = first
    for i, width in enumerate(widths[1:], start=1):
        cost = width + _COLUMN_OVERHEAD
        if current and used + cost > budget:
            groups.append(current)
            current, used = [], first
        current.append(i)
        used += cost
    if current or not groups:
        groups.append(current)
    return groups


def _needed(text: str, wrap: int = _WRAP) -> int:
    """Width a cell needs: all of it, or for text with spaces (it wraps) up to ``wrap``."""
    if " " not in text:
        return len(text)
    return max(max(len(word) for word in text.split()), min(len(text), wrap))


def _widths(header: Sequence[str], rows: Sequence[Sequence[str]], wrap: int) -> list[int]:
    return [
        max(_needed(str(text), wrap) for text in [header[i], *(row[i] for row in rows)])
        for i in range(len(header))
    ]


def fitted_tables(
    header: Sequence[str], rows: Sequence[Sequence[str]], width: int, title: str | None = None
) -> list[Table]:
    """``header`` and ``rows`` as one rich table, or as several when one would not fit.

    Text with spaces may wrap: to ``_WRAP`` characters first, to its longest word if that
    keeps the table whole; a table that does not fit even so is split by columns.
    """
    widths = _widths(header, rows, _WRAP)
    if len(column_groups(widths, width - 1)) > 1:
        narrow = _widths(header, rows, 0)
        if len(column_groups(narrow, width - 1)) == 1:
            widths = narrow
    tables = []
    for n, group in enumerate(column_groups(widths, width - 1)):
        columns = [0, *group]
        table = Table(title=title if n == 0 else None, box=box.SIMPLE_HEAD, title_justify="left")
        for i in columns:
            # text wraps at spaces; a word too long for the console folds; nothing is cut
            table.add_column(
                escape(str(header[i])), overflow="fold", min_width=min(widths[i], width // 2)
            )
        for row in rows:
            table.add_row(*(escape(str(row[i])) for i in columns))
        tables.append(table)
    return tables


def print_table(
    console: Console, header: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> None:
    """Print a table at the console's width, split by columns where needed."""
    for table in fitted_tables(header, [[str(v) for v in r] for r in rows], console.width, title):
        console.print(table)


def _cells(line: str) -> list[str]:
    return [_MARKUP.sub("", cell).strip() for cell in line.strip().strip("|").split("|")]


def print_markdown(console: Console, text: str) -> None:
    """Print Markdown, its tables through :func:`print_table` (never cut at narrow widths)."""
    prose: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and "---" in lines[i + 1]:
            if prose:
                console.print(Markdown("\n".join(prose)))
                prose = []
            header = _cells(lines[i])
            i += 2
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = _cells(lines[i])
                rows.append((cells + [""] * len(header))[: len(header)])
                i += 1
            print_table(console, header, rows)
            continue
        prose.append(lines[i])
        i += 1
    if any(line.strip() for line in prose):
        console.print(Markdown("\n".join(prose)))


def print_plan(
    grid: Grid,
    out_dir: Path,
    cache_dir: Path,
    only: list[str] | None = None,
    console: Console | None = None,
) -> None:
    """``semid grid --dry-run``: the cells with status and config, and the stages they share."""
    from semid.grid import (
        cell_status,
        describe_overrides,
        pipeline_stage_keys,
        select_cells,
        stage_sharing,
    )

    console = console or Console()
    cells = select_cells(grid.cells, only)
    rows = [[c.name, cell_status(out_dir, c), describe_overrides(grid, c)] for c in cells]
    title = f"grid {grid.name}: {len(cells)} cells -> {out_dir}"
    print_table(console, ["cell", "status", "config"], rows, title)
    keys = {cell.name: pipeline_stage_keys(cell.config) for cell in cells}
    sharing = [[stage, *counts] for stage, counts in stage_sharing(keys, cache_dir).items()]
    header = ["stage", "cells", "distinct", "already cached"]
    print_table(console, header, sharing, "stage folders (shared between cells)")


def print_gpu_hours(grid, only=None, console: Console | None = None) -> float:
    """``semid grid --dry-run``: the estimated generator GPU-hours; returns the total."""
    from semid.costs import gpu_hours_rows, gpu_tflops

    console = console or Console()
    rows, total, note = gpu_hours_rows(grid, only)
    header = [
        "cell",
        "parameters",
        "train examples/epoch",
        "examples seen",
        "GPU-hours",
        "reference CPU-hours",
    ]
    title = f"ESTIMATED generator GPU-hours at {gpu_tflops():g} TFLOP/s sustained"
    print_table(console, header, rows, title)
    console.print(note)
    return total
