"""A grid's results folder: ``grid.json``, the cells' markers, ``results.json`` and
``results.parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semid.errors import ConfigError
from semid.grid_spec import Grid
from semid.io import read_json, write_json, write_parquet

GRID_FILE = "grid.json"
CELL_DONE_FILE = "_grid_done.json"
CELL_FAILED_FILE = "_grid_failed.json"
RESULTS_JSON = "results.json"
RESULTS_PARQUET = "results.parquet"


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
