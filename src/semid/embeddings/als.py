"""Library alternatives to ENMF: ``implicit``'s ALS and BPR (optional extra ``semid[als]``).

Both score ``user_embeddings_ @ item_embeddings_.T`` like :class:`semid.embeddings.enmf.ENMF`.
Items absent from every training sequence get a zero vector under ALS.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from semid.embeddings.collaborative import CollaborativeEmbedder
from semid.errors import ConfigError


class ImplicitMF(CollaborativeEmbedder):
    """Matrix factorisation of the binary user x item matrix with ``implicit``.

    Parameters
    ----------
    model : {"als", "bpr"}
        Alternating least squares (Hu et al. 2008) or Bayesian personalised ranking.
    dim : int
        Embedding dimension (BPR: ``dim - 1`` factors plus implicit's item-bias column).
    epochs : int
        ALS iterations or BPR epochs.
    regularization : float
        L2 regularisation.
    alpha : float
        ALS confidence of observed pairs (``1 + alpha``).
    lr : float
        BPR learning rate.
    random_state : int
        Seed.
    progress : bool
        Show implicit's progress bar.

    Attributes
    ----------
    item_embeddings_ : ndarray (n_items, dim)
    user_embeddings_ : ndarray (n_users, dim)
    loss_curve_ : list of float
        ALS training loss per iteration; BPR share of correctly ordered samples per epoch.
    n_items_without_interactions_ : int
    """

    def __init__(
        self,
        *,
        model: str = "als",
        dim: int = 64,
        epochs: int = 15,
        regularization: float = 0.01,
        alpha: float = 10.0,
        lr: float = 0.01,
        random_state: int = 0,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.dim = dim
        self.epochs = epochs
        self.regularization = regularization
        self.alpha = alpha
        self.lr = lr
        self.random_state = random_state
        self.progress = progress

    @property
    def _label(self) -> str:
        return self.model

    def _check_params(self) -> None:
        try:
            import implicit  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"embedding.rec_model={self.model}: needs the package implicit "
                "(pip install 'semid[als]' or pip install implicit)"
            ) from exc
        if self.model not in ("als", "bpr"):
            raise ConfigError(f"embedding.rec_model={self.model}: expected 'als' or 'bpr'")

    def _fit_matrix(self, matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits

        # implicit warns about OpenBLAS threads on construction; they are limited to 1 here
        with warnings.catch_warnings(), threadpool_limits(1, "blas"):
            warnings.filterwarnings("ignore", message=".*OpenBLAS.*", category=RuntimeWarning)
            if self.model == "als":
                estimator = AlternatingLeastSquares(
                    factors=self.dim,
                    regularization=self.regularization,
                    alpha=self.alpha,
                    iterations=self.epochs,
                    calculate_training_loss=True,
                    random_state=self.random_state,
                )

                def record(*progress: Any) -> None:  # (iteration, elapsed, loss)
                    self.loss_curve_.append(round(float(progress[2]), 6))
            else:
                estimator = BayesianPersonalizedRanking(
                    factors=max(1, self.dim - 1),
                    learning_rate=self.lr,
                    regularization=self.regularization,
                    iterations=self.epochs,
                    random_state=self.random_state,
                )

                def record(*progress: Any) -> None:  # (epoch, elapsed, correct, skipped)
                    self.loss_curve_.append(round(float(progress[2]) / max(matrix.nnz, 1), 6))

            estimator.fit(matrix, show_progress=self.progress, callback=record)
        return estimator.user_factors, estimator.item_factors
