"""The quantizer interface and the input checks every quantizer shares.

A quantizer is a scikit-learn estimator (:class:`BaseQuantizer`, on
:class:`sklearn.base.BaseEstimator`): hyper-parameters are keyword-only ``__init__`` arguments
stored as-is (so ``get_params``, ``set_params`` and ``sklearn.base.clone`` work), ``fit(X)``
learns the codebooks and returns ``self``, ``encode(X)`` maps each row to ``n_levels`` codes and
``decode(codes)`` maps codes back to the input space; ``fit_encode(X)`` is ``fit`` then
``encode`` unless a quantizer knows the codes of its training rows already. Learned state ends in
``_``; ``encode`` / ``decode`` before ``fit`` raise :class:`QuantizerNotFittedError` (a
:class:`~semid.errors.ConfigError` and sklearn's ``NotFittedError``). See
``examples/custom_quantizer.py`` for a new quantizer in 30 lines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from semid.errors import ConfigError, DataError
from semid.quantizers.config import QuantizerConfig

# Every hyper-parameter default of semid's quantizers, written once: in the config models.
DEFAULTS = QuantizerConfig()


@runtime_checkable
class Quantizer(Protocol):
    """What the ids stage needs from a quantizer."""

    n_levels: int
    codebook_size: int
    training_log_: list[dict]

    def fit(self, X: np.ndarray) -> Quantizer:
        """Learn the codebooks from ``X`` (float32, n x d)."""
        ...

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes of ``X``: int64 (n, n_levels), each in ``[0, codebook_size)``."""
        ...

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction of ``codes`` in the input space: float32 (n, d)."""
        ...

    def fit_encode(self, X: np.ndarray) -> np.ndarray:
        """Fit on ``X``, then its codes."""
        ...


class QuantizerNotFittedError(ConfigError, NotFittedError):
    """``encode`` / ``decode`` before ``fit``."""


class BaseQuantizer(BaseEstimator, ABC):
    """Base class of semid's quantizers (see the module docstring).

    Subclasses declare their hyper-parameters as keyword-only ``__init__`` arguments stored
    under the same names, implement ``fit``, ``encode`` and ``decode``, and may override
    ``fit_encode`` when fitting computes the codes of the training rows anyway.
    """

    n_levels: int
    codebook_size: int
    training_log_: list[dict]

    @abstractmethod
    def fit(self, X: np.ndarray, y: Any = None) -> BaseQuantizer:
        """Learn the codebooks from ``X`` (n, d); ``y`` is ignored. Returns ``self``."""

    @abstractmethod
    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes of ``X``: int64 (n, n_levels), each in ``[0, codebook_size)``."""

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction of ``codes`` in the input space: float32 (n, d)."""

    def fit_encode(self, X: np.ndarray) -> np.ndarray:
        """Fit on ``X``, then return its codes (``fit(X).encode(X)``)."""
        return self.fit(X).encode(X)


def level_sizes(quantizer: Quantizer) -> list[int]:
    """Number of distinct codes each level can emit (FSQ may use fewer than codebook_size)."""
    sizes = getattr(quantizer, "level_sizes_", None)
    return list(sizes) if sizes is not None else [int(quantizer.codebook_size)] * quantizer.n_levels


def check_embeddings(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Validate an embedding matrix and return it as a C-contiguous float32 array."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array (n_items, dim), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{name}: empty array of shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{name}: expected numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise DataError(f"{name}: {bad} rows contain NaN or infinite values")
    return X


def check_fit_shape(X: np.ndarray, codebook_size: int, n_levels: int) -> np.ndarray:
    """Validate ``X`` for fitting a quantizer with ``codebook_size`` codes per level."""
    X = check_embeddings(X)
    if n_levels < 1:
        raise ConfigError(f"quantizer.levels={n_levels}: must be >= 1")
    if codebook_size < 2:
        raise ConfigError(f"quantizer.codebook_size={codebook_size}: must be >= 2")
    if codebook_size > X.shape[0]:
        raise ConfigError(
            f"quantizer.codebook_size={codebook_size} is larger than the number of items "
            f"({X.shape[0]}): use a smaller codebook"
        )
    return X


def check_input_dim(X: np.ndarray, dim: int) -> np.ndarray:
    """Validate rows to encode against the fitted input dimension."""
    X = check_embeddings(X)
    if X.shape[1] != dim:
        raise DataError(f"X: expected {dim} columns (the fitted dimension), got {X.shape[1]}")
    return X


def check_codes(codes: np.ndarray, n_levels: int, codebook_size: int) -> np.ndarray:
    """Validate a code matrix for ``decode`` and return it as int64."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != n_levels:
        raise DataError(f"codes: expected shape (n, {n_levels}), got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"codes: expected integers, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise DataError(f"codes: values must be in [0, {codebook_size})")
    return codes.astype(np.int64, copy=False)


def require_power_of_two(codebook_size: int, quantizer: str) -> None:
    """Raise a ConfigError unless ``codebook_size`` is a power of two."""
    if codebook_size < 2 or codebook_size & (codebook_size - 1):
        raise ConfigError(
            f"quantizer.codebook_size={codebook_size}: {quantizer} needs a power of 2 "
            "(e.g. 128, 256, 512)"
        )


def check_fitted(quantizer: object, attribute: str) -> None:
    """``sklearn.utils.validation.check_is_fitted`` with semid's error (see the module doc)."""
    try:
        check_is_fitted(quantizer, attribute)
    except NotFittedError:
        raise QuantizerNotFittedError(
            f"{type(quantizer).__name__}: call fit() before encode()/decode()"
        ) from None
