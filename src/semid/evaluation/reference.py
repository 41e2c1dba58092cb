"""Non-generative reference points: popularity and dense retrieval with the same embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from semid.embeddings.fused import l2_normalize


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
    exclude_seen: bool,
) -> np.ndarray:
    """Top-``k`` popular items per user, optionally skipping items in the user's history."""
    if not exclude_seen:
        top = popularity_ranking(train_sequences, n_items, k)
        return np.tile(top, (len(histories), 1))
    longest = max((len(set(h)) for h in histories), default=0)
    pool = popularity_ranking(train_sequences, n_items, min(n_items, k + longest))
    out = np.full((len(histories), k), -1, dtype=np.int64)
    for row, hist in enumerate(histories):
        seen = set(hist)
        picked = [i for i in pool if i not in seen][:k]
        out[row, : len(picked)] = picked
    return out


def knn(item_embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Cosine k-nearest items (FAISS inner product over L2-normalised vectors)."""
    index = faiss.IndexFlatIP(item_embeddings.shape[1])
    index.add(l2_normalize(item_embeddings))
    _, idx = index.search(l2_normalize(queries), min(k, item_embeddings.shape[0]))
    return idx.astype(np.int64)


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
