"""Run directories and the stage cache.

A run directory holds ``config.json``, ``manifest.json`` (stage keys and facts, plus the Python,
platform and library versions of the process that ran it) and the run's results. Each stage's
artifacts live in a content-addressed cache (``<cache>/<stage>/<key>/``) whose key hashes the
stage's config and the keys of the stages it reads. A stage whose key already has a finished
folder is reused, so an unchanged stage is never recomputed, a killed run resumes at the stage
it died in, and the cells of a grid share what they have in common.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from semid import checkpoint, distributed
from semid.io import atomic_dir, read_json, stable_hash, write_json

log = logging.getLogger(__name__)

DONE_FILE = "_stage.json"

# The pipeline's stages, in order (implemented in :mod:`semid.stages`). Kept here so that
# readers of run directories (reports) need not import the pipeline and torch.
STAGES = ["data", "splits", "embeddings", "ids", "model", "evaluate", "reference", "baselines"]


def stage_kind(name: str) -> str:
    """The cache folder a stage name builds into: ``embeddings/search`` -> ``embeddings``.

    A stage that builds a component of another (a composite embedding space builds the search
    and rec spaces first) is named ``<kind>/<component>``: it has its own entry in the manifest
    and for the grid scheduler, and shares its cache folder with the plain stage of that kind
    (same key, same folder), so the components are reused by the cells that have them as their
    own space.
    """
    return name.split("/", 1)[0]


def stage_folder(cache_dir: Path, name: str, key: str) -> Path:
    """Where stage ``name`` with ``key`` lives in the cache."""
    return Path(cache_dir) / stage_kind(name) / key


# Distributions whose versions decide a run's numbers (recorded in manifest.json). A tuple lists
# alternative distribution names of one library (the first installed one is recorded).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "semid": ("semid",),
    "torch": ("torch",),
    "transformers": ("transformers",),
    "sentence-transformers": ("sentence-transformers",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss"),
    "vector-quantize-pytorch": ("vector-quantize-pytorch",),
    "scikit-learn": ("scikit-learn",),
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "polars": ("polars",),
}


def library_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`LIBRARIES` (None if absent), without importing them."""
    out: dict[str, str | None] = {}
    for name, distributions in LIBRARIES.items():
        out[name] = None
        for dist in distributions:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def environment() -> dict[str, Any]:
    """Python, platform and library versions of this process (for ``manifest.json``)."""
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "libraries": library_versions(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last :func:`reset_peak_rss`, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (Linux); elsewhere the peak stays process-wide."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


@dataclass
class StageResult:
    """Where a stage's artifacts are and whether they came from the cache."""

    name: str
    key: str
    path: Path
    cached: bool
    seconds: float
    peak_rss_mb: float | None


class Run:
    """A run directory plus the stage cache it reads and writes."""

    def __init__(self, run_dir: str | Path, cache_dir: str | Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.run_dir.parent / ".cache"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.run_dir / "manifest.json"
        self.manifest: dict[str, Any] = (
            read_json(self.manifest_path) if self.manifest_path.exists() else {"stages": {}}
        )
        # The environment of the latest process that ran (or resumed) the run.
        self.manifest["environment"] = environment()
        self._write_manifest()

    def _write_manifest(self) -> None:
        if distributed.is_main():  # under a launcher only rank 0 writes
            write_json(self.manifest_path, self.manifest)

    def is_cached(self, name: str, key_material: dict[str, Any]) -> bool:
        """Whether stage ``name`` with these inputs is already built in the cache."""
        return (stage_folder(self.cache_dir, name, stable_hash(key_material)) / DONE_FILE).exists()

    def stage(
        self,
        name: str,
        key_material: dict[str, Any],
        build: Callable[[Path], dict[str, Any] | None],
        force: bool = False,
        collective: bool = False,
    ) -> StageResult:
        """Return the stage's artifact folder, building it with ``build(tmp_dir)`` if needed.

        ``build`` writes its files into the temporary folder it is given and may return a dict
        of facts to record (losses, sizes); the folder is moved into place only on success.
        ``name`` is unique within a run (see :func:`stage_kind` for component stages).
        Temporary folders that killed attempts left are removed first; training loops inside
        ``build`` checkpoint into :func:`semid.checkpoint.checkpoint_dir` and resume from it.

        Under a multi-process launcher (:mod:`semid.distributed`) rank 0 builds and the others
        wait, except for a ``collective`` stage (one model trained by every process), whose
        ``build`` every process runs: rank 0 into the stage folder, the others into a scratch
        folder they must leave empty.
        """
        key = stable_hash(key_material)
        path = stage_folder(self.cache_dir, name, key)
        # every process must take the same branch: rank 0's view of the cache decides
        cached = distributed.agree((path / DONE_FILE).exists() and not force)
        if cached:
            info = read_json(path / DONE_FILE)
            log.info("stage %s: reusing %s", name, path)
            result = StageResult(name, key, path, True, 0.0, None)
            facts = info.get("facts", {})
        else:
            result, facts = self._build(name, key, key_material, path, build, collective)
        self.manifest["stages"][name] = {
            "key": key,
            "path": str(path.resolve()),
            "cached": result.cached,
            "seconds": round(result.seconds, 3),
            "peak_rss_mb": None if result.peak_rss_mb is None else round(result.peak_rss_mb, 1),
            "facts": facts,
        }
        self._write_manifest()
        return result

    def _build(self, name, key, key_material, path, build, collective):
        main = distributed.is_main()
        ckpt = checkpoint.checkpoint_dir(path)
        if main:
            checkpoint.clean_stale(path)
        if main or collective:
            reset_peak_rss()
            start = time.perf_counter()
            with checkpoint.stage_scope(ckpt), contextlib.ExitStack() as stack:
                if main:
                    tmp = stack.enter_context(atomic_dir(path))
                else:
                    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                facts = build(tmp) or {}
                seconds = time.perf_counter() - start
                if main:
                    write_json(
                        tmp / DONE_FILE,
                        {
                            "stage": name,
                            "key": key,
                            "inputs": key_material,
                            "seconds": round(seconds, 3),
                            "peak_rss_mb": round(peak_rss_mb(), 1),
                            "facts": facts,
                        },
                    )
            if main and ckpt.exists():
                shutil.rmtree(ckpt, ignore_errors=True)  # the stage is in place
        distributed.barrier()  # the others wait for rank 0's folder
        if not main:
            info = read_json(path / DONE_FILE)
            facts, seconds = info.get("facts", {}), info.get("seconds", 0.0)
        return StageResult(name, key, path, False, seconds, peak_rss_mb()), facts
