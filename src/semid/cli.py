"""Command-line interface: one command per pipeline stage, plus ``run``, ``evaluate``, ``report``.

Every command that takes a run config accepts ``--preset``, ``--config FILE`` and repeated
``--set KEY=VALUE`` overrides (e.g. ``--set train.epochs=5``); the resolved config is saved as
``config.json`` in the run directory.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from semid.errors import SemidError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    help="semid: semantic IDs for joint generative search and recommendation.\n\n"
    "Pipeline: data -> embeddings -> ids -> train -> evaluate -> report. "
    "`semid run` does all of it, reusing every stage whose inputs did not change.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

PresetOpt = Annotated[str, typer.Option(help="Shipped preset: default, smoke, full, ...")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML/JSON config file (over the preset).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override KEY=VALUE, e.g. train.epochs=5 (repeatable)."),
]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """semid command line."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    for noisy in ("httpx", "sentence_transformers", "transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(
    preset: str,
    config: Path | None,
    overrides: list[str] | None,
    shortcuts: dict[str, object],
):
    from semid.config import load_config

    sets = list(overrides or [])
    for key, value in shortcuts.items():
        if value is not None:
            sets.insert(0, f"{key}={value}")
    return load_config(preset, config, sets)


@app.command()
def run(
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    embedding: Annotated[
        str | None,
        typer.Option(help="Embedding space: content, search, rec, separate, fused-concat, "
                     "fused-svd, multitask."),
    ] = None,
    quantizer: Annotated[str | None, typer.Option(help="Quantizer name (see `semid ids`).")] = None,
    encoder: Annotated[str | None, typer.Option(help="minilm, mpnet or a model folder.")] = None,
    queries: Annotated[
        Path | None, typer.Option(help='JSONL query file {"query", "movieId"} to use.')
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed.")] = None,
    name: Annotated[str | None, typer.Option(help="Run directory name.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    cache_dir: Annotated[
        Path | None, typer.Option(help="Stage cache (default: RUNS_DIR/.cache).")
    ] = None,
    force: Annotated[
        list[str] | None, typer.Option(help="Recompute this stage even if cached (repeatable).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Stop after this stage (data, splits, embeddings, ids, "
                                 "model, evaluate, baselines).")
    ] = None,
) -> None:
    """Run the whole pipeline (or resume it) and write a run directory with its report."""
    from semid.pipeline import run_pipeline

    shortcuts = {
        "embedding.space": embedding,
        "quantizer.name": quantizer,
        "embedding.encoder": encoder,
        "seed": seed,
        "name": name,
    }
    if queries is not None:
        shortcuts["queries.source"] = "file"
        shortcuts["queries.file"] = str(queries)
    cfg = _config(preset, config, overrides, shortcuts)
    run_dir = run_pipeline(cfg, runs_dir, cache_dir, set(force or []), until)
    report = run_dir / "report.md"
    if report.exists():
        from rich.markdown import Markdown

        Console().print(Markdown(report.read_text().split("## Semantic-ID")[0]))
    console.print(f"run directory: {run_dir}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    queries: Annotated[Path, typer.Option(help='JSONL file of {"query", "movieId"}.')],
    k: Annotated[int | None, typer.Option(help="Items returned per query (beam size).")] = None,
) -> None:
    """Score a trained run on any query file, without retraining."""
    from semid.pipeline import evaluate_query_file

    metrics = evaluate_query_file(run_dir, queries, k)
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def search(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    query: Annotated[str, typer.Argument(help="Search query text.")],
    k: Annotated[int, typer.Option(help="Items to return.")] = 10,
) -> None:
    """Generative search: print the top-K items for a query."""
    from semid.serving import load

    _print_frame(load(run_dir).search(query, k=k))


@app.command()
def recommend(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    history: Annotated[str, typer.Option(help="Comma-separated item ids, oldest first.")],
    k: Annotated[int, typer.Option(help="Items to return.")] = 10,
) -> None:
    """Generative recommendation: print the top-K next items for a history of item ids."""
    from semid.serving import load

    ids = [int(x) for x in history.split(",") if x.strip()]
    _print_frame(load(run_dir).recommend(ids, k=k))


def _print_frame(frame) -> None:
    from rich.table import Table

    table = Table()
    for col in frame.columns:
        table.add_column(col)
    for row in frame.iter_rows():
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


def _mount() -> None:
    from semid.data.cli import data_app, queries_app
    from semid.data.llm_cli import generate as llm_generate
    from semid.embeddings.cli import embed_app
    from semid.quantizers.cli import ids_app

    queries_app.command("generate")(llm_generate)
    app.add_typer(data_app, name="data", help="Load, download, import and inspect datasets.")
    app.add_typer(queries_app, name="queries", help="Make search-query files.")
    app.add_typer(embed_app, name="embed", help="Build item-embedding spaces.")
    app.add_typer(ids_app, name="ids", help="Fit quantizers, assign and inspect semantic IDs.")


_mount()


def entrypoint() -> None:
    """Console entry point: user errors are one line, not a traceback."""
    try:
        app()
    except SemidError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()
