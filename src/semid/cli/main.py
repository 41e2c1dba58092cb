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
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from semid.cli.assign import assign_command
from semid.cli.common import ConfigOpt, PluginOpt, PresetOpt, SetOpt, run_config
from semid.cli.data import data_app, queries_app
from semid.cli.embed import embed_app
from semid.cli.ids import ids_app
from semid.cli.llm import generate as llm_generate
from semid.cli.tables import print_markdown, print_table
from semid.embeddings.spaces import SPACES
from semid.errors import SemidError
from semid.quantizers.registry import QUANTIZERS

if TYPE_CHECKING:
    from semid.grid import Grid

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


@app.command()
def run(
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    embedding: Annotated[
        str | None, typer.Option(help=f"Embedding space: {SPACES.choices()}.")
    ] = None,
    quantizer: Annotated[
        str | None, typer.Option(help=f"Quantizer: {QUANTIZERS.choices()} (`semid ids list`).")
    ] = None,
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
        str | None,
        typer.Option(
            help="Stop after this stage (data, splits, embeddings, ids, "
            "model, evaluate, reference, baselines)."
        ),
    ] = None,
    plugin: PluginOpt = None,
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
    cfg = run_config(preset, config, overrides, shortcuts, plugin)
    run_dir = run_pipeline(cfg, runs_dir, cache_dir, set(force or []), until)
    report = run_dir / "report.md"
    if report.exists():
        print_markdown(Console(), report.read_text().split("## Semantic-ID")[0])
    console.print(f"run directory: {run_dir}")


@app.command()
def train(
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    plugin: PluginOpt = None,
) -> None:
    """Train (or reuse) the generative model: the run's stages up to `model`."""
    from semid.pipeline import run_pipeline

    cfg = run_config(preset, config, overrides, {}, plugin)
    run_dir = run_pipeline(cfg, runs_dir, until="model")
    console.print(f"model: {_stage_path(run_dir, 'model')}")


def _stage_path(run_dir: Path, stage: str) -> str:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return manifest["stages"][stage]["path"]


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


GenreOpt = Annotated[
    list[str] | None,
    typer.Option("--genre", help="Only items of this genre (repeatable: any of them)."),
]
YearMinOpt = Annotated[int | None, typer.Option(help="Only items released in or after this year.")]
YearMaxOpt = Annotated[int | None, typer.Option(help="Only items released in or before this year.")]
AllowOpt = Annotated[
    str | None, typer.Option("--allow", help="Only these item ids (comma-separated).")
]
ExactOpt = Annotated[
    bool, typer.Option(help="Score every item instead of beam search (small catalogues).")
]
BeamsOpt = Annotated[
    int | None,
    typer.Option(
        help="Beams kept while decoding (default: K x the run's eval beam_width/beam_size)."
    ),
]


def _ids(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        message = f"{option}: expected comma-separated item ids, got {text!r}"
        raise typer.BadParameter(message) from None


def _filters(genre, year_min, year_max, allow) -> dict:
    return {
        "genres": genre or None,
        "year_min": year_min,
        "year_max": year_max,
        "allow": _ids(allow, "--allow") if allow else None,
    }


@app.command()
def search(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    query: Annotated[str, typer.Argument(help="Search query text.")],
    k: Annotated[int, typer.Option(help="Items to return.")] = 10,
    genre: GenreOpt = None,
    year_min: YearMinOpt = None,
    year_max: YearMaxOpt = None,
    allow: AllowOpt = None,
    exact: ExactOpt = False,
    beams: BeamsOpt = None,
) -> None:
    """Generative search: print the top-K items for a query.

    Filters (--genre, --year-min, --year-max, --allow) are applied inside the beam search, so
    the top-K is filled with matching items.
    """
    from semid.serving import load

    filters = _filters(genre, year_min, year_max, allow)
    _print_items(load(run_dir).search(query, k=k, exact=exact, beams=beams, **filters))


@app.command()
def recommend(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    history: Annotated[str, typer.Option(help="Comma-separated item ids, oldest first.")],
    k: Annotated[int, typer.Option(help="Items to return.")] = 10,
    genre: GenreOpt = None,
    year_min: YearMinOpt = None,
    year_max: YearMaxOpt = None,
    allow: AllowOpt = None,
    exact: ExactOpt = False,
    beams: BeamsOpt = None,
) -> None:
    """Generative recommendation: print the top-K next items for a history of item ids."""
    from semid.serving import load

    ids = _ids(history, "--history")
    filters = _filters(genre, year_min, year_max, allow)
    _print_items(load(run_dir).recommend(ids, k=k, exact=exact, beams=beams, **filters))


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most requests decoded together.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long to collect concurrent requests into one batch.")
    ] = 5.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="torch threads (default: all).")] = None,
) -> None:
    """Serve a trained run over HTTP: /search, /recommend, /items/{id}, /health, /docs."""
    from semid.api import serve as serve_app

    console.print(f"serving {run_dir} on http://{host}:{port} (docs: /docs)")
    serve_app(run_dir, host, port, max_batch, max_wait_ms, device, threads)


@app.command()
def grid(
    grid_file: Annotated[Path, typer.Argument(help="Grid YAML file, e.g. grids/paper-table1.yaml")],
    preset: Annotated[
        str | None, typer.Option(help="Grid preset defined in the file: cpu, paper, ...")
    ] = None,
    jobs: Annotated[
        int, typer.Option(help="Cells run side by side, each in its own process (mind memory).")
    ] = 1,
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            help="Results folder: one run directory per cell, the stage cache, "
            "results.json and the report (default: results/NAME[-PRESET])."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Stage cache (default: RUNS_DIR/.cache); share one between grids to "
            "reuse their common stages."
        ),
    ] = None,
    overrides: SetOpt = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only cells whose name matches this glob (repeatable): '*__s0'."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="List the cells and the stages they share; run nothing.")
    ] = False,
    write_report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write the study report at the end.")
    ] = True,
    backend: Annotated[
        str,
        typer.Option(
            help="'local' (process pool on this machine) or 'ray' (one Ray task per cell; "
            "RUNS_DIR and the cache must be on a filesystem every worker sees)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="--backend ray: cluster address ('auto', 'ray://head:10001'); "
            "default: start a local Ray instance."
        ),
    ] = None,
    cpus_per_cell: Annotated[float, typer.Option(help="--backend ray: CPUs a cell needs.")] = 1,
    gpus_per_cell: Annotated[float, typer.Option(help="--backend ray: GPUs a cell needs.")] = 0,
    plugin: PluginOpt = None,
) -> None:
    """Run every cell of a grid (axes x values), resuming finished cells and shared stages."""
    from semid.cli.tables import print_plan
    from semid.grid import load_grid

    spec = load_grid(grid_file, preset, overrides, plugin)
    out = runs_dir or Path("results") / (f"{spec.name}-{preset}" if preset else spec.name)
    cache = cache_dir or out / ".cache"
    if dry_run:
        print_plan(spec, out, cache, only, Console())
        from semid.cli.tables import print_gpu_hours

        print_gpu_hours(spec, only, Console())
        return
    statuses = _run_cells(
        spec, out, cache, only, jobs, backend, address, cpus_per_cell, gpus_per_cell
    )
    failed = _print_grid_summary(spec.name, statuses)
    if write_report:
        from semid.reports.study import write_study_report

        console.print(f"report: {write_study_report(out)}")
    if failed:
        raise typer.Exit(1)


def _run_cells(
    spec: Grid,
    out: Path,
    cache: Path,
    only: list[str] | None,
    jobs: int,
    backend: str,
    address: str | None,
    cpus_per_cell: float,
    gpus_per_cell: float,
) -> dict[str, str]:
    """Run the grid's cells on ``backend`` (``local`` or ``ray``); each cell's status."""
    from semid.grid import run_grid

    if backend == "ray":
        from semid.grid_ray import run_grid_ray

        return run_grid_ray(
            spec,
            out,
            address=address,
            cpus_per_cell=cpus_per_cell,
            gpus_per_cell=gpus_per_cell,
            jobs=jobs if jobs > 1 else None,
            cache_dir=cache,
            only=only,
        )
    if backend == "local":
        return run_grid(spec, out, jobs=jobs, cache_dir=cache, only=only)
    raise SemidError(f"--backend {backend}: must be local or ray")


def _print_grid_summary(name: str, statuses: dict[str, str]) -> dict[str, str]:
    """Print how many cells ran, were done already or failed (with their errors); returns the
    failed ones."""
    failed = {cell: s for cell, s in statuses.items() if s.startswith("failed")}
    console.print(
        f"grid {name}: {sum(s == 'done' for s in statuses.values())} ran, "
        f"{sum(s == 'skipped' for s in statuses.values())} already done, {len(failed)} failed"
    )
    for cell, status in failed.items():
        console.print(f"[red]{cell}[/red]: {status}")
    return failed


@app.command()
def report(
    results_dir: Annotated[
        Path,
        typer.Argument(help="A grid results folder (`semid grid`) or one run directory."),
    ],
    k: Annotated[
        int | None, typer.Option(help="Cut-off of the tables (default: 30, else the largest K).")
    ] = None,
    head_share: Annotated[
        float,
        typer.Option(
            help="Head = most popular items covering this share of training interactions; "
            "the rest is the torso."
        ),
    ] = 0.5,
    publish: Annotated[
        Path | None,
        typer.Option(
            help="Also copy report.md, study.json, results.json and tradeoff.png (and the "
            "evidence page's evidence.json) into this folder, e.g. docs/results/NAME, to commit."
        ),
    ] = None,
    evidence: Annotated[
        Path | None,
        typer.Option(
            help="Also write the RQ-VAE evidence page (an rq-vae-study grid), e.g. "
            "docs/rq-vae-study.md; its evidence.json goes to --publish (else RESULTS_DIR)."
        ),
    ] = None,
    benchmarks: Annotated[
        Path,
        typer.Option(help="With --evidence: folder of the quantizer benchmark's JSON files."),
    ] = Path("benchmarks/results"),
    table3: Annotated[
        Path | None,
        typer.Option(
            help="With --evidence: a paper-table3 grid results folder (run directories), if "
            "run; a rewrite from a published folder stores its rows in evidence.json."
        ),
    ] = None,
    scale: Annotated[
        list[Path] | None,
        typer.Option(
            help="With --evidence: a published ml-25m-scale study (its --publish folder), "
            "for the page's catalogue-scale section; repeatable (at a size two studies share, "
            "the one with more training seeds wins)."
        ),
    ] = None,
) -> None:
    """Write RESULTS_DIR/report.md: tables over seeds, paired tests, head/torso, diagnostics.

    Given a run directory (no grid.json, a manifest.json), rewrite that run's report from its
    files instead (nothing is recomputed). Given a published study folder (its evidence.json)
    with --evidence, rewrite the evidence page from the committed evidence alone.
    """
    from semid.reports.study import publish_study, write_study_report

    if not (results_dir / "grid.json").exists() and (results_dir / "manifest.json").exists():
        from semid.reports.report import rewrite_run_report

        console.print(f"report: {rewrite_run_report(results_dir)}")
        return
    if (
        evidence is not None
        and not (results_dir / "grid.json").exists()
        and (results_dir / "evidence.json").exists()
    ):
        from semid.reports.evidence import rerender_evidence_page

        rerender_evidence_page(results_dir, evidence, benchmarks, scale, table3)
        console.print(f"evidence page: {evidence} (from {results_dir / 'evidence.json'})")
        return
    console.print(f"report: {write_study_report(results_dir, k=k, head_share=head_share)}")
    if evidence is not None:
        from semid.reports.evidence import write_evidence_page

        evidence_json = (publish or results_dir) / "evidence.json"
        write_evidence_page(results_dir, evidence, evidence_json, benchmarks, table3, scale)
        console.print(f"evidence page: {evidence} ({evidence_json})")
    for path in publish_study(results_dir, publish) if publish is not None else []:
        console.print(f"published: {path}")


def _print_items(frame) -> None:
    import polars as pl

    if "genres" in frame.columns:
        frame = frame.with_columns(pl.col("genres").list.join(", "))
    _print_frame(frame)


def _print_frame(frame) -> None:
    rows = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r] for r in frame.iter_rows()]
    print_table(Console(), frame.columns, rows)


queries_app.command("generate")(llm_generate)
ids_app.command("assign")(assign_command)
app.add_typer(data_app, name="data", help="Load, download, import and inspect datasets.")
app.add_typer(queries_app, name="queries", help="Make search-query files.")
app.add_typer(embed_app, name="embed", help="Build, inspect and list item-embedding spaces.")
app.add_typer(ids_app, name="ids", help="Fit quantizers, assign and inspect semantic IDs.")


def entrypoint() -> None:
    """Console entry point: user errors are one line, not a traceback."""
    try:
        app()
    except SemidError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()
