"""``semid data`` (download, import, info) and ``semid queries`` (template) commands."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from semid.cli.common import data_config
from semid.errors import DataError

data_app = typer.Typer(help="Load, download, import and inspect datasets.", no_args_is_help=True)
queries_app = typer.Typer(help="Make search-query files.", no_args_is_help=True)
console = Console()


@queries_app.callback()
def _queries() -> None:
    """Make search-query files (JSONL, one {"query", "movieId"} object per line)."""


@data_app.command()
def download(
    name: Annotated[
        str, typer.Argument(help="ml-latest-small, ml-100k, ml-1m, ml-10m, ml-20m or ml-25m.")
    ],
    dest: Annotated[
        Path | None,
        typer.Option(
            help="Folder to create (default: ~/.cache/semid/datasets/NAME, where "
            "data.dataset=NAME finds it)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Download again even if present.")] = False,
) -> None:
    """Download a MovieLens dataset from GroupLens (atomic: nothing half-written is left)."""
    from semid.data.download import download_movielens

    folder = download_movielens(name, dest, force=force)
    console.print(f"{name}: {folder}")


@data_app.command("import")
def import_(
    items: Annotated[Path, typer.Argument(help="Items table (.csv, .tsv or .parquet).")],
    interactions: Annotated[
        Path, typer.Argument(help="Interactions table (.csv, .tsv or .parquet).")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder to write the dataset to (new or a previous import).")
    ],
    queries: Annotated[
        Path | None, typer.Option(help='JSONL query file {"query", "item_id"} to check and copy.')
    ] = None,
    max_tags: Annotated[int, typer.Option(help="Tags kept per item.")] = 5,
) -> None:
    """Import a catalogue in the generic schema (docs/data-format.md).

    Every problem is reported with its file, row and column. The result loads with
    ``--set data.dataset=custom --set data.path=OUT``.
    """
    from semid.data.importer import import_catalogue
    from semid.io import atomic_dir

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "items.parquet").is_file():
        raise DataError(f"--out {out}: exists and is not a semid dataset folder; choose a new one")
    dataset = import_catalogue(items, interactions, queries, max_tags=max_tags)
    with atomic_dir(out) as tmp:
        dataset.save(tmp)
        if queries is not None:
            shutil.copyfile(queries, tmp / "queries.jsonl")
    users = dataset.interactions["user_id"].n_unique()
    console.print(
        f"{out}: {dataset.items.height:,} items, {users:,} users, "
        f"{dataset.interactions.height:,} interactions"
        + (f"; queries in {out / 'queries.jsonl'}" if queries is not None else "")
    )
    console.print(f"use it with: --set data.dataset=custom --set data.path={out}")


@data_app.command()
def info(
    dataset: Annotated[
        str, typer.Argument(help="Dataset name (ml-latest-small, ...) or a folder.")
    ] = "ml-latest-small",
    path: Annotated[Path | None, typer.Option(help="Folder of the dataset's files.")] = None,
) -> None:
    """Print catalogue and interaction statistics of a dataset (an item table alone, such as
    ML-25M's movies.csv, counts zero interactions)."""
    from semid.data import load_dataset
    from semid.data.movielens import detect_layout, resolve_path

    cfg = data_config(dataset, path)
    layout = detect_layout(resolve_path(cfg.dataset, cfg.path), items_only=True)
    data = load_dataset(cfg, items_only=True)
    items, inter = data.items, data.interactions
    per_user = inter.group_by("user_id").len()["len"]
    rated = inter["item_idx"].n_unique()
    table = Table(title=f"{layout.folder} ({layout.kind})", show_header=False)
    rows: list[tuple[str, str]] = [
        ("items", f"{items.height:,}"),
        ("items with interactions", f"{rated:,}"),
        ("users", f"{per_user.len():,}"),
        ("interactions", f"{inter.height:,}"),
    ]
    if per_user.len():
        density = inter.height / (per_user.len() * max(items.height, 1))
        rows += [
            ("interactions per user (min / median / max)",
             f"{cast(int, per_user.min())} / {cast(float, per_user.median()):.0f} / "
             f"{cast(int, per_user.max())}"),
            ("users with < 3 interactions", f"{(per_user < 3).sum():,}"),
            ("density", f"{density:.4%}"),
            ("time span", " .. ".join(
                dt.datetime.fromtimestamp(int(cast(int, t)), dt.timezone.utc).date().isoformat()
                for t in (inter["timestamp"].min(), inter["timestamp"].max()))),
        ]  # fmt: skip
    if inter["rating"].null_count() < inter.height:
        low, high = cast(float, inter["rating"].min()), cast(float, inter["rating"].max())
        rows.append(("ratings", f"{low} .. {high}"))
    years = items["year"].drop_nulls()
    if years.len():
        first, last = cast(int, years.min()), cast(int, years.max())
        rows.append(("years", f"{first} .. {last} ({items['year'].null_count()} "
                     "unknown)"))  # fmt: skip
    genres = items["genres"].explode().drop_nulls().value_counts(sort=True).head(6)
    if genres.height:
        rows.append(("top genres", ", ".join(f"{g} ({n})" for g, n in genres.iter_rows())))
    rows.append(("items with tags", f"{(items['tags'].list.len() > 0).sum():,}"))
    rows.append(("text example", items["text"][0]))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@queries_app.command()
def template(
    out: Annotated[Path, typer.Option(help="JSONL file to write.")],
    dataset: Annotated[str, typer.Option(help="Dataset name or folder.")] = "ml-latest-small",
    path: Annotated[Path | None, typer.Option(help="Folder of the dataset's files.")] = None,
    per_item: Annotated[int, typer.Option(help="Queries per item.")] = 10,
    title_share: Annotated[
        float, typer.Option(help="Share of queries that contain the title (--generic: at most).")
    ] = 0.2,
    max_items: Annotated[int | None, typer.Option(help="Only the N most interacted items.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    specific: Annotated[
        bool,
        typer.Option(
            "--specific/--generic",
            help="Specific: each query names the title or states attributes few items share.",
        ),
    ] = True,
    max_items_per_query: Annotated[
        int, typer.Option(help="Specific queries: items an attribute combination may match.")
    ] = 5,
) -> None:
    """Write template search queries for a dataset as JSONL, to inspect or edit.

    Use the edited file with ``semid run --queries FILE``.
    """
    from semid.data import load_dataset
    from semid.data.movielens import MOVIELENS_NAMES
    from semid.data.queries import TemplateQueryGenerator, write_query_file

    cfg = data_config(dataset, path, max_items=max_items)
    data = load_dataset(cfg)
    generator = TemplateQueryGenerator(
        title_share=title_share, specific=specific, max_items_per_query=max_items_per_query
    )
    queries = generator.generate(data.items, per_item, seed)
    id_key = "movieId" if cfg.dataset in MOVIELENS_NAMES else "item_id"
    n = write_query_file(out, queries, data.items, id_key=id_key)
    console.print(f"{out}: {n:,} queries for {data.items.height:,} items")
    for row in queries.head(5).iter_rows(named=True):
        console.print(f"  {row['query']!r} -> {data.items['title'][row['item_idx']]}")
