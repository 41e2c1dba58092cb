"""``semid grid --backend ray``: every cell of a grid is one Ray task on a cluster.

The scheduling is :func:`semid.grid.run_grid`'s (a cell starts only when none of the stages it
still needs is being built by a running cell, so no stage is built twice; done cells are
skipped; a killed cell resumes through the stage cache); Ray only places and runs the tasks,
each declaring the CPUs and GPUs it needs (``num_cpus`` / ``num_gpus``).

Requirement: the results folder and the stage cache must be one path that the driver and every
Ray worker see (a shared filesystem: NFS, Lustre, a mounted bucket, or one machine). The driver
reads the cache to decide which cell may start; the workers read and write it.

A task whose worker dies (node lost, OOM kill) is retried by Ray (``max_retries``); the retry
resumes the cell from the stage cache and the stage's own checkpoints (:mod:`semid.checkpoint`).
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from semid.errors import ConfigError


def _import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("--backend ray: Ray is not installed (pip install 'semid[ray]')") from exc
    return ray


def _cell_task(threads: int, *args):
    """Ray task body: the local worker entry with the task's CPU count as torch threads."""
    from semid.grid import _run_cell_in_worker

    os.environ["SEMID_NUM_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return _run_cell_in_worker(*args)


class RayExecutor:
    """The part of :class:`concurrent.futures.Executor` that :func:`run_grid` uses, on Ray."""

    def __init__(self, num_cpus: float = 1, num_gpus: float = 0, max_retries: int = 3) -> None:
        ray = _import_ray()
        self.ray = ray
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.task = ray.remote(_cell_task).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries
        )
        self.refs: list[Any] = []

    def submit(self, fn, *args) -> Future:
        from semid.grid import _run_cell_in_worker

        if fn is not _run_cell_in_worker:
            raise ValueError("RayExecutor runs grid cells only")
        ref = self.task.remote(max(1, int(self.num_cpus)), *args)
        self.refs.append(ref)
        return ref.future()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref in self.refs:
                self.ray.cancel(ref, force=True)

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown(wait=True)


def connect(address: str | None = None, **init_kwargs) -> Any:
    """Join the Ray cluster at ``address`` ('auto' = the one this node belongs to; None =
    start a local one unless this process is already connected)."""
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address, **init_kwargs)
    return ray


def cluster_slots(num_cpus: float, num_gpus: float) -> int:
    """How many cells the connected cluster runs at once with these per-cell needs."""
    ray = _import_ray()
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // max(num_cpus, 1e-9))
    if num_gpus:
        slots = min(slots, int(resources.get("GPU", 0) // num_gpus))
    if slots < 1:
        raise ConfigError(
            f"--backend ray: the cluster ({resources.get('CPU', 0)} CPUs, "
            f"{resources.get('GPU', 0)} GPUs) cannot fit one cell of {num_cpus} CPUs and "
            f"{num_gpus} GPUs"
        )
    return slots


def run_grid_ray(
    grid,
    out_dir: str | Path,
    *,
    address: str | None = None,
    cpus_per_cell: float = 1,
    gpus_per_cell: float = 0,
    jobs: int | None = None,
    max_retries: int = 3,
    **kwargs,
) -> dict[str, str]:
    """:func:`semid.grid.run_grid` with one Ray task per cell; ``jobs`` (default: as many as
    the cluster fits) caps the cells running at once. ``kwargs`` go to ``run_grid``."""
    from semid.grid import run_grid

    connect(address)
    jobs = jobs or cluster_slots(cpus_per_cell, gpus_per_cell)
    out_dir = Path(out_dir).resolve()  # the workers need the shared path, not a relative one
    if kwargs.get("cache_dir") is not None:
        kwargs["cache_dir"] = Path(kwargs["cache_dir"]).resolve()
    return run_grid(
        grid,
        out_dir,
        jobs=jobs,
        executor=lambda _: RayExecutor(cpus_per_cell, gpus_per_cell, max_retries),
        **kwargs,
    )
