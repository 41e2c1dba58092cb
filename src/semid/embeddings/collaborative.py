"""What the collaborative embedders (ENMF, implicit's ALS/BPR) share: a scikit-learn base.

:class:`CollaborativeEmbedder` validates the training sequences, builds the binary user x item
matrix, times the fit and records what every embedder reports once fitted; a subclass only
trains on that matrix (:meth:`CollaborativeEmbedder._fit_matrix`). ``score`` and ``recommend``
come from the fitted ``user_embeddings_`` / ``item_embeddings_``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from semid.errors import DataError
from semid.evaluation.seen import topk_unseen


def interaction_matrix(sequences: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """Binary users x items CSR matrix of the items in each user's sequence (repeats count once)."""
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = (
        np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
        if len(sequences)
        else np.zeros(0, dtype=np.int64)
    )
    if cols.size and (cols.min() < 0 or cols.max() >= n_items):
        raise DataError(f"train sequences: item index outside 0..{n_items - 1}")
    matrix = sp.csr_matrix(
        (np.ones(cols.size, dtype=np.float32), (rows, cols)), shape=(len(sequences), n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


class CollaborativeEmbedder(BaseEstimator, ABC):
    """User and item vectors from users' item sequences; scores are their dot products.

    Subclasses take keyword-only hyper-parameters (among them ``epochs``) and implement
    :meth:`_fit_matrix`; :meth:`_check_params` may reject a setting before any work.

    Attributes (after ``fit``)
    --------------------------
    user_embeddings_ : ndarray (n_users, dim)
    item_embeddings_ : ndarray (n_items, dim)
    loss_curve_ : list of float
        One value per epoch (what it measures depends on the model).
    n_items_without_interactions_ : int
        Items absent from every training sequence.
    epochs_ : int
    seconds_ : float
        Wall time of the fit.
    """

    epochs: int
    user_embeddings_: np.ndarray
    item_embeddings_: np.ndarray
    loss_curve_: list[float]

    @property
    def _label(self) -> str:
        """Name in error messages."""
        return type(self).__name__

    def _check_params(self) -> None:
        """Raise a ConfigError for an impossible setting (default: nothing to check)."""

    @abstractmethod
    def _fit_matrix(self, matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Train on the binary users x items matrix; return (user, item) vectors (float32).

        May append to ``self.loss_curve_`` (empty when called).
        """

    def fit(self, sequences: Sequence[Sequence[int]], n_items: int) -> CollaborativeEmbedder:
        """Train on users' item sequences (one row per user; order is ignored)."""
        self._check_params()
        if n_items < 1:
            raise DataError(f"n_items={n_items}: need at least one item")
        if len(sequences) == 0:
            raise DataError(f"{self._label}: no training sequences")
        start = time.perf_counter()
        matrix = interaction_matrix(sequences, n_items)
        self.loss_curve_ = []
        users, items = self._fit_matrix(matrix)
        self.user_embeddings_ = np.ascontiguousarray(users, dtype=np.float32)
        self.item_embeddings_ = np.ascontiguousarray(items, dtype=np.float32)
        self.n_items_without_interactions_ = int(n_items - np.unique(matrix.indices).size)
        self.epochs_ = self.epochs
        self.seconds_ = time.perf_counter() - start
        return self

    def score(self, user_rows: Sequence[int]) -> np.ndarray:
        """Scores of the given users (rows of the training sequences) for every item."""
        check_is_fitted(self, "item_embeddings_")
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
