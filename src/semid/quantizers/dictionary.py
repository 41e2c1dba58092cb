"""Residual dictionary codes (``dictionary``): sparse dictionary learning made discrete.

Per level we fit scikit-learn's ``MiniBatchDictionaryLearning`` with ``codebook_size`` atoms on
the residual, with non-negative codes (``positive_code=True``, coordinate descent), so every
atom is learned to be *added*, never subtracted. An item's code at that level is the atom with
the largest non-negative coefficient in a 1-sparse non-negative matching pursuit (the atom most
aligned with the residual, ``argmax_k <r, a_k>``). A discrete code must decode to one vector, so
code ``k`` decodes to ``gain_k * a_k`` where ``gain_k`` is the mean coefficient of the training
items that chose ``k``; the next level is fit on ``r - gain_k * a_k`` (what decode reproduces).

Signed atoms (plain OMP with ``|coef|``) were rejected: one atom would then serve items with
opposite coefficients and its mean gain -- the only thing a discrete code can decode to --
cancels out. Dictionary learning costs O(K^2) per item and pass, so each level is fit on at most
``max_samples`` items (seeded sample) and all items are then encoded.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import MiniBatchDictionaryLearning
from sklearn.exceptions import ConvergenceWarning
from tqdm.auto import tqdm

from semid.quantizers.base import (
    DEFAULTS,
    BaseQuantizer,
    check_codes,
    check_fit_shape,
    check_fitted,
    check_input_dim,
)


class ResidualDictionary(BaseQuantizer):
    """Residual quantizer whose codebooks are learned sparse dictionaries.

    Defaults: :class:`~semid.quantizers.config.DictionaryConfig`.

    Parameters
    ----------
    n_levels, codebook_size : int
        Levels and atoms per level.
    alpha : float
        Sparsity penalty of the dictionary fit.
    max_iter : int
        Passes over the (sampled) residuals per level.
    batch_size : int
        Mini-batch size of the dictionary fit.
    max_samples : int or None
        Fit each level on at most this many items (None = all).
    transform_max_iter : int
        Coordinate-descent iterations of each sparse-coding step.
    random_state : int
        Seed of the sampling and of the dictionary initialisation.

    Attributes
    ----------
    atoms_ : ndarray (n_levels, codebook_size, d)
        Unit-norm atoms of every level.
    gains_ : ndarray (n_levels, codebook_size)
        Mean coefficient of each atom's training items (0 for an unused atom).
    training_log_ : list of dict
        Per level: residual mean squared norm and codes used.
    """

    def __init__(
        self,
        *,
        n_levels: int = DEFAULTS.levels,
        codebook_size: int = DEFAULTS.codebook_size,
        alpha: float = DEFAULTS.dictionary.alpha,
        max_iter: int = DEFAULTS.dictionary.max_iter,
        batch_size: int = DEFAULTS.dictionary.batch_size,
        max_samples: int | None = DEFAULTS.dictionary.max_samples,
        transform_max_iter: int = DEFAULTS.dictionary.transform_max_iter,
        random_state: int = 0,
    ) -> None:
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.alpha = alpha
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.transform_max_iter = transform_max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> ResidualDictionary:
        """Fit one dictionary per level on the residuals of ``X``."""
        X = check_fit_shape(X, self.codebook_size, self.n_levels)
        self.dim_ = X.shape[1]
        rng = np.random.default_rng(self.random_state)
        residual = X.astype(np.float32).copy()
        atoms, gains = [], []
        self.training_log_: list[dict] = []
        for level in tqdm(range(self.n_levels), desc="dictionary levels", leave=False):
            sample = residual
            if self.max_samples and residual.shape[0] > self.max_samples:
                sample = residual[np.sort(rng.choice(residual.shape[0], self.max_samples, False))]
            learner = MiniBatchDictionaryLearning(
                n_components=self.codebook_size,
                alpha=self.alpha,
                max_iter=self.max_iter,
                batch_size=self.batch_size,
                fit_algorithm="cd",
                positive_code=True,
                transform_max_iter=self.transform_max_iter,
                random_state=self.random_state + level,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                learner.fit(sample)
            level_atoms = learner.components_.astype(np.float32)
            level_atoms /= np.maximum(np.linalg.norm(level_atoms, axis=1, keepdims=True), 1e-12)
            code, coef = _match(residual, level_atoms)
            counts = np.bincount(code, minlength=self.codebook_size)
            sums = np.bincount(code, weights=coef, minlength=self.codebook_size)
            level_gains = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0).astype(np.float32)
            residual -= level_gains[code, None] * level_atoms[code]
            atoms.append(level_atoms)
            gains.append(level_gains)
            self.training_log_.append(
                {
                    "level": level + 1,
                    "residual_mse": float(np.mean(np.sum(residual.astype(np.float64) ** 2, 1))),
                    "codes_used": int((counts > 0).sum()),
                }
            )
        self.atoms_ = np.stack(atoms)
        self.gains_ = np.stack(gains)
        return self

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes (n, n_levels): per level the atom most aligned with the residual."""
        check_fitted(self, "atoms_")
        residual = check_input_dim(X, self.dim_).copy()
        codes = np.empty((residual.shape[0], self.n_levels), dtype=np.int64)
        for level in range(self.n_levels):
            code, _ = _match(residual, self.atoms_[level])
            codes[:, level] = code
            residual -= self.gains_[level][code, None] * self.atoms_[level][code]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Sum over levels of ``gain * atom`` of the chosen codes."""
        check_fitted(self, "atoms_")
        codes = check_codes(codes, self.n_levels, self.codebook_size)
        out = np.zeros((codes.shape[0], self.dim_), dtype=np.float32)
        for level in range(self.n_levels):
            out += self.gains_[level][codes[:, level], None] * self.atoms_[level][codes[:, level]]
        return out


def _match(residual: np.ndarray, atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-sparse non-negative matching pursuit: best atom and its clipped coefficient."""
    proj = residual @ atoms.T
    code = np.argmax(proj, axis=1).astype(np.int64)
    coef = np.maximum(proj[np.arange(len(code)), code], 0.0)
    return code, coef
