"""Grid files: a YAML file expands into cells, one run config each (run by :mod:`semid.grid`).

A grid file names a base config, optional grid presets (``cpu``, ``paper``) and axes; every
combination of axis values is a *cell*::

    name: paper-table1
    base: {preset: default, set: {quantizer.name: rq-kmeans}}
    presets:
      cpu: {set: {train.epochs: 1}, axes: {seed: [0]}}
      paper: {set: {model.d_model: 768}, axes: {seed: [0, 1, 2, 3, 4]}}
    axes:
      embedding.space: [content, search, rec]   # a config option and its values
      quantizer.shape: ["2x256", "3x256"]        # LxK = quantizer.levels x codebook_size
      variant:                                  # a named axis: label -> overrides
        defaults: {}
        no-disambiguation: {quantizer.disambiguation: false}
      seed: [0, 1, 2]
      # quantizer.name: all                     # every registered quantizer (plugins too)
    baseline: {embedding.space: content}         # the row paired tests compare against
    group_over: seed                             # the axis reports average over
    plugins: [my_quantizer.py]                   # imported first, here and in every worker

Cells are named by their axis labels (``search__2x256__defaults__s0``).
"""

from __future__ import annotations

import contextlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from semid.config import (
    RunConfig,
    deep_merge,
    parse_override,
    preset_dict,
    read_yaml,
    validate_config,
    with_plugins,
)
from semid.errors import ConfigError
from semid.io import stable_hash
from semid.registry import Registry, load_plugins

SHAPE_AXIS = "quantizer.shape"

_TOP_KEYS = {"name", "description", "base", "presets", "axes", "baseline", "group_over", "plugins"}
_BASE_KEYS = {"preset", "set"}
_PRESET_KEYS = {"preset", "set", "axes", "description"}


@dataclass
class Axis:
    """One axis of a grid: a label, a raw value and config overrides per point."""

    name: str
    labels: list[str]
    values: list[Any]
    overrides: list[dict[str, Any]]


@dataclass
class Cell:
    """One point of the grid: its name, its label on every axis and its run config."""

    name: str
    labels: dict[str, str]
    group: str
    config: RunConfig


@dataclass
class Grid:
    """An expanded grid: axes, cells, and what reports compare against."""

    name: str
    description: str
    preset: str | None
    source: str
    axes: list[Axis]
    cells: list[Cell]
    group_over: str | None
    baseline: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The description written to ``grid.json`` (what ``semid report`` reads)."""
        return {
            "name": self.name,
            "description": self.description,
            "preset": self.preset,
            "source": self.source,
            "group_over": self.group_over,
            "baseline": self.baseline,
            "axes": [{"name": a.name, "labels": a.labels} for a in self.axes],
            "cells": [{"name": c.name, "group": c.group, "labels": c.labels} for c in self.cells],
        }


def load_grid(
    path: str | Path,
    preset: str | None = None,
    overrides: list[str] | None = None,
    plugins: list[str] | None = None,
) -> Grid:
    """Read a grid YAML file and expand it (with a grid preset, ``KEY=VALUE`` overrides and
    plugin modules)."""
    path = Path(path)
    spec = read_yaml(path, str(path), "grid file")
    spec.setdefault("name", path.stem)
    return expand_grid(spec, preset, overrides, source=str(path), plugins=plugins)


def expand_grid(
    spec: dict[str, Any],
    preset: str | None = None,
    overrides: list[str] | None = None,
    source: str = "grid",
    plugins: list[str] | None = None,
) -> Grid:
    """Expand a grid mapping into cells: the product of its axes, in the order they are listed.

    Config layers, later wins: the base's semid preset, ``base.set``, the grid preset's ``set``,
    ``overrides`` (``KEY=VALUE``), then each cell's axis values. A grid preset may also replace
    the values of axes (``axes: {seed: [0]}``; for a named axis, a list of its labels keeps a
    subset). ``plugins`` (and the file's own ``plugins:`` list) are imported before the cells
    are validated and recorded in every cell's config, so the workers import them too. Raises
    :class:`ConfigError` naming the key for anything invalid.
    """
    _check_keys(spec, _TOP_KEYS, source)
    name = str(spec.get("name") or "grid")
    base = _mapping(spec.get("base", {}), f"{source}: base")
    _check_keys(base, _BASE_KEYS, f"{source}: base")
    presets = _mapping(spec.get("presets", {}), f"{source}: presets")
    raw_axes = _mapping(spec.get("axes", {}), f"{source}: axes")
    if not raw_axes:
        raise ConfigError(f"{source}: axes: a grid needs at least one axis")

    file_plugins = spec.get("plugins") or []
    if not isinstance(file_plugins, list):
        raise ConfigError(f"{source}: plugins: expected a list of modules or .py files")
    # imported now: an axis may name their components, or list them all ("all")
    plugins = load_plugins([str(p) for p in file_plugins] + list(plugins or []))
    semid_preset = base.get("preset", "default")
    layers = [_dotted_mapping(base.get("set", {}), f"{source}: base.set")]
    description = str(spec.get("description", "")).strip()
    if preset is not None:
        if preset not in presets:
            known = ", ".join(presets) or "none"
            raise ConfigError(f"{source}: --preset {preset}: unknown grid preset (has: {known})")
        chosen = _mapping(presets[preset], f"{source}: presets.{preset}")
        _check_keys(chosen, _PRESET_KEYS, f"{source}: presets.{preset}")
        semid_preset = chosen.get("preset", semid_preset)
        layers.append(_dotted_mapping(chosen.get("set", {}), f"{source}: presets.{preset}.set"))
        preset_axes = _mapping(chosen.get("axes", {}), f"{source}: presets.{preset}.axes")
        raw_axes = _apply_preset_axes(raw_axes, preset_axes, f"{source}: presets.{preset}.axes")
    axes = [_parse_axis(key, values, source) for key, values in raw_axes.items()]
    axis_names = {a.name for a in axes}
    for item in overrides or []:
        override = parse_override(item)
        key = item.split("=", 1)[0].strip()
        if key in axis_names or (
            key in ("quantizer.levels", "quantizer.codebook_size") and SHAPE_AXIS in axis_names
        ):
            raise ConfigError(f"--set {key}: is an axis of {source}; change the axis instead")
        _check_option(key, f"--set {key}")
        layers.append(override)

    data = preset_dict(semid_preset) if semid_preset else {}
    for layer in layers:
        data = deep_merge(data, layer)
    data = with_plugins(data, plugins)

    group_over = spec.get("group_over", "seed" if "seed" in axis_names else None)
    if group_over is not None and group_over not in axis_names:
        raise ConfigError(f"{source}: group_over: {group_over} is not an axis")
    cells = _product_cells(name, axes, data, group_over, source)
    baseline = _parse_baseline(spec.get("baseline"), axes, group_over, source)
    return Grid(name, description, preset, source, axes, cells, group_over, baseline)


def _product_cells(
    name: str, axes: list[Axis], data: dict, group_over: str | None, source: str
) -> list[Cell]:
    for axis in axes:
        if not axis.labels:
            raise ConfigError(f"{source}: axes.{axis.name}: has no values")
    cells: list[Cell] = []
    seen: set[str] = set()
    for combo in itertools.product(*(range(len(a.labels)) for a in axes)):
        labels = {a.name: a.labels[i] for a, i in zip(axes, combo, strict=True)}
        cell_name = "__".join(labels.values())
        if cell_name in seen:
            raise ConfigError(f"{source}: two cells are both named {cell_name}; relabel an axis")
        seen.add(cell_name)
        cell_data = data
        for axis, i in zip(axes, combo, strict=True):
            cell_data = deep_merge(cell_data, axis.overrides[i])
        cell_data = deep_merge(cell_data, {"name": cell_name})
        config = validate_config(cell_data, source=f"{source}: cell {cell_name}")
        group = "__".join(v for k, v in labels.items() if k != group_over) or name
        cells.append(Cell(cell_name, labels, group, config))
    return cells


def _apply_preset_axes(
    raw_axes: dict[str, Any], preset_axes: dict[str, Any], where: str
) -> dict[str, Any]:
    out = dict(raw_axes)
    for key, values in preset_axes.items():
        base_values = raw_axes.get(key)
        if isinstance(base_values, dict) and isinstance(values, list):
            missing = [v for v in values if str(v) not in base_values]
            if missing:
                raise ConfigError(
                    f"{where}.{key}: unknown label(s) {missing} "
                    f"(axis has: {', '.join(base_values)})"
                )
            out[key] = {str(v): base_values[str(v)] for v in values}
        else:
            out[key] = values
    return out


def registered_options() -> dict[str, Registry]:
    """Options whose values are registry names: an axis ``OPTION: all`` takes every name."""
    from semid.data.queries import QUERY_GENERATORS
    from semid.embeddings.spaces import SPACES
    from semid.quantizers.registry import QUANTIZERS

    return {
        "quantizer.name": QUANTIZERS,
        "embedding.space": SPACES,
        "queries.source": QUERY_GENERATORS,
    }


def _parse_axis(key: str, values: Any, source: str) -> Axis:
    where = f"{source}: axes.{key}"
    if isinstance(values, dict):  # a named axis: label -> overrides
        labels, raw, overrides = [], [], []
        for label, mapping in values.items():
            labels.append(_slug(str(label)))
            raw.append(str(label))
            overrides.append(_dotted_mapping(mapping or {}, f"{where}.{label}"))
        return Axis(key, labels, raw, overrides)
    if values == "all" and key in registered_options():
        values = registered_options()[key].names()
    if not isinstance(values, list):
        raise ConfigError(f"{where}: expected a list of values or a mapping label -> overrides")
    if key == SHAPE_AXIS:
        labels, overrides = [], []
        for value in values:
            match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", str(value))
            if not match:
                raise ConfigError(f"{where}: {value!r} is not LEVELSxCODEBOOK, e.g. 2x256")
            levels, size = int(match[1]), int(match[2])
            labels.append(f"{levels}x{size}")
            overrides.append({"quantizer": {"levels": levels, "codebook_size": size}})
        return Axis(key, labels, list(labels), overrides)
    _check_option(key, where)
    labels = [_value_label(key, v) for v in values]
    overrides = [parse_override(f"{key}=") for _ in values]
    for override, value in zip(overrides, values, strict=True):
        _set_leaf(override, key, value)
    return Axis(key, labels, list(values), overrides)


def _parse_baseline(
    raw: Any, axes: list[Axis], group_over: str | None, source: str
) -> dict[str, str]:
    if raw is None:
        return {}
    raw = _mapping(raw, f"{source}: baseline")
    by_name = {a.name: a for a in axes}
    out = {}
    for key, value in raw.items():
        if key not in by_name or key == group_over:
            raise ConfigError(
                f"{source}: baseline.{key}: not an axis of the grid "
                f"(axes: {', '.join(a.name for a in axes if a.name != group_over)})"
            )
        axis = by_name[key]
        label = _match_label(axis, value)
        if label is None:
            raise ConfigError(
                f"{source}: baseline.{key}: {value!r} is not a value of the axis "
                f"({', '.join(axis.labels)})"
            )
        out[key] = label
    return out


def _match_label(axis: Axis, value: Any) -> str | None:
    for label, raw in zip(axis.labels, axis.values, strict=True):
        if raw == value or label == str(value) or str(raw) == str(value):
            return label
    return None


def _value_label(key: str, value: Any) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if leaf.endswith("seed") and isinstance(value, int) and not isinstance(value, bool):
        return f"s{value}"
    if isinstance(value, bool):
        return f"{leaf}-{'on' if value else 'off'}"
    if value is None:
        return f"{leaf}-none"
    if isinstance(value, str):
        return _slug(value)
    if isinstance(value, (int, float)):
        return _slug(f"{leaf}{value}")
    return _slug(f"{leaf}-{stable_hash(value, 6)}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def _set_leaf(node: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    return value


def _check_keys(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            allowed_text = ", ".join(sorted(allowed))
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {allowed_text})")


def _dotted_mapping(mapping: Any, where: str) -> dict[str, Any]:
    """``{"a.b": 1, "c": {"d": 2}}`` -> ``{"a": {"b": 1}, "c": {"d": 2}}``, keys checked."""
    mapping = _mapping(mapping, where)
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        key = str(key)
        if isinstance(value, dict):
            nested = _dotted_mapping({f"{key}.{k}": v for k, v in value.items()}, where)
            out = deep_merge(out, nested)
            continue
        _check_option(key, f"{where}: {key}")
        node = parse_override(f"{key}=")
        _set_leaf(node, key, value)
        out = deep_merge(out, node)
    return out


def _check_option(key: str, where: str) -> None:
    """Raise ConfigError unless ``key`` (dotted) names an option of :class:`RunConfig`."""
    model: type[BaseModel] | None = RunConfig
    walked: list[str] = []
    for part in key.split("."):
        if model is None:  # inside a free-form (dict) option: anything goes
            return
        fields = model.model_fields
        if part not in fields:
            prefix = ".".join(walked)
            options = ", ".join(sorted(fields))
            raise ConfigError(
                f"{where}: unknown config option {key!r} "
                f"({'options of ' + prefix if prefix else 'top-level options'}: {options})"
            )
        walked.append(part)
        model = _submodel(fields[part].annotation)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Model``, ``Model | None``), else None."""
    for candidate in (annotation, *get_args(annotation)):
        with contextlib.suppress(TypeError):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
    return None


def describe_overrides(grid: Grid, cell: Cell) -> str:
    """The config values that make a cell, as ``key=value`` pairs."""
    parts = []
    for axis in grid.axes:
        i = axis.labels.index(cell.labels[axis.name])
        for key, value in _flatten(axis.overrides[i]).items():
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
