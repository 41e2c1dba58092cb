"""What every stage shares: the pipeline state, input fingerprints, threads and seeds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from semid.config import ALL_TASKS, RunConfig
from semid.io import file_hash
from semid.runs import Run, StageResult


@dataclass
class PipelineState:
    """Stage results of a run, filled as the pipeline advances."""

    cfg: RunConfig
    run: Run
    stages: dict[str, StageResult]

    def path(self, stage: str) -> Path:
        return self.stages[stage].path


def fingerprint(path: Path | None) -> Any:
    """Names, sizes and content hashes of the files a stage reads (cheap for small files)."""
    if path is None or not Path(path).exists():
        return None  # the stage itself reports a missing input with a clear message
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for f in files:
        size = f.stat().st_size
        out.append([f.name, size, file_hash(f) if size < 64 << 20 else int(f.stat().st_mtime)])
    return out


def set_threads(n: int | None) -> None:
    """Use ``n`` torch threads (default: $SEMID_NUM_THREADS, else every core we may use)."""
    if n is None and os.environ.get("SEMID_NUM_THREADS"):
        n = int(os.environ["SEMID_NUM_THREADS"])
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, n or 1))


def generator_seed(cfg: RunConfig) -> int:
    """The generator's seed: ``train.seed`` when set, else the run seed."""
    return cfg.seed if cfg.train.seed is None else cfg.train.seed


def embedding_seed(cfg: RunConfig) -> int:
    """The embedding training's seed: ``embedding.seed`` when set, else the run seed."""
    return cfg.seed if cfg.embedding.seed is None else cfg.embedding.seed


def quantizer_seed(cfg: RunConfig) -> int:
    """The quantizer's seed: ``quantizer.seed`` when set, else the run seed."""
    return cfg.seed if cfg.quantizer.seed is None else cfg.quantizer.seed


def has_rec(cfg: RunConfig) -> bool:
    """Whether the run trains and scores recommendation (``tasks`` holds ``rec``)."""
    return "rec" in cfg.tasks


def tasks_material(cfg: RunConfig) -> dict[str, Any]:
    """``tasks`` for a stage's key material: empty for the default (both tasks), so the keys
    of runs that do not set it stay what they were."""
    return {} if cfg.tasks == ALL_TASKS else {"tasks": list(cfg.tasks)}
