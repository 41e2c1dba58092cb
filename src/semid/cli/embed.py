"""``semid embed``: build item-embedding spaces and look inside built ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from semid.cli.common import PluginOpt, run_config
from semid.embeddings.spaces import SPACES
from semid.errors import DataError

embed_app = typer.Typer(
    help=f"Build item-embedding spaces ({SPACES.choices('and')}) and inspect them.",
    no_args_is_help=True,
)
console = Console()


def _embedding_folder(path: Path) -> Path:
    """A run directory (its manifest names the embeddings stage) or an embedding folder."""
    from semid.io import read_json

    manifest = path / "manifest.json"
    if manifest.is_file():
        stage = read_json(manifest).get("stages", {}).get("embeddings")
        if not stage:
            raise DataError(f"{manifest}: the run has no embeddings stage yet")
        return Path(stage["path"])
    return path


@embed_app.command()
def spaces(plugin: PluginOpt = None) -> None:
    """List the embedding spaces and what each one is."""
    from semid.registry import load_plugins

    load_plugins(plugin or [])
    table = Table("space", "what it is")
    for name, text in SPACES.describe():
        table.add_row(name, escape(text))
    console.print(table)


@embed_app.command()
def build(
    preset: Annotated[str, typer.Option(help="Shipped preset: default, smoke, ...")] = "default",
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML/JSON config file.")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override KEY=VALUE, e.g. embedding.tune_max_steps=200."),
    ] = None,
    space: Annotated[
        str | None, typer.Option(help="Embedding space (see `semid embed spaces`).")
    ] = None,
    encoder: Annotated[str | None, typer.Option(help="minilm, mpnet or a model folder.")] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    cache_dir: Annotated[
        Path | None, typer.Option(help="Stage cache (default: RUNS_DIR/.cache).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Run the data, splits and embeddings stages of a run config (cached like `semid run`)."""
    from semid.pipeline import load_state, run_pipeline

    shortcuts = {"embedding.space": space, "embedding.encoder": encoder, "seed": seed}
    cfg = run_config(preset, config, overrides, shortcuts, plugin)
    run_dir = run_pipeline(
        cfg, runs_dir, cache_dir, {"embeddings"} if force else set(), until="embeddings"
    )
    _, paths = load_state(run_dir)
    _print_info(paths["embeddings"])
    console.print(f"run directory: {run_dir}")


@embed_app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A run directory or an embedding folder.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print meta.json (no loss curves).")
    ] = False,
) -> None:
    """Show a built embedding folder: spaces, shapes, norms and what trained it."""
    folder = _embedding_folder(path)
    if as_json:
        from semid.embeddings.build import load_embeddings

        meta = dict(load_embeddings(folder).meta)
        for part in meta.get("training", {}).values():
            part.pop("loss_curve", None)
        typer.echo(json.dumps(meta, indent=2))
        return
    _print_info(folder)


def _print_info(folder: Path) -> None:
    from semid.embeddings.build import load_embeddings

    art = load_embeddings(folder)
    meta = art.meta
    table = Table("ID space", "items", "dim", "mean L2 norm", title=f"{meta['space']}: {folder}")
    for name, matrix in art.spaces.items():
        norm = float(np.linalg.norm(matrix, axis=1).mean())
        table.add_row(name, str(matrix.shape[0]), str(matrix.shape[1]), f"{norm:.3f}")
    console.print(table)
    console.print(
        f"encoder: {meta.get('encoder')}  query encoder: {art.encoder_path or '-'}  "
        f"data hash: {meta['data_hash']}  seed: {meta['seed']}  seconds: {meta['seconds']}"
    )
    for name, part in meta.get("training", {}).items():
        curve = part.get("loss_curve") or []
        last = curve[-1] if curve else None
        details = {k: v for k, v in part.items() if k != "loss_curve"}
        console.print(escape(f"{name}: {details}  final loss: {last}"))
    if art.user_vectors is not None:
        console.print(
            f"user vectors: {art.user_vectors.shape[0]} users x {art.user_vectors.shape[1]}"
        )
