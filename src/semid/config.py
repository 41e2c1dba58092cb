"""The one typed config object of a run, with YAML presets and dotted CLI overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from semid.data.config import DataConfig, QueryConfig
from semid.embeddings.config import EmbeddingConfig
from semid.errors import ConfigError
from semid.evaluation.config import EvalConfig
from semid.generative.config import ModelConfig, TrainConfig
from semid.quantizers.config import QuantizerConfig


class RunConfig(BaseModel):
    """Everything that determines a run's results. Saved as ``config.json`` beside them."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Run name (default: derived from the config).")
    seed: int = Field(0, description="Seed for every random choice of the run.")
    data: DataConfig = Field(default_factory=DataConfig)
    queries: QueryConfig = Field(default_factory=QueryConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    quantizer: QuantizerConfig = Field(default_factory=QuantizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def available_presets() -> list[str]:
    """Names of the presets shipped with semid."""
    folder = resources.files("semid") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: Path | Any, label: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{label}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping at the top level")
    return data


def preset_dict(name: str) -> dict[str, Any]:
    """The raw mapping of a shipped preset (presets may name a ``base`` preset)."""
    path = resources.files("semid") / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"--preset {name}: unknown preset (available: {', '.join(available_presets())})"
        )
    data = _read_yaml(path, f"preset {name}")
    base = data.pop("base", None)
    return deep_merge(preset_dict(base), data) if base else data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``train.epochs=3`` into ``{"train": {"epochs": 3}}`` (values parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    node: dict[str, Any] = {}
    cursor = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def load_config(
    preset: str | None = "default",
    config_file: Path | None = None,
    overrides: list[str] | None = None,
) -> RunConfig:
    """Resolve a run config: preset, then a YAML/JSON file, then ``KEY=VALUE`` overrides."""
    data: dict[str, Any] = preset_dict(preset) if preset else {}
    if config_file is not None:
        data = deep_merge(data, _read_yaml(Path(config_file), str(config_file)))
    for item in overrides or []:
        data = deep_merge(data, parse_override(item))
    return validate_config(data, source=str(config_file or f"preset {preset}"))


def validate_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a mapping into a RunConfig with a one-line error naming the option."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{source}: option {loc}: {err['msg']}") from exc
