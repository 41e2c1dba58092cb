"""Checkpoints inside a long stage, and cleaning what killed attempts left in the stage cache.

A stage being built in the cache (:meth:`semid.runs.Run.stage`) gets a checkpoint folder next
to its final folder, ``<cache>/<stage>/.<key>.ckpt/``, that survives a killed attempt (the
attempt's ``.tmp`` build folder does not: it is removed when the stage next runs). Training
loops ask :func:`active_dir` for it and keep their latest state there as ``step-<n>/``
(written as ``.step-<n>.tmp`` and renamed, so a kill mid-save leaves the previous one intact);
the folder is removed once the stage is in place.

The state itself is saved by the engine: ``accelerate``'s ``save_state``/``load_state`` (model,
optimizer, scheduler, step and per-process RNG states), plus a small per-process file with the
loop's own progress (position in the data order, its numpy/torch generators, the loss curve).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_ACTIVE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("semid_ckpt", default=None)

STEP_DIR = re.compile(r"^step-(\d+)$")

# Tests: raise after this many optimizer steps of a training loop (simulates a kill).
FAIL_AFTER_ENV = "SEMID_FAIL_AFTER_STEP"


class SimulatedKill(RuntimeError):
    """Raised by :func:`maybe_fail` (``$SEMID_FAIL_AFTER_STEP``); tests only."""


def checkpoint_dir(stage_path: Path) -> Path:
    """The checkpoint folder of the stage folder ``<cache>/<stage>/<key>``."""
    return stage_path.parent / f".{stage_path.name}.ckpt"


@contextlib.contextmanager
def stage_scope(folder: Path | None) -> Iterator[None]:
    """Make ``folder`` the checkpoint folder of the training loops run inside the block."""
    token = _ACTIVE.set(folder)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_dir() -> Path | None:
    """The checkpoint folder of the stage being built (None outside a stage)."""
    return _ACTIVE.get()


def clean_stale(stage_path: Path) -> list[Path]:
    """Remove the ``.tmp`` build folders that killed attempts at ``stage_path`` left behind.

    Safe because a stage is never built twice at once (a grid waits for the cell building it).
    """
    removed = []
    for tmp in stage_path.parent.glob(f".{stage_path.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        removed.append(tmp)
    if removed:
        log.info("stage %s: removed %d stale temporary folder(s)", stage_path, len(removed))
    return removed


def latest(folder: Path | None) -> tuple[int, Path] | None:
    """The newest complete checkpoint ``(step, path)`` in ``folder``, if any."""
    if folder is None or not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := STEP_DIR.match(p.name)) and p.is_dir()
    ]
    return max(found) if found else None


def staging(folder: Path, step: int) -> Path:
    """Where checkpoint ``step`` is written before :func:`publish` renames it."""
    return folder / f".step-{step:08d}.tmp"


def publish(folder: Path, step: int) -> Path:
    """Rename the staged checkpoint ``step`` into place and drop every older one (rank 0)."""
    final = folder / f"step-{step:08d}"
    os.replace(staging(folder, step), final)
    for other in folder.iterdir():
        if other != final:
            shutil.rmtree(other, ignore_errors=True)
    return final


def maybe_fail(step: int) -> None:
    """Tests: raise :class:`SimulatedKill` once ``step`` reaches ``$SEMID_FAIL_AFTER_STEP``."""
    limit = os.environ.get(FAIL_AFTER_ENV)
    if limit and step >= int(limit):
        raise SimulatedKill(f"simulated kill after step {step}")
