"""``semid ids``: fit quantizers on an embedding matrix and inspect semantic IDs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from semid.cli.common import PluginOpt
from semid.cli.tables import print_markdown
from semid.errors import ConfigError, DataError, first_error
from semid.quantizers.registry import QUANTIZERS

ids_app = typer.Typer(help="Fit quantizers, assign and inspect semantic IDs.", no_args_is_help=True)
console = Console()


def _resolve_ids_folder(path: Path) -> Path:
    """A run dir (manifest.json -> stages.ids.path) or an ids folder, as an ids folder."""
    from semid.io import read_json

    manifest = path / "manifest.json"
    if manifest.is_file():
        stage = read_json(manifest).get("stages", {}).get("ids")
        if not stage:
            raise DataError(f"{manifest}: the run has no ids stage yet")
        return Path(stage["path"])
    return path


def _diagnostics_of_codes(path: Path) -> dict:
    """Diagnostics of a codes .npy (space.json beside it tells which column is the suffix)."""
    from semid.io import read_json
    from semid.quantizers.diagnostics import diagnose

    try:
        codes = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a numpy array file ({exc})") from exc
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"{path}: expected a 2-D integer array, got {codes.dtype} {codes.shape}")
    meta_path = path.parent / "space.json"
    sizes = None
    if meta_path.is_file():
        meta = read_json(meta_path)
        sizes = meta.get("level_sizes")
        codes = codes[:, : meta["levels"]]
    return diagnose(codes, sizes)


@ids_app.command()
def inspect(
    path: Annotated[
        Path,
        typer.Argument(
            help="A run directory, an ids stage folder, an ID space folder or a codes .npy file."
        ),
    ],
) -> None:
    """Print the diagnostics table (code usage, collisions, reconstruction, coherence)."""
    from semid.io import read_json
    from semid.quantizers.diagnostics import format_diagnostics
    from semid.quantizers.ids import space_folders

    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        diag = _diagnostics_of_codes(path)
        print_markdown(console, f"## {path.name}\n\n" + format_diagnostics(diag))
        return
    folders = space_folders(_resolve_ids_folder(path))
    if not folders:
        raise DataError(f"{path}: no ID spaces found (expected <space>/space.json)")
    for folder in folders:
        meta = read_json(folder / "space.json")
        diag_path = folder / "diagnostics.json"
        diag = (
            read_json(diag_path)
            if diag_path.is_file()
            else _diagnostics_of_codes(folder / "codes.npy")
        )
        title = (
            f"## ID space `{meta['name']}`: {meta['quantizer']} {meta['levels']} x "
            f"{meta['codebook_size']}{' + disambiguation' if meta['disambiguation'] else ''}, "
            f"cardinalities {meta['cardinalities']}"
        )
        print_markdown(console, title + "\n\n" + format_diagnostics(diag))


@ids_app.command()
def fit(
    embeddings: Annotated[Path, typer.Argument(help="Item embeddings, a float (n, d) .npy.")],
    out: Annotated[Path, typer.Option(help="Folder to write the ID space into (new).")],
    quantizer: Annotated[
        str, typer.Option(help=f"{QUANTIZERS.choices()} (`semid ids list`).")
    ] = "rq-kmeans",
    levels: Annotated[int, typer.Option(help="Code levels.")] = 3,
    codebook_size: Annotated[int, typer.Option(help="Codes per level.")] = 256,
    disambiguation: Annotated[
        bool, typer.Option(help="Append a token that makes colliding IDs unique.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Quantizer option KEY=VALUE, e.g. vae.lr=0.001."),
    ] = None,
    space: Annotated[str, typer.Option(help="Name of the ID space folder.")] = "item",
    plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin", help="Python module or .py file registering quantizers (repeatable)."
        ),
    ] = None,
) -> None:
    """Fit a quantizer on an embedding matrix, assign IDs and write the ID space folder."""
    from pydantic import ValidationError

    from semid.config import deep_merge, parse_override
    from semid.io import atomic_dir
    from semid.quantizers.config import QuantizerConfig
    from semid.quantizers.diagnostics import format_diagnostics
    from semid.quantizers.ids import build_ids
    from semid.registry import load_plugins

    load_plugins(plugin or [])
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: folder exists and is not empty")
    try:
        X = np.load(embeddings)
    except (OSError, ValueError) as exc:
        raise DataError(f"{embeddings}: cannot read a numpy array ({exc})") from exc
    data: dict = {
        "name": quantizer,
        "levels": levels,
        "codebook_size": codebook_size,
        "disambiguation": disambiguation,
    }
    for item in overrides or []:
        data = deep_merge(data, parse_override(item))
    try:
        cfg = QuantizerConfig.model_validate(data)
    except ValidationError as exc:
        loc, msg = first_error(exc)
        raise ConfigError(f"quantizer option {loc}: {msg}") from exc
    with atomic_dir(out) as tmp:
        facts = build_ids(cfg, {space: X}, tmp, seed)
    from semid.io import read_json

    diag = read_json(out / space / "diagnostics.json")
    print_markdown(console, f"## {out / space}\n\n" + format_diagnostics(diag))
    console.print(f"fit in {facts[space]['fit_seconds']} s; wrote {out / space}")


@ids_app.command("list")
def list_quantizers(plugin: PluginOpt = None) -> None:
    """List the quantizer names (with the installed plugins' entry points)."""
    from semid.registry import load_plugins

    load_plugins(plugin or [])
    width = max(len(name) for name in QUANTIZERS)
    for name, help_text in QUANTIZERS.describe():
        console.print(f"{name:<{width}}  {help_text}".rstrip(), highlight=False)
