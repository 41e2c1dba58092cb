"""Reference points scored on exactly the inputs the generator is scored on."""

from __future__ import annotations

import numpy as np
import polars as pl

from semid.config import RunConfig
from semid.data.dataset import Dataset, Splits
from semid.evaluation.evaluate import EvalInputs, score
from semid.evaluation.reference import knn, mean_history_embeddings, popularity_recommend

BASELINES = ("popularity", "dense", "bm25", "sasrec")


def run_baselines(
    dataset: Dataset,
    splits: Splits,
    artifact,
    inputs: EvalInputs,
    cfg: RunConfig,
) -> tuple[dict[str, dict], list[pl.DataFrame]]:
    """Score every baseline named in ``cfg.eval.baselines``; returns (metrics, predictions)."""
    unknown = set(cfg.eval.baselines) - set(BASELINES)
    if unknown:
        from semid.errors import ConfigError

        raise ConfigError(f"eval.baselines: unknown {sorted(unknown)} (known: {list(BASELINES)})")
    k, ks = cfg.eval.beam_size, cfg.eval.ks
    n_items = dataset.n_items
    train_seqs = splits.sequences["train"].to_list()
    users = [str(u) for u in inputs.user_ids]
    metrics: dict[str, dict] = {}
    frames: list[pl.DataFrame] = []

    def add(method: str, task: str, ranked: np.ndarray, targets, names) -> None:
        m, frame = score(method, task, ranked, targets, ks, names)
        metrics.setdefault(method, {})[task] = m
        frames.append(frame)

    if "popularity" in cfg.eval.baselines and inputs.histories:
        for exclude, name in ((False, "popularity"), (True, "popularity-unseen")):
            ranked = popularity_recommend(train_seqs, inputs.histories, n_items, k, exclude)
            add(name, "rec", ranked, inputs.rec_targets, users)

    if "dense" in cfg.eval.baselines:
        spaces = artifact.spaces
        search_space = "item" if "item" in spaces else "search"
        rec_space = "item" if "item" in spaces else "rec"
        if inputs.queries:
            vectors = artifact.encode_queries(inputs.queries)
            if vectors is not None:
                ranked = knn(spaces[search_space], vectors, k)
                add("dense", "search", ranked, inputs.query_targets, inputs.queries)
        if inputs.histories:
            mean = mean_history_embeddings(
                spaces[rec_space], inputs.histories, cfg.model.max_history_items
            )
            ranked = knn(spaces[rec_space], mean, k)
            add("dense", "rec", ranked, inputs.rec_targets, users)
            scores = artifact.user_item_scores(inputs.user_ids)
            if scores is not None:
                ranked = np.argsort(-scores, axis=1, kind="stable")[:, :k]
                add("dense-user", "rec", ranked, inputs.rec_targets, users)

    if "bm25" in cfg.eval.baselines and inputs.queries:
        from semid.evaluation.bm25 import BM25Search

        bm25 = BM25Search().fit(dataset.items["text"].to_list())
        ranked, _ = bm25.search(inputs.queries, k)
        add("bm25", "search", ranked, inputs.query_targets, inputs.queries)

    if "sasrec" in cfg.eval.baselines and inputs.histories:
        from semid.evaluation.sasrec import SASRec

        model = SASRec(
            max_len=cfg.data.max_history, epochs=cfg.eval.sasrec_epochs, random_state=cfg.seed
        )
        model.fit(train_seqs, n_items)
        ranked = model.recommend(inputs.histories, k, exclude_seen=cfg.eval.exclude_seen)
        add("sasrec", "rec", ranked, inputs.rec_targets, users)

    return metrics, frames
