"""Add your own quantizer to semid in ~40 lines.

A quantizer is a scikit-learn estimator on :class:`semid.quantizers.base.BaseQuantizer` with
keyword-only hyper-parameters (``n_levels``, ``codebook_size``, ...), ``fit``, ``encode``,
``decode`` and ``training_log_`` (``fit_encode``, ``get_params`` and ``clone`` come with it).
This one is deliberately simple: at every level it projects the residual on its first principal
component and cuts that axis into ``codebook_size`` equal-count bins (code = bin, code vector =
mean residual of the bin).

    python examples/custom_quantizer.py

Register it and every part of semid can use it once this file is imported as a plugin:

    semid ids fit item.npy --out ids/ --quantizer pca-bins --plugin examples/custom_quantizer.py
    semid run --plugin examples/custom_quantizer.py --quantizer pca-bins
    semid grid my-grid.yaml --jobs 2 --plugin examples/custom_quantizer.py

The run records the plugin in its ``config.json`` (``plugins``), so grid workers and later
commands import it too. From Python: import this module, then ``build_ids`` or a config with
``quantizer.name: pca-bins``. A package can instead declare an entry point in the
``semid.quantizers`` group (``pca-bins = "my_pkg.pca_bins:make"``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from semid.quantizers import QuantizerConfig, build_ids, load_ids, register_quantizer
from semid.quantizers.base import (
    BaseQuantizer,
    check_codes,
    check_fit_shape,
    check_fitted,
    check_input_dim,
)
from semid.quantizers.diagnostics import format_diagnostics


class PCABins(BaseQuantizer):
    """Per level: bin the residual's first principal component into equal-count bins."""

    def __init__(self, *, n_levels: int = 2, codebook_size: int = 16) -> None:
        self.n_levels = n_levels
        self.codebook_size = codebook_size

    def fit(self, X: np.ndarray, y: object = None) -> PCABins:
        X = check_fit_shape(X, self.codebook_size, self.n_levels)
        residual = X.copy()
        self.axes_, self.edges_, self.means_, self.training_log_ = [], [], [], []
        for _ in range(self.n_levels):
            axis = np.linalg.svd(residual - residual.mean(0), full_matrices=False)[2][0]
            proj = residual @ axis
            edges = np.quantile(proj, np.linspace(0, 1, self.codebook_size + 1)[1:-1])
            code = np.searchsorted(edges, proj)
            means = np.stack(
                [
                    residual[code == k].mean(0) if (code == k).any() else np.zeros(X.shape[1])
                    for k in range(self.codebook_size)
                ]
            )
            residual = residual - means[code]
            self.axes_.append(axis)
            self.edges_.append(edges)
            self.means_.append(means.astype(np.float32))
        return self

    def encode(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self, "means_")
        residual = check_input_dim(X, len(self.axes_[0])).copy()
        codes = []
        for axis, edges, means in zip(self.axes_, self.edges_, self.means_, strict=True):
            code = np.searchsorted(edges, residual @ axis)
            residual -= means[code]
            codes.append(code)
        return np.stack(codes, axis=1).astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        check_fitted(self, "means_")
        codes = check_codes(codes, self.n_levels, self.codebook_size)
        return sum(means[codes[:, j]] for j, means in enumerate(self.means_)).astype(np.float32)


register_quantizer(
    "pca-bins",
    lambda cfg, seed: PCABins(n_levels=cfg.levels, codebook_size=cfg.codebook_size),
    "per level, equal-count bins of the residual's first principal component (examples/)",
)

if __name__ == "__main__":
    X = np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32)
    cfg = QuantizerConfig(name="pca-bins", levels=2, codebook_size=16)
    with tempfile.TemporaryDirectory() as tmp:
        build_ids(cfg, {"item": X}, Path(tmp), random_state=0)
        space = load_ids(Path(tmp))["item"]
        print(f"IDs {space.codes.shape}, cardinalities {space.cardinalities}")
        print(
            format_diagnostics(
                __import__("json").loads((Path(tmp) / "item" / "diagnostics.json").read_text())
            )
        )
