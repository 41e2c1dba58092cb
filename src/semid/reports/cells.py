"""A grid's results folder as found on disk: its cells, grouped over seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from semid.errors import ConfigError
from semid.grid import read_grid_json, write_results
from semid.io import read_json

GENERATIVE = "generative"
TASKS = ("search", "rec")
# Config keys that only reseed training: rows average over them (see ``load_study``).
SEED_AXES = ("seed", "train.seed", "quantizer.seed", "embedding.seed")


@dataclass
class CellResult:
    """One cell of a grid as found on disk."""

    name: str
    group: str
    labels: dict[str, str]
    seed: str
    run_dir: Path
    status: str
    metrics: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    _predictions: pl.DataFrame | None = field(default=None, repr=False)

    def metric(self, method: str, task: str, name: str) -> float:
        value = ((self.metrics or {}).get(method) or {}).get(task, {}).get(name)
        return float("nan") if value is None else float(value)

    def stage_path(self, stage: str) -> Path | None:
        path = ((self.manifest or {}).get("stages", {}).get(stage) or {}).get("path")
        return Path(path) if path else None

    def predictions(self, method: str, task: str) -> pl.DataFrame | None:
        """This run's per-example predictions for one method and task (or None)."""
        if self._predictions is None:
            path = self.run_dir / "predictions.parquet"
            if not path.exists():
                return None
            self._predictions = pl.read_parquet(
                path, columns=["method", "task", "input", "target", "rank"]
            )
        frame = self._predictions.filter(
            (pl.col("method") == method) & (pl.col("task") == task)
        ).select("input", "target", "rank")
        return frame if frame.height else None


@dataclass
class Study:
    """A grid's results folder: its description and its cells."""

    results_dir: Path
    info: dict[str, Any]
    cells: list[CellResult]

    @property
    def group_over(self) -> str | None:
        return self.info.get("group_over")

    def groups(self) -> dict[str, list[CellResult]]:
        """Finished cells by group, groups in grid order."""
        out: dict[str, list[CellResult]] = {}
        for cell in self.cells:
            if cell.status == "done":
                out.setdefault(cell.group, []).append(cell)
        return out

    def group_labels(self, group: str) -> dict[str, str]:
        for cell in self.cells:
            if cell.group == group:
                return {k: v for k, v in cell.labels.items() if k != self.group_over}
        return {}

    def baseline_of(self, group: str) -> str | None:
        """The group a row is tested against (None without a baseline in the grid)."""
        baseline = self.info.get("baseline") or {}
        if not baseline:
            return None
        labels = self.group_labels(group) | baseline
        return "__".join(labels.values()) or None

    def tasks(self) -> tuple[str, ...]:
        """The tasks (of :data:`TASKS`) some finished cell has metrics for: ``("search",)`` for
        a search-only study; every task while no cell has finished."""
        found = {
            task
            for cells in self.groups().values()
            for cell in cells
            for per_task in (cell.metrics or {}).values()
            for task in per_task
        }
        present = tuple(t for t in TASKS if t in found)
        return present or TASKS

    def varying_axes(self) -> list[str]:
        """Axes (except the seed axis) with more than one value: the table's label columns."""
        return [
            a["name"]
            for a in self.info["axes"]
            if a["name"] != self.group_over and len(a["labels"]) > 1
        ]

    def fixed_axes(self) -> dict[str, str]:
        return {
            a["name"]: a["labels"][0]
            for a in self.info["axes"]
            if a["name"] != self.group_over and len(a["labels"]) == 1
        }


def load_study(results_dir: str | Path) -> Study:
    """Read ``grid.json`` and every cell's run directory under ``results_dir``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: no such results folder")
    info = read_grid_json(results_dir)
    records = {r["cell"]: r for r in write_results(results_dir)}
    group_over = info.get("group_over")
    regroup = False
    axis_names = [a["name"] for a in info.get("axes", [])]
    if group_over is None:  # a grid without group_over still averages over its seed axis
        group_over = next((a for a in SEED_AXES if a in axis_names), None)
        if group_over is not None:
            info = info | {"group_over": group_over}
            regroup = True
    cells = []
    for entry in info["cells"]:
        record = records[entry["name"]]
        run_dir = results_dir / entry["name"]
        group = entry["group"]
        if regroup:
            rest = [v for a, v in entry["labels"].items() if a != group_over]
            group = "__".join(rest) or info["name"]
        cell = CellResult(
            name=entry["name"],
            group=group,
            labels=entry["labels"],
            seed=entry["labels"].get(group_over, "") if group_over else "",
            run_dir=run_dir,
            status=record["status"],
            metrics=record.get("metrics"),
        )
        if (run_dir / "config.json").exists():
            cell.config = read_json(run_dir / "config.json")
        if (run_dir / "manifest.json").exists():
            cell.manifest = read_json(run_dir / "manifest.json")
        cells.append(cell)
    return Study(results_dir, info, cells)


def non_seed_differences(cells: list[CellResult]) -> list[str]:
    """Config keys (dotted) that differ between the runs of one row other than the seeds.

    Empty when the row's runs differ only in ``seed`` / ``train.seed`` / ``name``, i.e. when
    the row is what it claims: one setting over training seeds.
    """
    flats = [_flatten_config(c.config) for c in cells if c.config is not None]
    keys = sorted({k for f in flats for k in f} - set(SEED_AXES) - {"name"})
    return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]


def _flatten_config(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def default_k(study: Study) -> int:
    """30 when every finished cell has Recall@30 (the paper's cut-off), else the largest K."""
    common: set[int] | None = None
    for cell in study.cells:
        if cell.status != "done" or not cell.metrics:
            continue
        ks = {
            int(name.split("@", 1)[1])
            for tasks in cell.metrics.values()
            for values in tasks.values()
            for name in values
            if name.startswith("recall@") and name.split("@", 1)[1].isdigit()
        }
        common = ks if common is None else common & ks
    if not common:
        return 30
    return 30 if 30 in common else max(common)
