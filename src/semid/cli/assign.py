"""``semid ids assign``: semantic IDs for new items of a trained run, without retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from semid.assign import assign_from_run


def assign_command(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    new_items: Annotated[
        Path, typer.Argument(help="CSV of new items: item_id, title[, year, genres, tags, text].")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Write the updated model folder here (default: replace RUN_DIR/model)."),
    ] = None,
) -> None:
    """Give semantic IDs to new items without retraining; they are retrievable at once."""
    result = assign_from_run(run_dir, new_items, out)
    console = Console()
    console.print(
        f"assigned {result.assigned.height} item(s), rejected {result.rejected.height}; "
        f"model folder: {result.folder}"
    )
    for row in result.assigned.iter_rows(named=True):
        ids = " ".join(str(v) for k, v in row.items() if k not in ("item_id", "title"))
        console.print(f"  {row['item_id']}  {ids}  {row['title']}", highlight=False)
    for row in result.rejected.iter_rows(named=True):
        console.print(
            f"  [red]not assigned[/red] {row['item_id']} {row['title']}: {row['reason']}",
            highlight=False,
        )
