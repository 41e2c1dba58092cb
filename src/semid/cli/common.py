"""Options and config resolution shared by the commands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from semid.errors import ConfigError, first_error

if TYPE_CHECKING:
    from semid.config import RunConfig
    from semid.data.config import DataConfig

PresetOpt = Annotated[str, typer.Option(help="Shipped preset: default, smoke, full, ...")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML/JSON config file (over the preset).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override KEY=VALUE, e.g. train.epochs=5 (repeatable)."),
]
PluginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        help="Python module or .py file that registers components (quantizers, embedding "
        "spaces, ...), imported before the config is read; recorded in the run (repeatable).",
    ),
]


def run_config(
    preset: str,
    config: Path | None,
    overrides: list[str] | None,
    shortcuts: Mapping[str, object],
    plugins: list[str] | None = None,
) -> RunConfig:
    """The run config of a command: preset, file, shortcut options, then ``--set``."""
    from semid.config import load_config

    sets = list(overrides or [])
    for key, value in shortcuts.items():
        if value is not None:
            sets.insert(0, f"{key}={value}")
    return load_config(preset, config, sets, plugins)


def data_config(dataset: str, path: Path | None, **options: Any) -> DataConfig:
    """A DataConfig for a dataset name, or for a folder given in place of the name."""
    from pydantic import ValidationError

    from semid.data.config import DataConfig

    if path is None and (Path(dataset).exists() or "/" in dataset):
        dataset, path = "custom", Path(dataset)
    try:
        return DataConfig(dataset=dataset, path=path, **options)
    except ValidationError as exc:
        loc, msg = first_error(exc, "-")
        raise ConfigError(f"--{loc}: {msg}") from exc
