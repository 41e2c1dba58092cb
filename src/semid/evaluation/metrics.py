"""Ranking metrics for one relevant item per input (leave-one-out and per-query targets)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its row of ``ranked`` (n, k); -1 when absent."""
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2 or len(ranked) != len(targets):
        raise ValueError("ranked must be (n, k) with one target per row")
    hits = ranked == targets[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1), -1)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of inputs whose target is in the top ``k`` (hit rate with one relevant item)."""
    ranks = np.asarray(ranks)
    return float(np.mean((ranks >= 0) & (ranks < k))) if len(ranks) else float("nan")


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) if within the top ``k``, else 0."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return float("nan")
    gain = np.where((ranks >= 0) & (ranks < k), 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return float(gain.mean())


def metric_table(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """``{"recall@10": ..., "ndcg@10": ..., ...}`` plus the number of inputs scored."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    out["n"] = int(len(ranks))
    return out
