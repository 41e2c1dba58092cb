"""The one typed config object of a run, with YAML presets and dotted CLI overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from semid.data.config import DataConfig, QueryConfig, omit_new_defaults
from semid.embeddings.config import EmbeddingConfig
from semid.errors import ConfigError, first_error
from semid.evaluation.config import EvalConfig
from semid.generative.config import ModelConfig, TrainConfig
from semid.quantizers.config import QuantizerConfig

Task = Literal["search", "rec"]
ALL_TASKS: list[Task] = ["search", "rec"]


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
    plugins: list[str] = Field(
        default_factory=list,
        description="Python modules or .py files imported before the rest of the config is "
        "validated; they register components (`--plugin`, see semid.registry). Recorded in "
        "config.json, so grid workers and later commands on the run import them too.",
    )
    tasks: list[Task] = Field(
        default_factory=lambda: list(ALL_TASKS),
        description="Tasks the generator is trained and evaluated on: [search, rec] (default) "
        "or [search] (search-only: no interactions are needed, so a catalogue of items alone "
        "such as the ML-25M item table works; no user sequences, no rec training examples, "
        "metrics or baselines). Spaces learnt from interactions (rec, separate, fused-*, "
        "multitask) need rec.",
    )

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[Task]) -> list[Task]:
        if not value:
            raise ValueError("name at least one task (search, rec)")
        if "search" not in value:
            raise ValueError("recommendation-only runs are not supported; use [search, rec]")
        return [t for t in ALL_TASKS if t in value]  # canonical order, each once

    @model_validator(mode="after")
    def _space_has_its_interactions(self) -> RunConfig:
        from semid.embeddings.spaces import SPACES

        if "rec" not in self.tasks and SPACES.get(self.embedding.space).needs_interactions:
            tasks = ", ".join(self.tasks)
            raise ConfigError(
                f"tasks=[{tasks}]: embedding.space={self.embedding.space} is learnt from "
                "user interactions, which a search-only run does not have; use "
                "embedding.space=content or search, or tasks=[search, rec]"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_new_defaults(self, handler(self), NEW_FIELDS)

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("plugins"):
            from semid.registry import load_plugins

            data = {**data, "plugins": load_plugins(data["plugins"])}
        return data


# Fields added after caches existed, left out of dumps while at their default: the stage keys,
# run names and grid done markers of configs that do not use them stay what they were.
NEW_FIELDS = ("tasks",)

# Not part of a run's identity: what the run computes is named by the config's other fields.
# Checkpoint cadence (train.checkpoint_*) changes when state is saved, never the result.
OPERATIONAL_FIELDS: dict[str, Any] = {"train": {"checkpoint_steps", "checkpoint_minutes"}}
IDENTITY_EXCLUDE: dict[str, Any] = {"name": True, "plugins": True, **OPERATIONAL_FIELDS}


def available_presets() -> list[str]:
    """Names of the presets shipped with semid."""
    folder = resources.files("semid") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_yaml(path: Path | Any, label: str, what: str = "file") -> dict[str, Any]:
    """A YAML (or JSON) file holding a mapping; ConfigError starting with ``label`` otherwise."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{label}: {what} not found") from exc
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
    data = read_yaml(path, f"preset {name}")
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
    plugins: list[str] | None = None,
) -> RunConfig:
    """Resolve a run config: preset, then a YAML/JSON file, then ``KEY=VALUE`` overrides;
    ``plugins`` are added to the config's own and imported before it is validated."""
    data: dict[str, Any] = preset_dict(preset) if preset else {}
    if config_file is not None:
        data = deep_merge(data, read_yaml(Path(config_file), str(config_file)))
    for item in overrides or []:
        data = deep_merge(data, parse_override(item))
    data = with_plugins(data, plugins)
    return validate_config(data, source=str(config_file or f"preset {preset}"))


def with_plugins(data: dict[str, Any], plugins: list[str] | None) -> dict[str, Any]:
    """``data`` with ``plugins`` appended to its ``plugins`` list (each once)."""
    if not plugins:
        return data
    merged = list(data.get("plugins") or [])
    return {**data, "plugins": merged + [p for p in plugins if p not in merged]}


def validate_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a mapping into a RunConfig with a one-line error naming the option."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        loc, msg = first_error(exc)
        raise ConfigError(f"{source}: option {loc}: {msg}") from exc
