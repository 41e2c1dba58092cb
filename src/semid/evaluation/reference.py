"""Non-generative reference points: popularity and dense retrieval with the same embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from semid.embeddings.fused import l2_normalize
from semid.evaluation.seen import fetch_size, filter_seen


def popularity_ranking(
    train_sequences: Sequence[Sequence[int]], n_items: int, k: int
) -> np.ndarray:
    """The ``k`` most interacted items in the training sequences (ties by item index)."""
    counts = np.bincount(
        np.concatenate([np.asarray(s, np.int64) for s in train_sequences]), minlength=n_items
    )
    return np.argsort(-counts, kind="stable")[:k]


def popularity_recommend(
    train_sequences: Sequence[Sequence[int]],
    histories: Sequence[Sequence[int]],
    n_items: int,
    k: int,
    exclude_seen: bool = True,
) -> np.ndarray:
    """Top-``k`` popular items per user; with ``exclude_seen``, the top-``k`` the user has not seen.

    See :mod:`semid.evaluation.seen` for the rule (shared by every non-generative method).
    """
    fetch = fetch_size(histories, k, n_items, exclude_seen)
    pool = popularity_ranking(train_sequences, n_items, fetch)
    return filter_seen(np.tile(pool, (len(histories), 1)), histories, k, exclude_seen)


def knn(
    item_embeddings: np.ndarray,
    queries: np.ndarray,
    k: int,
    histories: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Cosine k-nearest items (FAISS inner product over L2-normalised vectors).

    With ``histories`` (one per query), each row's history items are excluded: FAISS is asked
    for ``k`` + the longest history and the seen items are filtered out
    (:func:`semid.evaluation.seen.filter_seen`), so every row still has ``k`` items.
    """
    n_items = item_embeddings.shape[0]
    index = faiss.IndexFlatIP(item_embeddings.shape[1])
    index.add(l2_normalize(item_embeddings))
    fetch = min(k, n_items) if histories is None else fetch_size(histories, k, n_items, True)
    _, idx = index.search(l2_normalize(queries), fetch)
    idx = idx.astype(np.int64)
    if histories is None:
        return idx
    return filter_seen(idx, histories, k, True)


def mean_history_embeddings(
    item_embeddings: np.ndarray, histories: Sequence[Sequence[int]], max_items: int
) -> np.ndarray:
    """Mean of the (normalised) embeddings of each history's last ``max_items`` items."""
    normed = l2_normalize(item_embeddings)
    out = np.zeros((len(histories), normed.shape[1]), dtype=np.float32)
    for row, hist in enumerate(histories):
        recent = list(hist)[-max_items:]
        if recent:
            out[row] = normed[recent].mean(axis=0)
    return out
