"""Multitask space: one bi-encoder tuned on search pairs and on co-occurring items at once.

Two in-batch contrastive losses are summed at every step (see
:class:`semid.embeddings.search.ContrastiveTuner`):

- search: (training query, item text), as in the search space;
- rec: (item text, item text) for items at most ``window`` positions apart in a user's
  *training* history, scored in both directions (the relation is symmetric).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semid.embeddings.search import PairSet


def cooccurrence_pairs(sequences: Sequence[Sequence[int]], window: int = 1) -> np.ndarray:
    """(earlier, later) item pairs at most ``window`` positions apart in each sequence.

    Pairs of an item with itself are dropped; a pair that occurs in several histories is kept
    once per occurrence (frequent pairs are drawn more often). Returns int64 (m, 2).
    """
    if window < 1:
        raise ValueError(f"window={window}: must be >= 1")
    chunks = []
    for seq in sequences:
        items = np.asarray(seq, dtype=np.int64)
        for gap in range(1, min(window, len(items) - 1) + 1):
            chunks.append(np.stack([items[:-gap], items[gap:]], axis=1))
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def item_pair_set(pairs: np.ndarray, item_texts: Sequence[str], weight: float = 1.0) -> PairSet:
    """Item-text pairs for the symmetric item-item loss; no item appears twice in a batch."""
    return PairSet(
        name="rec",
        anchors=[item_texts[a] for a in pairs[:, 0]],
        positives=[item_texts[b] for b in pairs[:, 1]],
        keys=[(int(a), int(b)) for a, b in pairs],
        symmetric=True,
        weight=weight,
        info={"pairs": int(len(pairs)), "items": int(np.unique(pairs).size)},
    )
