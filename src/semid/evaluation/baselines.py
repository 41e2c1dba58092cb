"""Reference points scored on exactly the inputs the generator is scored on."""

from __future__ import annotations

import numpy as np
import polars as pl

from semid.config import RunConfig
from semid.data.dataset import Dataset, Splits
from semid.evaluation.evaluate import EvalInputs, score_sets
from semid.evaluation.reference import knn, mean_history_embeddings, popularity_recommend
from semid.evaluation.seen import topk_unseen

BASELINES = ("popularity", "dense", "bm25", "sasrec")


def _check_names(cfg: RunConfig) -> None:
    unknown = set(cfg.eval.baselines) - set(BASELINES)
    if unknown:
        from semid.errors import ConfigError

        raise ConfigError(f"eval.baselines: unknown {sorted(unknown)} (known: {list(BASELINES)})")


class _Scores:
    """Collects per-method metrics and per-example prediction frames."""

    def __init__(self, ks: list[int], inputs: EvalInputs) -> None:
        self.ks = ks
        self.inputs = inputs
        self.metrics: dict[str, dict] = {}
        self.frames: list[pl.DataFrame] = []

    def add(self, method: str, kind: str, ranked: np.ndarray) -> None:
        """Score ``ranked`` (every stacked input of ``kind``) per evaluation set."""
        metrics, frames = score_sets(method, kind, ranked, self.inputs, self.ks)
        self.metrics.setdefault(method, {}).update(metrics)
        self.frames.extend(frames)


def run_reference(
    artifact, inputs: EvalInputs, cfg: RunConfig
) -> tuple[dict[str, dict], list[pl.DataFrame]]:
    """The embedding's own kNN retrieval ("dense", "dense-user"): depends on the embedding space.

    Recommendation rankings follow ``eval.exclude_seen`` (:mod:`semid.evaluation.seen`).
    """
    _check_names(cfg)
    out = _Scores(cfg.eval.ks, inputs)
    if "dense" not in cfg.eval.baselines:
        return out.metrics, out.frames
    k = cfg.eval.beam_size
    spaces = artifact.spaces
    search_space = "item" if "item" in spaces else "search"
    rec_space = "item" if "item" in spaces else "rec"
    if inputs.queries:
        vectors = artifact.encode_queries(inputs.queries)
        if vectors is not None:
            ranked = knn(spaces[search_space], vectors, k)
            out.add("dense", "search", ranked)
    if inputs.histories:
        mean = mean_history_embeddings(
            spaces[rec_space], inputs.histories, cfg.model.max_history_items
        )
        seen = inputs.histories if cfg.eval.exclude_seen else None
        ranked = knn(spaces[rec_space], mean, k, histories=seen)
        out.add("dense", "rec", ranked)
        scores = artifact.user_item_scores(inputs.user_ids)
        if scores is not None:
            ranked = topk_unseen(scores, inputs.histories, k, cfg.eval.exclude_seen)
            out.add("dense-user", "rec", ranked)
    return out.metrics, out.frames


def run_baselines(
    dataset: Dataset,
    splits: Splits,
    inputs: EvalInputs,
    cfg: RunConfig,
) -> tuple[dict[str, dict], list[pl.DataFrame]]:
    """Score the embedding-independent baselines (popularity, BM25, SASRec) named in the config.

    Popularity and SASRec follow ``eval.exclude_seen`` (one ``popularity`` row under that rule).
    """
    _check_names(cfg)
    out = _Scores(cfg.eval.ks, inputs)
    k = cfg.eval.beam_size
    n_items = dataset.n_items
    train_seqs = splits.sequences["train"].to_list()

    if "popularity" in cfg.eval.baselines and inputs.histories:
        ranked = popularity_recommend(
            train_seqs, inputs.histories, n_items, k, cfg.eval.exclude_seen
        )
        out.add("popularity", "rec", ranked)

    if "bm25" in cfg.eval.baselines and inputs.queries:
        from semid.evaluation.bm25 import BM25Search

        bm25 = BM25Search().fit(dataset.items["text"].to_list())
        ranked, _ = bm25.search(inputs.queries, k)
        out.add("bm25", "search", ranked)

    if "sasrec" in cfg.eval.baselines and inputs.histories:
        from semid.evaluation.sasrec import SASRec
        from semid.generative.model import resolve_device

        model = SASRec(
            max_len=cfg.data.max_history,
            dim=cfg.eval.sasrec_dim,
            epochs=cfg.eval.sasrec_epochs,
            random_state=cfg.seed,
            device=str(resolve_device(cfg.train.device)),  # CUDA when present (device=auto)
        )
        model.fit(train_seqs, n_items)
        ranked = model.recommend(inputs.histories, k, exclude_seen=cfg.eval.exclude_seen)
        out.add("sasrec", "rec", ranked)

    return out.metrics, out.frames
