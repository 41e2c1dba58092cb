"""What the collaborative embedders (ENMF, implicit's ALS/BPR) share once fitted."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semid.evaluation.seen import topk_unseen


class UserItemScorer:
    """``score`` and ``recommend`` from fitted ``user_embeddings_`` / ``item_embeddings_``."""

    user_embeddings_: np.ndarray
    item_embeddings_: np.ndarray

    def score(self, user_rows: Sequence[int]) -> np.ndarray:
        """Scores of the given users (rows of the training sequences) for every item."""
        return self.user_embeddings_[np.asarray(user_rows)] @ self.item_embeddings_.T

    def recommend(
        self,
        user_rows: Sequence[int],
        k: int,
        histories: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Top-``k`` items by :meth:`score` per user, skipping each user's ``histories`` items.

        The seen-item rule of :func:`semid.evaluation.seen.topk_unseen`; ``histories=None``
        ranks every item. Returns int64 (n, k).
        """
        scores = self.score(user_rows)
        if histories is None:
            return topk_unseen(scores, [[]] * len(scores), k, exclude_seen=False)
        return topk_unseen(scores, histories, k, exclude_seen=True)
