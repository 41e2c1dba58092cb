"""Seen-item exclusion: the one rule every non-generative ranking applies (``eval.exclude_seen``).

The *seen* set of an input is the history it is given (on the test split: the train prefix and
the validation item). MovieLens has no repeated (user, item) pairs, so a seen item in a top-K
list is a wasted slot. With exclusion on, every method returns ``k`` unseen items per input
whenever the catalogue has that many (``-1`` pads a row only when it does not).

Two ways to get there, equivalent up to ties:

- :func:`topk_unseen` ranks a full score matrix after :func:`mask_seen` (SASRec, ENMF/ALS
  user vectors);
- :func:`filter_seen` drops seen items from an over-fetched candidate list, fetched with
  :func:`fetch_size` = ``k`` + the longest history (FAISS kNN, popularity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fetch_size(histories: Sequence[Sequence[int]], k: int, n_items: int, exclude_seen: bool) -> int:
    """Candidates to fetch so that ``k`` unseen ones survive :func:`filter_seen` in every row."""
    if not exclude_seen:
        return min(k, n_items)
    longest = max((len(set(h)) for h in histories), default=0)
    return min(n_items, k + longest)


def mask_seen(scores: np.ndarray, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """A float copy of ``scores`` (n, n_items) with ``-inf`` at each row's history items."""
    out = np.array(scores, dtype=np.float32 if scores.dtype == np.float32 else np.float64)
    if len(histories) != len(out):
        raise ValueError(f"{len(histories)} histories for {len(out)} score rows")
    rows = np.repeat(np.arange(len(out)), [len(h) for h in histories])
    cols = np.fromiter((i for h in histories for i in h), dtype=np.int64, count=len(rows))
    out[rows, cols] = -np.inf
    return out


def topk_unseen(
    scores: np.ndarray, histories: Sequence[Sequence[int]], k: int, exclude_seen: bool = True
) -> np.ndarray:
    """Top-``k`` columns of ``scores`` per row (stable: ties by item index), seen items skipped.

    Returns int64 (n, k); ``-1`` only where a row has fewer than ``k`` unseen items.
    """
    scores = np.asarray(scores)
    masked = mask_seen(scores, histories) if exclude_seen else scores
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    out = np.full((len(scores), k), -1, dtype=np.int64)
    out[:, : top.shape[1]] = top
    if exclude_seen:
        taken = np.take_along_axis(masked, top, axis=1)
        out[:, : top.shape[1]][np.isneginf(taken)] = -1
    return out


def filter_seen(
    candidates: np.ndarray, histories: Sequence[Sequence[int]], k: int, exclude_seen: bool = True
) -> np.ndarray:
    """The first ``k`` candidates of each row (n, m) that are not in its history, in order.

    ``-1`` candidates (nothing found) are dropped too; rows short of ``k`` are padded with -1.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    out = np.full((len(candidates), k), -1, dtype=np.int64)
    for row, cand in enumerate(candidates):
        if exclude_seen:
            keep = cand[(cand >= 0) & ~np.isin(cand, np.asarray(list(histories[row]), np.int64))]
        else:
            keep = cand[cand >= 0]
        keep = keep[:k]
        out[row, : len(keep)] = keep
    return out
