"""Score the generator and the reference points on held-out search queries and users."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from semid.data.dataset import Splits
from semid.evaluation.config import EvalConfig
from semid.evaluation.metrics import metric_table, target_ranks


@dataclass
class EvalInputs:
    """The held-out inputs every method is scored on (identical across methods).

    Inputs of several evaluation sets are stacked so that each method ranks them in one pass
    (one SASRec fit, one encoder pass); ``query_sets`` / ``rec_sets`` map each set's metric key
    (``search``, ``search_valid``, ``search_real``, ``search_title``; ``rec``, ``rec_valid``)
    to its rows. Keys without a suffix are the test split.
    """

    queries: list[str]
    query_targets: np.ndarray
    user_ids: np.ndarray
    histories: list[list[int]]
    rec_targets: np.ndarray
    query_sets: dict[str, slice] = field(default_factory=dict)
    rec_sets: dict[str, slice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.query_sets and len(self.queries):
            self.query_sets = {"search": slice(0, len(self.queries))}
        if not self.rec_sets and len(self.histories):
            self.rec_sets = {"rec": slice(0, len(self.histories))}


SPLIT_SUFFIX = {"test": "", "valid": "_valid"}


def held_out_split(queries: pl.DataFrame, seed: int) -> np.ndarray:
    """ "valid" or "test" for each held-out query: a seeded half of each item's held-out
    queries goes to validation (an item with one held-out query: a seeded coin)."""
    rng = np.random.default_rng(seed + 1)
    noise = rng.random(queries.height)
    rank = pl.DataFrame({"item": queries["item_idx"], "noise": noise}).with_columns(
        pl.col("noise").rank("ordinal").over("item").alias("r"),
        pl.len().over("item").alias("n"),
    )
    r, n = rank["r"].to_numpy(), rank["n"].to_numpy()
    first_half = np.where(n > 1, r <= n // 2, noise < 0.5)
    return np.where(first_half, "valid", "test")


def _sample(frame: pl.DataFrame, limit: int | None, rng: np.random.Generator) -> pl.DataFrame:
    if limit is not None and frame.height > limit:
        return frame[np.sort(rng.choice(frame.height, limit, replace=False))]
    return frame


def eval_inputs(
    splits: Splits,
    cfg: EvalConfig,
    seed: int,
    real_queries: pl.DataFrame | None = None,
    titles: list[str] | None = None,
) -> EvalInputs:
    """Every evaluation set of a run, stacked (see :class:`EvalInputs`).

    For each split in ``cfg.splits``: held-out template queries (a seeded sample of that
    split's half) and users with their history and target item (valid: the train prefix
    predicts the validation item; test: prefix + validation item predict the test item).
    ``real_queries`` (``query``, ``item_idx``): a second search test set (``search_real``);
    ``titles``: one query per item made of its title alone (``search_title``, an indexing
    check, seeded sample of ``cfg.max_title_queries``). Splits without users (a search-only
    run) give no recommendation sets.
    """
    rng = np.random.default_rng(seed)
    held = splits.test_queries()
    held = held.with_columns(pl.Series("eval_split", held_out_split(held, seed)))
    seq = _sample(splits.sequences, cfg.max_rec_users, rng)
    trains = seq["train"].to_list()
    query_frames: list[tuple[str, pl.DataFrame]] = []
    histories: list[list[int]] = []
    targets: list[np.ndarray] = []
    rec_sets: dict[str, slice] = {}
    for split in cfg.splits:
        part = held.filter(pl.col("eval_split") == split)
        query_frames.append(
            (f"search{SPLIT_SUFFIX[split]}", _sample(part, cfg.max_search_queries, rng))
        )
        start = len(histories)
        if not seq.height:
            continue
        if split == "test":
            histories += [t + [v] for t, v in zip(trains, seq["valid"].to_list(), strict=True)]
            targets.append(seq["test"].to_numpy())
        else:
            histories += [list(t) for t in trains]
            targets.append(seq["valid"].to_numpy())
        rec_sets[f"rec{SPLIT_SUFFIX[split]}"] = slice(start, len(histories))
    if real_queries is not None and real_queries.height:
        query_frames.append(("search_real", real_queries.select("query", "item_idx")))
    if titles is not None and cfg.max_title_queries != 0:
        frame = pl.DataFrame(
            {"query": titles, "item_idx": np.arange(len(titles), dtype=np.int32)}
        ).filter(pl.col("query").str.strip_chars() != "")
        query_frames.append(("search_title", _sample(frame, cfg.max_title_queries, rng)))
    queries: list[str] = []
    query_targets: list[np.ndarray] = []
    query_sets: dict[str, slice] = {}
    for name, frame in query_frames:
        start = len(queries)
        queries += frame["query"].to_list()
        query_targets.append(frame["item_idx"].to_numpy().astype(np.int64))
        query_sets[name] = slice(start, len(queries))
    n_sets = len(cfg.splits)
    return EvalInputs(
        queries=queries,
        query_targets=np.concatenate(query_targets) if query_targets else np.zeros(0, np.int64),
        user_ids=np.tile(seq["user_id"].to_numpy(), n_sets),
        histories=histories,
        rec_targets=np.concatenate(targets).astype(np.int64) if targets else np.zeros(0, np.int64),
        query_sets=query_sets,
        rec_sets=rec_sets,
    )


def score_sets(
    method: str,
    kind: str,
    ranked: np.ndarray,
    inputs: EvalInputs,
    ks: list[int],
    scores: np.ndarray | None = None,
) -> tuple[dict[str, dict], list[pl.DataFrame]]:
    """Score rankings of every stacked input of ``kind`` ("search" or "rec") per set."""
    if kind == "search":
        sets, targets = inputs.query_sets, inputs.query_targets
        names = inputs.queries
    else:
        sets, targets = inputs.rec_sets, inputs.rec_targets
        names = [str(u) for u in inputs.user_ids]
    metrics, frames = {}, []
    for task, rows in sets.items():
        m, frame = score(
            method,
            task,
            ranked[rows],
            targets[rows],
            ks,
            names[rows],
            None if scores is None else scores[rows],
        )
        metrics[task] = m
        frames.append(frame)
    return metrics, frames


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
    ranked = np.asarray(ranked)
    metrics["valid_output_rate"] = float((ranked >= 0).mean()) if len(ranked) else 1.0
    metrics["coverage"] = int(len(np.unique(ranked[ranked >= 0])))  # distinct items listed
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
