"""Balanced residual k-means (``rq-kmeans-balanced``): every code holds at most ~n/K items.

OneRec's and LETTER's tokenizers constrain cluster sizes so that no code is a huge bucket and no
code is empty. Per level we start from the FAISS k-means centroids (as in ``rq-kmeans``), then
alternate ``balanced_iters`` times:

1. **capacitated assignment** -- each code takes at most ``capacity = ceil(slack * n / K)``
   items. We compute the stable matching between items and codes under the L2 distance: items
   propose to their nearest codes in order, a full code keeps its closest proposers (deferred
   acceptance, vectorised with numpy over each item's 32 nearest codes; the few items refused by
   all 32 take the nearest code with room left). With one shared distance this equals the
   greedy that walks all (item, code) pairs by increasing distance.
2. **centroid update** -- each code becomes the mean of its items.

The rounds stop early once fewer than 0.1% of the items change code.

Why not ``k-means-constrained`` (PyPI)? It solves the exact min-cost flow but pulls in OR-Tools,
pandas and protobuf and builds an n x K flow graph per iteration (16M arcs for 62k items x 256
codes), far slower than this vectorised matching.

Only the training items are balanced: :meth:`encode` maps new items to their nearest code per
level (there is no capacity to respect for one new item), so use :meth:`fit_encode` for the
codes of the items the quantizer was fit on (``build_ids`` does).
"""

from __future__ import annotations

import math

import faiss
import numpy as np
from scipy import sparse

from semid.quantizers.base import DEFAULTS
from semid.quantizers.rq_kmeans import RQKMeans, fit_kmeans


def balanced_assign(
    X: np.ndarray, centroids: np.ndarray, capacity: int, n_candidates: int = 32
) -> np.ndarray:
    """Assign each row of ``X`` to a centroid, at most ``capacity`` rows per centroid.

    Returns the stable matching under L2 distance (see the module docstring), int64 (n,).
    """
    n, k = X.shape[0], centroids.shape[0]
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} codes cannot hold {n} items")
    m = min(k, n_candidates)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, cand = index.search(np.ascontiguousarray(X, dtype=np.float32), m)
    assigned = np.full(n, -1, dtype=np.int64)
    held_dist = np.zeros(n, dtype=np.float32)
    next_choice = np.zeros(n, dtype=np.int64)
    while True:
        free = np.flatnonzero((assigned < 0) & (next_choice < m))
        if free.size == 0:
            break
        proposal = cand[free, next_choice[free]]
        proposal_dist = dist[free, next_choice[free]]
        next_choice[free] += 1
        held = np.flatnonzero(assigned >= 0)
        items = np.concatenate([held, free])
        codes = np.concatenate([assigned[held], proposal])
        dists = np.concatenate([held_dist[held], proposal_dist])
        order = np.lexsort((items, dists, codes))  # by code, then distance, then item index
        items, codes, dists = items[order], codes[order], dists[order]
        starts = np.searchsorted(codes, codes, side="left")
        keep = (np.arange(codes.size) - starts) < capacity
        assigned[items[keep]] = codes[keep]
        held_dist[items[keep]] = dists[keep]
        assigned[items[~keep]] = -1
    leftovers = np.flatnonzero(assigned < 0)
    if leftovers.size:
        room = capacity - np.bincount(assigned[assigned >= 0], minlength=k)
        rows = X[leftovers].astype(np.float64)
        full_dist = (
            (rows**2).sum(1)[:, None] - 2 * rows @ centroids.T + (centroids**2).sum(1)[None, :]
        )
        for row, item in enumerate(leftovers):
            options = np.flatnonzero(room > 0)
            choice = options[np.argmin(full_dist[row, options])]
            assigned[item] = choice
            room[choice] -= 1
    return assigned


class BalancedRQKMeans(RQKMeans):
    """Residual k-means with size-constrained assignment per level.

    Parameters
    ----------
    n_levels, codebook_size, niter, nredo, random_state
        As in :class:`~semid.quantizers.rq_kmeans.RQKMeans` (backend is always faiss-kmeans).
    balanced_iters : int
        Capacitated-assignment / centroid-update rounds per level.
    balance_slack : float
        Capacity per code = ``ceil(balance_slack * n / codebook_size)`` (1.0 = tight).
    """

    def __init__(
        self,
        *,
        n_levels: int = DEFAULTS.levels,
        codebook_size: int = DEFAULTS.codebook_size,
        niter: int = DEFAULTS.kmeans.niter,
        nredo: int = DEFAULTS.kmeans.nredo,
        balanced_iters: int = DEFAULTS.kmeans.balanced_iters,
        balance_slack: float = DEFAULTS.kmeans.balance_slack,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            n_levels=n_levels,
            codebook_size=codebook_size,
            backend="faiss-kmeans",
            niter=niter,
            nredo=nredo,
            random_state=random_state,
        )
        self.balanced_iters = balanced_iters
        self.balance_slack = balance_slack

    def _fit_level(self, residual: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        n, k = residual.shape[0], self.codebook_size
        capacity = math.ceil(self.balance_slack * n / k)
        centroids = fit_kmeans(residual, k, self.niter, self.nredo, self.random_state + level)
        assigned = balanced_assign(residual, centroids, capacity)
        for _ in range(self.balanced_iters):
            counts = np.bincount(assigned, minlength=k)
            onehot = sparse.csr_matrix(
                (np.ones(n, dtype=np.float32), (assigned, np.arange(n))), shape=(k, n)
            )
            sums = np.asarray(onehot @ residual)
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None]
            new = balanced_assign(residual, centroids, capacity)
            changed = float(np.mean(new != assigned))
            assigned = new
            if changed < 1e-3:  # fewer than 0.1% of the items moved: converged
                break
        return centroids, assigned
