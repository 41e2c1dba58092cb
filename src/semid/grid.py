"""Experiment grids: a YAML file expands into cells (one run config each), run with a shared cache.

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

Cells are named by their axis labels (``search__2x256__defaults__s0``). Every cell runs the
ordinary pipeline into ``RESULTS_DIR/<cell>/`` with one stage cache for all, so cells that agree
upstream share those stages. Cells are ordered so that cells sharing stages run together, and with
``jobs > 1`` a cell starts only when none of the stages it still needs is being built by a
running cell (exact stage keys, computed as the pipeline computes them). A finished cell leaves
a done marker and is skipped when the grid is run again; an interrupted one resumes through the
stage cache.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import logging
import multiprocessing
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from semid.config import (
    OPERATIONAL_FIELDS,
    RunConfig,
    deep_merge,
    parse_override,
    preset_dict,
    read_yaml,
    validate_config,
    with_plugins,
)
from semid.errors import ConfigError, SemidError
from semid.io import read_json, stable_hash, write_json, write_parquet
from semid.registry import Registry, load_plugins
from semid.runs import DONE_FILE as STAGE_DONE_FILE
from semid.runs import StageResult, stage_folder, stage_kind

log = logging.getLogger(__name__)

GRID_FILE = "grid.json"
CELL_DONE_FILE = "_grid_done.json"
CELL_FAILED_FILE = "_grid_failed.json"
CELL_LOG_FILE = "grid.log"
RESULTS_JSON = "results.json"
RESULTS_PARQUET = "results.parquet"
SHAPE_AXIS = "quantizer.shape"

_TOP_KEYS = {"name", "description", "base", "presets", "axes", "baseline", "group_over", "plugins"}
_BASE_KEYS = {"preset", "set"}
_PRESET_KEYS = {"preset", "set", "axes", "description"}

PipelineFn = Callable[[RunConfig, Path, Path], Path]
StageKeysFn = Callable[[RunConfig], dict[str, str]]


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


# ---------------------------------------------------------------------------------------------
# Expansion
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Stage keys and ordering
# ---------------------------------------------------------------------------------------------


class _KeyRecorder:
    """Stands in for :class:`semid.runs.Run`: records each stage's key, builds nothing."""

    def __init__(self) -> None:
        self.cache_dir = Path(".")
        self.keys: dict[str, str] = {}

    def is_cached(self, name: str, key_material: dict) -> bool:
        return False

    def stage(self, name: str, key_material: dict, build: Callable, force: bool = False, **_):
        key = stable_hash(key_material)
        self.keys[name] = key
        return StageResult(name, key, stage_folder(self.cache_dir, name, key), False, 0.0, None)


def pipeline_stage_keys(cfg: RunConfig) -> dict[str, str]:
    """The cache key of every pipeline stage of ``cfg``, computed as the pipeline does."""
    from semid.pipeline import STAGE_FUNCTIONS, STAGES, PipelineState

    recorder = _KeyRecorder()
    state = PipelineState(cfg, recorder, {})  # type: ignore[arg-type]
    for stage in STAGES:
        state.stages[stage] = STAGE_FUNCTIONS[stage](state)
    return recorder.keys


def order_cells(cells: list[Cell], keys: dict[str, dict[str, str]]) -> list[Cell]:
    """Cells sharing upstream stages next to each other, first-seen groups first.

    Sorts by the first appearance of each stage key in pipeline order, so one embedding feeds
    all its quantizers, one ID set all its generators, before the next group starts.
    """
    first_seen: dict[tuple[str, str], int] = {}
    for cell in cells:
        for stage, key in keys[cell.name].items():
            first_seen.setdefault((stage_kind(stage), key), len(first_seen))
    return sorted(
        cells,
        key=lambda c: tuple(first_seen[(stage_kind(s), k)] for s, k in keys[c.name].items()),
    )


def pending_stages(keys: dict[str, str], cache_dir: Path) -> set[tuple[str, str]]:
    """The stage folders (kind, key) of a cell that are not finished in the cache yet.

    Folders, not stage names: a composite space's ``embeddings/search`` and a search cell's
    ``embeddings`` with the same key are one folder, built once.
    """
    return {
        (stage_kind(stage), key)
        for stage, key in keys.items()
        if not (stage_folder(cache_dir, stage, key) / STAGE_DONE_FILE).exists()
    }


def stage_sharing(
    keys: dict[str, dict[str, str]], cache_dir: Path
) -> dict[str, tuple[int, int, int]]:
    """Per stage: (cells, distinct stage folders, folders already in the cache)."""
    out: dict[str, tuple[int, int, int]] = {}
    stages: list[str] = []
    for cell_keys in keys.values():
        stages += [s for s in cell_keys if s not in stages]
    for stage in stages:
        distinct = {k[stage] for k in keys.values() if stage in k}
        cached = sum(
            (stage_folder(cache_dir, stage, key) / STAGE_DONE_FILE).exists() for key in distinct
        )
        out[stage] = (sum(stage in k for k in keys.values()), len(distinct), cached)
    return out


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def config_hash(cfg: RunConfig) -> str:
    """Hash of a cell's full config (its done marker is valid only for that config)."""
    return stable_hash(cfg.model_dump(mode="json", exclude={"plugins": True, **OPERATIONAL_FIELDS}))


def cell_status(out_dir: Path, cell: Cell) -> str:
    """``done`` (finished with this config), ``failed`` (last attempt raised) or ``todo``."""
    run_dir = Path(out_dir) / cell.name
    marker = run_dir / CELL_DONE_FILE
    if (
        marker.exists()
        and (run_dir / "metrics.json").exists()
        and read_json(marker).get("config_hash") == config_hash(cell.config)
    ):
        return "done"
    return "failed" if (run_dir / CELL_FAILED_FILE).exists() else "todo"


def default_pipeline(cfg: RunConfig, runs_dir: Path, cache_dir: Path) -> Path:
    """The real pipeline (:func:`semid.pipeline.run_pipeline`)."""
    from semid.pipeline import run_pipeline

    return run_pipeline(cfg, runs_dir, cache_dir)


def run_cell(
    cfg: RunConfig, out_dir: Path, cache_dir: Path, pipeline: PipelineFn = default_pipeline
) -> dict[str, Any]:
    """Run one cell and leave its done marker; returns the marker."""
    start = time.perf_counter()
    run_dir = Path(out_dir) / str(cfg.name)
    (run_dir / CELL_FAILED_FILE).unlink(missing_ok=True)
    run_dir = Path(pipeline(cfg, Path(out_dir), Path(cache_dir)))
    if not (run_dir / "metrics.json").exists():
        raise SemidError(f"cell {cfg.name}: the pipeline finished without {run_dir}/metrics.json")
    marker = {
        "cell": cfg.name,
        "config_hash": config_hash(cfg),
        "seconds": round(time.perf_counter() - start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(run_dir / CELL_DONE_FILE, marker)
    return marker


def _run_cell_in_worker(
    cfg_json: dict, out_dir: str, cache_dir: str, pipeline: PipelineFn
) -> dict[str, Any]:
    """Worker-process entry: output goes to ``<cell>/grid.log``."""
    cfg = RunConfig.model_validate(cfg_json)
    run_dir = Path(out_dir) / str(cfg.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / CELL_LOG_FILE, "a") as fh:
        sys.stdout = sys.stderr = fh
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            return run_cell(cfg, Path(out_dir), Path(cache_dir), pipeline)
        except BaseException:
            traceback.print_exc(file=fh)
            raise
        finally:
            root.removeHandler(handler)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def _record_failure(out_dir: Path, cell: Cell, exc: BaseException) -> str:
    message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    write_json(Path(out_dir) / cell.name / CELL_FAILED_FILE, {"cell": cell.name, "error": message})
    log.error("cell %s failed: %s", cell.name, message)
    return message


def select_cells(cells: Iterable[Cell], only: list[str] | None) -> list[Cell]:
    """The cells whose name matches any of the ``only`` glob patterns (all when None)."""
    cells = list(cells)
    if not only:
        return cells
    chosen = [c for c in cells if any(fnmatch.fnmatchcase(c.name, p) for p in only)]
    if not chosen:
        raise ConfigError(f"--only {' '.join(only)}: matches no cell")
    return chosen


def run_grid(
    grid: Grid,
    out_dir: str | Path,
    *,
    jobs: int = 1,
    cache_dir: str | Path | None = None,
    only: list[str] | None = None,
    pipeline: PipelineFn = default_pipeline,
    stage_keys: StageKeysFn = pipeline_stage_keys,
    poll_seconds: float = 2.0,
    executor: Callable[[int], Any] | None = None,
) -> dict[str, str]:
    """Run (or resume) every cell of ``grid``; returns each cell's status.

    Parameters
    ----------
    grid : Grid
        The expanded grid (:func:`load_grid`).
    out_dir : path
        Results folder: ``grid.json``, one run directory per cell, ``results.json`` and
        ``results.parquet``.
    jobs : int
        Cells run side by side in worker processes (1 = in this process). A cell waits while
        another running cell is building a stage it needs, so no stage is built twice.
    cache_dir : path, optional
        Stage cache shared by the cells (default ``out_dir/.cache``); point several grids at one
        cache to share their common stages.
    only : list of str, optional
        Glob patterns: run only the matching cells.
    pipeline, stage_keys : callables
        The pipeline and its stage-key function (replaceable for tests).
    poll_seconds : float
        How often a waiting cell re-checks the cache (``jobs > 1``).
    executor : callable, optional
        ``executor(jobs)`` -> a :class:`concurrent.futures.Executor`-like context manager that
        runs the cells instead of the local process pool (:mod:`semid.grid_ray`: Ray tasks).

    Returns
    -------
    dict
        Cell name -> ``done`` (ran now), ``skipped`` (already done) or ``failed: <error>``.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be at least 1")
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / ".cache"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_grid_json(grid, out_dir, cache_dir)
    cells = select_cells(grid.cells, only)
    keys = {cell.name: stage_keys(cell.config) for cell in cells}
    statuses: dict[str, str] = {}
    todo = []
    for cell in order_cells(cells, keys):
        if cell_status(out_dir, cell) == "done":
            statuses[cell.name] = "skipped"
        else:
            todo.append(cell)
    log.info(
        "grid %s: %d cells, %d done, %d to run (jobs=%d)",
        grid.name,
        len(cells),
        len(statuses),
        len(todo),
        jobs,
    )
    total = len(todo)

    def finished(cell: Cell, status: str) -> None:
        statuses[cell.name] = status
        done_count = sum(1 for c in todo if c.name in statuses)
        log.info("[%d/%d] %s: %s", done_count, total, cell.name, status)
        write_results(out_dir)

    if jobs == 1 and executor is None:
        for cell in todo:
            try:
                run_cell(cell.config, out_dir, cache_dir, pipeline)
                finished(cell, "done")
            except Exception as exc:  # one failing cell must not stop the grid
                finished(cell, f"failed: {_record_failure(out_dir, cell, exc)}")
        write_results(out_dir)
        return statuses

    context = multiprocessing.get_context("spawn")  # no fork: torch threads do not survive it
    waiting = list(todo)
    running: dict[Future, Cell] = {}
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    with (
        _environment(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, SEMID_NUM_THREADS=threads),
        executor(jobs)
        if executor
        else ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool,
    ):
        try:
            while waiting or running:
                busy: set[tuple[str, str]] = set()
                for cell in running.values():
                    busy |= pending_stages(keys[cell.name], cache_dir)
                for cell in list(waiting):
                    if len(running) >= jobs:
                        break
                    needs = pending_stages(keys[cell.name], cache_dir)
                    if needs & busy:
                        continue  # a running cell is building one of its stages
                    future = pool.submit(
                        _run_cell_in_worker,
                        cell.config.model_dump(mode="json"),
                        str(out_dir),
                        str(cache_dir),
                        pipeline,
                    )
                    running[future] = cell
                    waiting.remove(cell)
                    busy |= needs
                    log.info("started %s (log: %s)", cell.name, out_dir / cell.name / CELL_LOG_FILE)
                done, _ = wait(list(running), timeout=poll_seconds, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = running.pop(future)
                    try:
                        future.result()
                        finished(cell, "done")
                    except Exception as exc:
                        finished(cell, f"failed: {_record_failure(out_dir, cell, exc)}")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    write_results(out_dir)
    return statuses


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the workers spawned meanwhile), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def write_grid_json(grid: Grid, out_dir: Path, cache_dir: Path) -> None:
    """Record the grid (axes, cells, baseline) in ``out_dir/grid.json``."""
    info = grid.to_json() | {"cache_dir": str(Path(cache_dir).resolve())}
    write_json(Path(out_dir) / GRID_FILE, info)


def read_grid_json(out_dir: Path) -> dict[str, Any]:
    """The ``grid.json`` of a results folder; raises ConfigError when it is missing."""
    path = Path(out_dir) / GRID_FILE
    if not path.exists():
        raise ConfigError(f"{out_dir}: not a grid results folder ({GRID_FILE} missing)")
    return read_json(path)


def collect_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """One record per cell: labels, status, run directory, config hash and metrics."""
    out_dir = Path(out_dir)
    info = read_grid_json(out_dir)
    records = []
    for cell in info["cells"]:
        run_dir = out_dir / cell["name"]
        record: dict[str, Any] = {
            "cell": cell["name"],
            "group": cell["group"],
            "labels": cell["labels"],
            "run_dir": str(run_dir),
            "status": "todo",
            "metrics": None,
        }
        if (run_dir / CELL_DONE_FILE).exists() and (run_dir / "metrics.json").exists():
            record["status"] = "done"
            record["metrics"] = read_json(run_dir / "metrics.json")
            record["seconds"] = read_json(run_dir / CELL_DONE_FILE).get("seconds")
        elif (run_dir / CELL_FAILED_FILE).exists():
            record["status"] = "failed"
            record["error"] = read_json(run_dir / CELL_FAILED_FILE).get("error")
        records.append(record)
    return records


def results_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long rows for ``results.parquet``: one per (cell, method, task), metrics as columns."""
    rows = []
    for rec in records:
        for method, tasks in (rec["metrics"] or {}).items():
            for task, values in tasks.items():
                row = {
                    "cell": rec["cell"],
                    "group": rec["group"],
                    **rec["labels"],
                    "method": method,
                    "task": task,
                }
                row.update({k: float(v) if v is not None else None for k, v in values.items()})
                rows.append(row)
    return rows


def write_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``results.json`` (every cell) and ``results.parquet`` (every metric)."""
    import polars as pl

    out_dir = Path(out_dir)
    records = collect_results(out_dir)
    info = read_grid_json(out_dir)
    write_json(
        out_dir / RESULTS_JSON,
        {"grid": info["name"], "preset": info.get("preset"), "cells": records},
    )
    rows = results_rows(records)
    if rows:
        write_parquet(out_dir / RESULTS_PARQUET, pl.from_dicts(rows, infer_schema_length=None))
    return records


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
