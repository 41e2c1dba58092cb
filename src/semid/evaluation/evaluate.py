"""Score the generator and the reference points on held-out search queries and users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from semid.data.dataset import Splits
from semid.evaluation.config import EvalConfig
from semid.evaluation.metrics import metric_table, target_ranks


@dataclass
class EvalInputs:
    """The held-out inputs every method is scored on (identical across methods)."""

    queries: list[str]
    query_targets: np.ndarray
    user_ids: np.ndarray
    histories: list[list[int]]
    rec_targets: np.ndarray


def eval_inputs(splits: Splits, cfg: EvalConfig, seed: int) -> EvalInputs:
    """Held-out queries (a seeded sample) and users with their history and target item."""
    rng = np.random.default_rng(seed)
    test_q = splits.test_queries()
    if cfg.max_search_queries is not None and test_q.height > cfg.max_search_queries:
        keep = np.sort(rng.choice(test_q.height, cfg.max_search_queries, replace=False))
        test_q = test_q[keep]
    seq = splits.sequences
    if cfg.max_rec_users is not None and seq.height > cfg.max_rec_users:
        keep = np.sort(rng.choice(seq.height, cfg.max_rec_users, replace=False))
        seq = seq[keep]
    trains = seq["train"].to_list()
    if cfg.split == "test":
        histories = [t + [v] for t, v in zip(trains, seq["valid"].to_list(), strict=True)]
        targets = seq["test"].to_numpy()
    else:
        histories = trains
        targets = seq["valid"].to_numpy()
    return EvalInputs(
        queries=test_q["query"].to_list(),
        query_targets=test_q["item_idx"].to_numpy().astype(np.int64),
        user_ids=seq["user_id"].to_numpy(),
        histories=histories,
        rec_targets=targets.astype(np.int64),
    )


def score(
    method: str,
    task: str,
    ranked: np.ndarray,
    targets: np.ndarray,
    ks: list[int],
    inputs: list[str],
    scores: np.ndarray | None = None,
) -> tuple[dict, pl.DataFrame]:
    """Metrics of one method on one task, and its per-example predictions."""
    ranks = target_ranks(ranked, targets)
    metrics = metric_table(ranks, ks)
    metrics["valid_output_rate"] = float((np.asarray(ranked) >= 0).mean()) if len(ranked) else 1.0
    frame = pl.DataFrame(
        {
            "method": [method] * len(targets),
            "task": [task] * len(targets),
            "input": inputs,
            "target": np.asarray(targets, dtype=np.int64),
            "rank": ranks.astype(np.int64),
            "predicted": [row.tolist() for row in np.asarray(ranked, dtype=np.int64)],
            "scores": [row.tolist() for row in np.asarray(scores, dtype=np.float32)]
            if scores is not None
            else [None] * len(targets),
        },
        schema_overrides={"scores": pl.List(pl.Float32)},
    )
    return metrics, frame
