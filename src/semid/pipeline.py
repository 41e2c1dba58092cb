"""The pipeline: data -> splits -> embeddings -> ids -> model -> evaluation -> report.

Each stage reads the artifacts of the stages before it from disk and writes its own into the
stage cache (see :mod:`semid.runs`), so any stage can be rerun, reused or resumed. The stages
live in :mod:`semid.stages`; this module runs them in order and gathers a run's results.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from semid import distributed
from semid.config import IDENTITY_EXCLUDE, RunConfig
from semid.data import load_query_file
from semid.data.dataset import Dataset
from semid.device import resolve_device
from semid.embeddings import load_embeddings
from semid.embeddings.spaces import task_spaces
from semid.errors import ConfigError, DataError
from semid.evaluation.evaluate import EvalInputs, score
from semid.evaluation.reference import knn
from semid.generative.retriever import GenerativeRetriever
from semid.io import read_json, stable_hash, write_json, write_parquet
from semid.runs import STAGES, Run
from semid.stages.common import PipelineState, set_threads
from semid.stages.evaluate import (
    generative_predictions,
    stage_baselines,
    stage_evaluate,
    stage_reference,
)
from semid.stages.inputs import stage_data, stage_embeddings, stage_ids, stage_splits
from semid.stages.model import stage_model

__all__ = [
    "STAGES",
    "STAGE_FUNCTIONS",
    "PipelineState",
    "evaluate_query_file",
    "finalize_run",
    "load_state",
    "run_name",
    "run_pipeline",
    "set_threads",
]

log = logging.getLogger(__name__)


def run_name(cfg: RunConfig) -> str:
    """A readable, unique default name: space-quantizer-shape-seed-confighash."""
    q = cfg.quantizer
    digest = stable_hash(cfg.model_dump(mode="json", exclude=IDENTITY_EXCLUDE), 6)
    return f"{cfg.embedding.space}-{q.name}-{q.levels}x{q.codebook_size}-s{cfg.seed}-{digest}"


STAGE_FUNCTIONS = {
    "data": stage_data,
    "splits": stage_splits,
    "embeddings": stage_embeddings,
    "ids": stage_ids,
    "model": stage_model,
    "evaluate": stage_evaluate,
    "reference": stage_reference,
    "baselines": stage_baselines,
}


def run_pipeline(
    cfg: RunConfig,
    runs_dir: Path = Path("runs"),
    cache_dir: Path | None = None,
    force: set[str] | None = None,
    until: str | None = None,
) -> Path:
    """Run (or resume) every stage of ``cfg``; returns the run directory."""
    force = force or set()
    unknown = force - set(STAGES)
    if unknown:
        raise ConfigError(f"--force: unknown stage(s) {sorted(unknown)} (stages: {STAGES})")
    name = cfg.name or run_name(cfg)
    run = Run(Path(runs_dir) / name, cache_dir)
    if distributed.is_main():
        write_json(run.run_dir / "config.json", cfg.model_dump(mode="json"))
    state = PipelineState(cfg, run, {})
    for stage in STAGES:
        log.info("stage %s", stage)
        state.stages[stage] = STAGE_FUNCTIONS[stage](state, force=stage in force)
        if stage == until:
            return run.run_dir
    if distributed.is_main():
        finalize_run(state)
    return run.run_dir


def finalize_run(state: PipelineState) -> None:
    """Gather metrics, predictions, the ID table and the model folder into the run directory."""
    from semid.reports.report import write_run_report

    run_dir = state.run.run_dir
    metrics = read_json(state.path("evaluate") / "metrics.json")
    for stage in ("reference", "baselines"):
        metrics.update(read_json(state.path(stage) / "metrics.json"))
    write_json(run_dir / "metrics.json", metrics)
    frames = [pl.read_parquet(state.path("evaluate") / "predictions.parquet")]
    for stage in ("reference", "baselines"):
        if (state.path(stage) / "predictions.parquet").exists():
            frames.append(pl.read_parquet(state.path(stage) / "predictions.parquet"))
    write_parquet(run_dir / "predictions.parquet", pl.concat(frames, how="diagonal_relaxed"))
    tables = sorted(state.path("ids").glob("*/id_table.csv"))
    if len(tables) == 1:
        shutil.copyfile(tables[0], run_dir / "id_table.csv")
    for table in tables if len(tables) > 1 else []:
        shutil.copyfile(table, run_dir / f"id_table_{table.parent.name}.csv")
    model_dir = run_dir / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(state.path("model"), model_dir, ignore=shutil.ignore_patterns("_stage.json"))
    write_run_report(run_dir, state.cfg, state.run.manifest, metrics, state.path("ids"))


def load_state(run_dir: Path) -> tuple[RunConfig, dict[str, Path]]:
    """The config and stage folders recorded in a run directory."""
    run_dir = Path(run_dir)
    for required in ("config.json", "manifest.json"):
        if not (run_dir / required).exists():
            raise ConfigError(f"{run_dir}: not a semid run directory ({required} missing)")
    cfg = RunConfig.model_validate(read_json(run_dir / "config.json"))
    manifest = read_json(run_dir / "manifest.json")
    return cfg, {name: Path(s["path"]) for name, s in manifest["stages"].items()}


def evaluate_query_file(
    run_dir: Path, query_file: Path, k: int | None = None, skip_unknown_items: bool | None = None
) -> dict:
    """Score a trained run on any JSONL query file, without retraining.

    ``skip_unknown_items``: drop queries whose item the run's catalogue lacks instead of
    failing; default: only for a sampled catalogue (``data.sample_items``), whose query files
    are made for the full one.
    """
    cfg, paths = load_state(run_dir)
    dataset = Dataset.load(paths["data"])
    if skip_unknown_items is None:
        skip_unknown_items = cfg.data.sample_items is not None
    queries = load_query_file(query_file, dataset, skip_unknown_items=skip_unknown_items)
    if queries.height == 0:
        raise DataError(f"{query_file}: no query names an item of this run's catalogue")
    inputs = EvalInputs(
        queries=queries["query"].to_list(),
        query_targets=queries["item_idx"].to_numpy().astype(np.int64),
        user_ids=np.zeros(0, dtype=np.int64),
        histories=[],
        rec_targets=np.zeros(0, dtype=np.int64),
    )
    if k is not None:
        cfg.eval.beam_size = k
    set_threads(cfg.train.num_threads)
    retriever = GenerativeRetriever.load(Path(run_dir) / "model", resolve_device(cfg.train.device))
    metrics, frames = generative_predictions(retriever, inputs, cfg)
    artifact = load_embeddings(paths["embeddings"])
    query_vectors = artifact.encode_queries(inputs.queries)
    if query_vectors is not None:
        space = task_spaces(artifact.spaces)["search"]
        ranked = knn(artifact.spaces[space], query_vectors, cfg.eval.beam_size)
        dense, frame = score(
            "dense", "search", ranked, inputs.query_targets, cfg.eval.ks, inputs.queries
        )
        metrics = {"generative": metrics, "dense": {"search": dense}}
        frames.append(frame)
    else:
        metrics = {"generative": metrics}
    out = Path(run_dir) / f"eval-{Path(query_file).stem}"
    write_json(out / "metrics.json", metrics)
    write_parquet(out / "predictions.parquet", pl.concat(frames, how="diagonal_relaxed"))
    return metrics
