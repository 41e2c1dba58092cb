"""Fused spaces: one item vector from a search (text) space and a rec (collaborative) space.

- concat: ``[ŝ_v, r̂_v]`` with ``ŝ``, ``r̂`` the L2-normalised search and rec vectors.
- svd: both L2-normalised; the higher-dimensional one is reduced to the other's dimension with
  truncated SVD (no centring) and L2-normalised again, so both halves weigh the same; then
  the two are added element-wise.

A query has only a search part, so it is mapped into the fused space with the same
normalisation / projection and a zero rec part (:meth:`FusedSVD.transform_search`,
:func:`pad_search`): its cosine ranking then only reads the items' search half.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import TruncatedSVD


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero); float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _check_pair(search: np.ndarray, rec: np.ndarray) -> None:
    if search.ndim != 2 or rec.ndim != 2 or search.shape[0] != rec.shape[0]:
        raise ValueError(
            f"search {search.shape} and rec {rec.shape} must be 2-D with one row per item"
        )


def fuse_concat(search: np.ndarray, rec: np.ndarray) -> np.ndarray:
    """``[l2(search), l2(rec)]``: (n, d_search + d_rec), each half of unit norm."""
    _check_pair(search, rec)
    return np.hstack([l2_normalize(search), l2_normalize(rec)])


def pad_search(search_queries: np.ndarray, rec_dim: int) -> np.ndarray:
    """Queries into the concat space: ``[l2(q), 0]``."""
    normed = l2_normalize(search_queries)
    return np.hstack([normed, np.zeros((normed.shape[0], rec_dim), dtype=np.float32)])


class FusedSVD:
    """Add a search and a rec space after reducing the wider one with truncated SVD.

    Parameters
    ----------
    random_state : int
        Seed of the randomised SVD.

    Attributes
    ----------
    reduced_ : {"search", "rec"} or None
        Which space was reduced (None when both have the same dimension).
    svd_ : TruncatedSVD or None
        The fitted reduction.
    embeddings_ : ndarray (n_items, min(d_search, d_rec))
        The fused item vectors.
    """

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, search: np.ndarray, rec: np.ndarray) -> FusedSVD:
        """Fit the reduction and fuse ``search`` and ``rec`` (one row per item)."""
        _check_pair(search, rec)
        search, rec = l2_normalize(search), l2_normalize(rec)
        self.reduced_ = None
        self.svd_ = None
        if search.shape[1] != rec.shape[1]:
            self.reduced_ = "search" if search.shape[1] > rec.shape[1] else "rec"
            wide = search if self.reduced_ == "search" else rec
            target = min(search.shape[1], rec.shape[1])
            if target > wide.shape[0]:
                raise ValueError(f"fused-svd: {wide.shape[0]} items < target dimension {target}")
            self.svd_ = TruncatedSVD(n_components=target, random_state=self.random_state)
            reduced = l2_normalize(self.svd_.fit_transform(wide))
            if self.reduced_ == "search":
                search = reduced
            else:
                rec = reduced
        self.embeddings_ = (search + rec).astype(np.float32)
        return self

    @property
    def query_projection_(self) -> np.ndarray | None:
        """(dim, d_search) matrix that maps normalised search vectors into the fused space."""
        if self.reduced_ == "search" and self.svd_ is not None:
            return self.svd_.components_.astype(np.float32)
        return None

    def transform_search(self, search_queries: np.ndarray) -> np.ndarray:
        """Queries (search-space vectors) into the fused space, with a zero rec part."""
        return project_search(search_queries, self.query_projection_)


def project_search(search_queries: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """``l2(l2(q) @ projection.T)`` (or ``l2(q)`` without projection)."""
    normed = l2_normalize(search_queries)
    if projection is None:
        return normed
    return l2_normalize(normed @ projection.T)
