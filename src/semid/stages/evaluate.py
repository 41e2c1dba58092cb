"""The scoring stages: the generator's beam search, the embedding's own kNN and the baselines,
all scored on the same held-out inputs."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from semid.config import RunConfig
from semid.data import load_query_file
from semid.data.dataset import Dataset, Splits
from semid.device import resolve_device
from semid.embeddings import load_embeddings
from semid.evaluation.evaluate import EvalInputs, eval_inputs, score_sets
from semid.generative.retriever import GenerativeRetriever
from semid.io import write_json, write_parquet
from semid.runs import StageResult
from semid.stages.common import PipelineState, fingerprint, set_threads

BASELINE_ONLY = {"baselines", "sasrec_epochs", "sasrec_dim"}
DECODING_ONLY = {"precision", "beam_width", "batch_size"}


def real_queries_path(cfg: RunConfig) -> Path | None:
    """The real-request file of ``eval.real_queries`` for this dataset, if it exists."""
    if cfg.eval.real_queries is None:
        return None
    path = Path(str(cfg.eval.real_queries).replace("{dataset}", cfg.data.dataset))
    # relative paths: from the working directory, else from the checkout (above src/semid/)
    candidates = [path] if path.is_absolute() else [path, Path(__file__).parents[3] / path]
    return next((p for p in candidates if p.is_file()), None)


def _sample_key(cfg: RunConfig, decoding: bool = True) -> dict:
    """What decides the held-out inputs (and, with ``decoding``, how the generator decodes);
    not the baselines' own settings."""
    exclude = BASELINE_ONLY | (set() if decoding else DECODING_ONLY)
    return {
        "eval": cfg.eval.model_dump(mode="json", exclude=exclude),
        "seed": cfg.seed,
        "real_queries": fingerprint(real_queries_path(cfg)),
    }


def load_eval_inputs(state: PipelineState) -> EvalInputs:
    """Every evaluation set of the run (see :func:`semid.evaluation.evaluate.eval_inputs`)."""
    cfg = state.cfg
    dataset = Dataset.load(state.path("data"))
    splits = Splits.load(state.path("splits"))
    path = real_queries_path(cfg)
    real = load_query_file(path, dataset, skip_unknown_items=True) if path is not None else None
    titles = dataset.items["title"].fill_null("").to_list()
    return eval_inputs(splits, cfg.eval, cfg.seed, real, titles)


def generative_predictions(
    retriever: GenerativeRetriever, inputs: EvalInputs, cfg: RunConfig, method: str = "generative"
) -> tuple[dict, list[pl.DataFrame]]:
    """Decode every held-out input with the trie-constrained beam search and score it.

    Recommendation follows ``eval.exclude_seen`` with the history banned inside the beam.
    """
    ks, k = cfg.eval.ks, cfg.eval.beam_size
    beams, batch = cfg.eval.beam_width, cfg.eval.batch_size
    retriever.precision = cfg.eval.precision
    metrics: dict[str, dict] = {}
    frames = []
    if inputs.queries:
        items, scores = retriever.search(
            inputs.queries, k=k, batch_size=batch, progress=True, beams=beams
        )
        found, parts = score_sets(method, "search", items, inputs, ks, scores)
        metrics.update(found)
        frames += parts
    if inputs.histories:
        items, scores = retriever.recommend(
            inputs.histories,
            k=k,
            batch_size=batch,
            progress=True,
            exclude_seen=cfg.eval.exclude_seen,
            beams=beams,
        )
        found, parts = score_sets(method, "rec", items, inputs, ks, scores)
        metrics.update(found)
        frames += parts
    return metrics, frames


def stage_evaluate(state: PipelineState, force: bool = False) -> StageResult:
    cfg = state.cfg
    material = {"model": state.stages["model"].key, **_sample_key(cfg)}

    def build(out: Path) -> dict:
        set_threads(cfg.train.num_threads)
        inputs = load_eval_inputs(state)
        # decoding on the training device (CUDA when present with train.device=auto)
        retriever = GenerativeRetriever.load(state.path("model"), resolve_device(cfg.train.device))
        metrics, frames = generative_predictions(retriever, inputs, cfg)
        write_parquet(out / "predictions.parquet", pl.concat(frames))
        write_json(out / "metrics.json", {"generative": metrics})
        return {"generative": metrics, "search_tokens_read": retriever.query_tokens_read()}

    return state.run.stage("evaluate", material, build, force)


def _write_scores(out: Path, metrics: dict, frames: list[pl.DataFrame]) -> dict:
    """Write a scoring stage's ``metrics.json`` and ``predictions.parquet``; return the metrics."""
    if frames:
        write_parquet(out / "predictions.parquet", pl.concat(frames))
    write_json(out / "metrics.json", metrics)
    return metrics


def stage_reference(state: PipelineState, force: bool = False) -> StageResult:
    """The embedding space's own kNN retrieval, scored on the generator's held-out inputs."""
    cfg = state.cfg
    material = {
        "splits": state.stages["splits"].key,
        "embeddings": state.stages["embeddings"].key,
        "baselines": cfg.eval.model_dump(mode="json", include={"baselines"}),
        **_sample_key(cfg, decoding=False),
    }

    def build(out: Path) -> dict:
        from semid.evaluation.baselines import run_reference

        set_threads(cfg.train.num_threads)
        inputs = load_eval_inputs(state)
        artifact = load_embeddings(state.path("embeddings"))
        facts = _write_scores(out, *run_reference(artifact, inputs, cfg))
        if artifact._model is not None:
            facts["search_tokens_read"] = int(artifact._model.max_seq_length)
        return facts

    return state.run.stage("reference", material, build, force)


def stage_baselines(state: PipelineState, force: bool = False) -> StageResult:
    """Popularity, BM25 and SASRec: independent of the embeddings, shared by every grid cell."""
    cfg = state.cfg
    material = {
        "data": state.stages["data"].key,
        "splits": state.stages["splits"].key,
        "baselines": cfg.eval.model_dump(mode="json", include=BASELINE_ONLY),
        **_sample_key(cfg, decoding=False),
    }

    def build(out: Path) -> dict:
        from semid.evaluation.baselines import run_baselines

        set_threads(cfg.train.num_threads)
        dataset = Dataset.load(state.path("data"))
        splits = Splits.load(state.path("splits"))
        inputs = load_eval_inputs(state)
        return _write_scores(out, *run_baselines(dataset, splits, inputs, cfg))

    return state.run.stage("baselines", material, build, force)
