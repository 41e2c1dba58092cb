"""Residual k-means (RQ-KMeans): one k-means codebook per level, fit on residuals.

Two backends:

``faiss-kmeans`` (default)
    Level 1 runs ``faiss.Kmeans`` on the embeddings; each item takes its nearest centroid and the
    next level runs k-means on what is left (``x - c1``), and so on. This is the greedy RQ-KMeans
    of OneRec and of the published RQ-VAE-vs-RQ-kmeans comparison; it works for any
    ``codebook_size`` and encodes new items the same greedy way. FAISS uses every input point
    (no sub-sampling) and is seeded, so a fit is reproducible.
``faiss-rq``
    ``faiss.ResidualQuantizer(d, M, nbits)``: the same codebooks trained jointly with
    beam-search encoding (``beam_size``). Lower reconstruction error, but ``codebook_size`` must
    be a power of two and training is slower.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import faiss
import numpy as np
from tqdm.auto import tqdm

from semid.errors import ConfigError
from semid.quantizers.base import (
    DEFAULTS,
    BaseQuantizer,
    check_codes,
    check_fit_shape,
    check_fitted,
    check_input_dim,
    require_power_of_two,
)


@contextlib.contextmanager
def faiss_threads_for(work: float) -> Iterator[None]:
    """Run small FAISS jobs (< 1e8 multiply-adds) on one OpenMP thread, restored afterwards.

    On a busy machine, waking OpenMP threads costs more than a tiny job itself.
    """
    before = faiss.omp_get_max_threads()
    if work < 1e8:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def fit_kmeans(X: np.ndarray, k: int, niter: int = 25, nredo: int = 1, seed: int = 0) -> np.ndarray:
    """Centroids (k, d) of FAISS k-means on every row of ``X`` (no sub-sampling), seeded."""
    n, d = X.shape
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        nredo=nredo,
        seed=int(seed) % (2**31),
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(1, math.ceil(n / k) + 1),
    )
    with faiss_threads_for(float(n) * k * d * niter * nredo):
        km.train(np.ascontiguousarray(X, dtype=np.float32))
    return np.asarray(km.centroids, dtype=np.float32).copy()


def nearest(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (L2) of every row of ``X``."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    with faiss_threads_for(float(X.shape[0]) * centroids.shape[0] * centroids.shape[1]):
        _, idx = index.search(np.ascontiguousarray(X, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64)


class RQKMeans(BaseQuantizer):
    """Residual k-means quantizer (defaults: :class:`~semid.quantizers.config.KMeansConfig`).

    Parameters
    ----------
    n_levels : int
        Number of code levels.
    codebook_size : int
        Codes per level (a power of two for ``backend="faiss-rq"``).
    backend : {"faiss-kmeans", "faiss-rq"}
        Per-level ``faiss.Kmeans`` on residuals, or ``faiss.ResidualQuantizer``.
    niter, nredo : int
        k-means iterations and restarts per level.
    beam_size : int
        ``faiss-rq`` only: beam size of training and encoding.
    random_state : int
        Seed of the k-means initialisation.

    Attributes
    ----------
    codebooks_ : ndarray of shape (n_levels, codebook_size, d)
        Centroids of every level (in residual space).
    training_log_ : list of dict
        Per level: mean squared residual after the level, and codes used.
    """

    def __init__(
        self,
        *,
        n_levels: int = DEFAULTS.levels,
        codebook_size: int = DEFAULTS.codebook_size,
        backend: str = DEFAULTS.kmeans.backend,
        niter: int = DEFAULTS.kmeans.niter,
        nredo: int = DEFAULTS.kmeans.nredo,
        beam_size: int = DEFAULTS.kmeans.beam_size,
        random_state: int = 0,
    ) -> None:
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.backend = backend
        self.niter = niter
        self.nredo = nredo
        self.beam_size = beam_size
        self.random_state = random_state

    # -- fitting
    def fit(self, X: np.ndarray, y: object = None) -> RQKMeans:
        """Learn one codebook per level from ``X`` (n, d)."""
        self.fit_encode(X)
        return self

    def fit_encode(self, X: np.ndarray) -> np.ndarray:
        """Fit, then return the codes of ``X`` (the ones the fit assigned)."""
        X = check_fit_shape(X, self.codebook_size, self.n_levels)
        self.dim_ = X.shape[1]
        self.training_log_: list[dict] = []
        if self.backend == "faiss-rq":
            return self._fit_faiss_rq(X)
        if self.backend != "faiss-kmeans":
            raise ConfigError(
                f"quantizer.kmeans.backend={self.backend!r}: expected 'faiss-kmeans' or 'faiss-rq'"
            )
        residual = X.copy()
        codebooks, codes = [], []
        for level in tqdm(range(self.n_levels), desc="rq-kmeans levels", leave=False):
            centroids, assigned = self._fit_level(residual, level)
            residual -= centroids[assigned]
            codebooks.append(centroids)
            codes.append(assigned)
            self.training_log_.append(_level_log(level, residual, assigned, self.codebook_size))
        self.codebooks_ = np.stack(codebooks)
        return np.stack(codes, axis=1)

    def _fit_level(self, residual: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Codebook and assignment of one level (overridden by the balanced variant)."""
        centroids = fit_kmeans(
            residual, self.codebook_size, self.niter, self.nredo, self.random_state + level
        )
        return centroids, nearest(residual, centroids)

    def _fit_faiss_rq(self, X: np.ndarray) -> np.ndarray:
        require_power_of_two(self.codebook_size, "kmeans.backend=faiss-rq")
        nbits = int(math.log2(self.codebook_size))
        index = faiss.IndexResidualQuantizer(X.shape[1], self.n_levels, nbits)
        rq = index.rq
        rq.max_beam_size = self.beam_size
        rq.cp.seed = int(self.random_state) % (2**31)
        rq.cp.niter = self.niter
        rq.cp.nredo = self.nredo
        rq.cp.min_points_per_centroid = 1
        rq.cp.max_points_per_centroid = max(1, math.ceil(X.shape[0] / self.codebook_size) + 1)
        rq.train(X)
        index.is_trained = True
        self.faiss_index_ = faiss.serialize_index(index)
        codebooks = faiss.vector_to_array(rq.codebooks).reshape(
            self.n_levels, self.codebook_size, X.shape[1]
        )
        self.codebooks_ = codebooks.astype(np.float32)
        codes = self.encode(X)
        residual = X.copy()
        for level in range(self.n_levels):
            residual -= self.codebooks_[level][codes[:, level]]
            self.training_log_.append(
                _level_log(level, residual, codes[:, level], self.codebook_size)
            )
        return codes

    # -- inference
    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes (n, n_levels) int64 of ``X``: greedy nearest centroid per level."""
        check_fitted(self, "codebooks_")
        X = check_input_dim(X, self.dim_)
        if self.backend == "faiss-rq":
            index = faiss.deserialize_index(self.faiss_index_)
            packed = index.rq.compute_codes(X)  # type: ignore[attr-defined]  # faiss stub: Index
            nbits = int(math.log2(self.codebook_size))
            widths = np.full(self.n_levels, nbits, dtype=np.int32)
            return faiss.unpack_bitstrings(packed, widths).astype(np.int64)
        residual = X.copy()
        codes = np.empty((X.shape[0], self.n_levels), dtype=np.int64)
        for level in range(self.n_levels):
            codes[:, level] = nearest(residual, self.codebooks_[level])
            residual -= self.codebooks_[level][codes[:, level]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Sum of the chosen centroids of every level: (n, d) float32."""
        check_fitted(self, "codebooks_")
        codes = check_codes(codes, self.n_levels, self.codebook_size)
        out = np.zeros((codes.shape[0], self.dim_), dtype=np.float32)
        for level in range(self.n_levels):
            out += self.codebooks_[level][codes[:, level]]
        return out


def _level_log(level: int, residual: np.ndarray, assigned: np.ndarray, k: int) -> dict:
    counts = np.bincount(assigned, minlength=k)
    share = counts[counts > 0] / counts.sum()
    return {
        "level": level + 1,
        "residual_mse": float(np.mean(np.sum(residual.astype(np.float64) ** 2, axis=1))),
        "codes_used": int((counts > 0).sum()),
        "perplexity": float(np.exp(-(share * np.log(share)).sum())),
    }
