"""Running experiment grids: scheduling cells that share one stage cache.

Grid files expand into cells in :mod:`semid.grid_spec`; :mod:`semid.grid_results` reads and
writes the results folder.

Every cell runs the ordinary pipeline into ``RESULTS_DIR/<cell>/`` with one stage cache for all,
so cells that agree upstream share those stages. Cells are ordered so that cells sharing stages
run together, and with ``jobs > 1`` a cell starts only when none of the stages it still needs is
being built by a running cell (exact stage keys, computed as the pipeline computes them). A
finished cell leaves a done marker and is skipped when the grid is run again; an interrupted one
resumes through the stage cache.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from semid.config import OPERATIONAL_FIELDS, RunConfig
from semid.errors import ConfigError, SemidError
from semid.grid_results import (
    CELL_DONE_FILE,
    CELL_FAILED_FILE,
    read_grid_json,
    write_grid_json,
    write_results,
)
from semid.grid_spec import Cell, Grid, describe_overrides, expand_grid, load_grid
from semid.io import read_json, stable_hash, write_json
from semid.runs import DONE_FILE as STAGE_DONE_FILE
from semid.runs import StageResult, stage_folder, stage_kind

# re-exported: grid files and the results folder, for callers that import them from here
__all__ = [
    "CELL_DONE_FILE",
    "CELL_FAILED_FILE",
    "CELL_LOG_FILE",
    "Cell",
    "Grid",
    "cell_status",
    "config_hash",
    "describe_overrides",
    "expand_grid",
    "load_grid",
    "order_cells",
    "pending_stages",
    "pipeline_stage_keys",
    "read_grid_json",
    "run_cell",
    "run_grid",
    "select_cells",
    "stage_sharing",
    "write_grid_json",
    "write_results",
]

log = logging.getLogger(__name__)

CELL_LOG_FILE = "grid.log"

PipelineFn = Callable[[RunConfig, Path, Path], Path]
StageKeysFn = Callable[[RunConfig], dict[str, str]]
FinishedFn = Callable[[Cell, str], None]


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
    statuses, todo = _skip_done(order_cells(cells, keys), out_dir)
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
        _run_here(todo, out_dir, cache_dir, pipeline, finished)
    else:
        _run_in_pool(
            todo, keys, jobs, out_dir, cache_dir, pipeline, poll_seconds, executor, finished
        )
    write_results(out_dir)
    return statuses


def _skip_done(cells: list[Cell], out_dir: Path) -> tuple[dict[str, str], list[Cell]]:
    """The cells already done with their config (status ``skipped``) and those to run."""
    statuses: dict[str, str] = {}
    todo = []
    for cell in cells:
        if cell_status(out_dir, cell) == "done":
            statuses[cell.name] = "skipped"
        else:
            todo.append(cell)
    return statuses, todo


def _run_here(
    todo: list[Cell], out_dir: Path, cache_dir: Path, pipeline: PipelineFn, finished: FinishedFn
) -> None:
    """Run the cells one after the other in this process (``jobs=1``)."""
    for cell in todo:
        try:
            run_cell(cell.config, out_dir, cache_dir, pipeline)
            finished(cell, "done")
        except Exception as exc:  # one failing cell must not stop the grid
            finished(cell, f"failed: {_record_failure(out_dir, cell, exc)}")


def _run_in_pool(
    todo: list[Cell],
    keys: dict[str, dict[str, str]],
    jobs: int,
    out_dir: Path,
    cache_dir: Path,
    pipeline: PipelineFn,
    poll_seconds: float,
    executor: Callable[[int], Any] | None,
    finished: FinishedFn,
) -> None:
    """Run the cells in ``jobs`` workers (``executor(jobs)``, else spawned processes), each
    started as soon as no running cell is building a stage it needs."""
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
                for cell in _ready_cells(waiting, running, keys, jobs, cache_dir):
                    future = pool.submit(
                        _run_cell_in_worker,
                        cell.config.model_dump(mode="json"),
                        str(out_dir),
                        str(cache_dir),
                        pipeline,
                    )
                    running[future] = cell
                    waiting.remove(cell)
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


def _ready_cells(
    waiting: list[Cell],
    running: dict[Future, Cell],
    keys: dict[str, dict[str, str]],
    jobs: int,
    cache_dir: Path,
) -> list[Cell]:
    """The waiting cells to start now, in order, while fewer than ``jobs`` run: each one whose
    unfinished stages no running (or just chosen) cell is building."""
    busy: set[tuple[str, str]] = set()
    for cell in running.values():
        busy |= pending_stages(keys[cell.name], cache_dir)
    ready: list[Cell] = []
    for cell in waiting:
        if len(running) + len(ready) >= jobs:
            break
        needs = pending_stages(keys[cell.name], cache_dir)
        if needs & busy:
            continue  # a running cell is building one of its stages
        ready.append(cell)
        busy |= needs
    return ready


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
