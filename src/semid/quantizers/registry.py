"""The quantizer registry: ``quantizer.name`` -> a factory ``(QuantizerConfig, seed) -> Quantizer``.

Add a quantizer in-tree: write its module (a class with ``fit`` / ``encode`` / ``decode``, see
:class:`~semid.quantizers.base.Quantizer`) and one ``QUANTIZERS.register`` line below. Outside
the package: call :func:`semid.quantizers.register_quantizer` in a plugin module, or declare an
entry point in the ``semid.quantizers`` group (see :mod:`semid.registry`). Names, the config's
validation, ``semid ids fit --quantizer`` help and ``semid ids list`` all read this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from semid.registry import Registry

if TYPE_CHECKING:
    from semid.quantizers.base import Quantizer
    from semid.quantizers.config import QuantizerConfig

QuantizerFactory = Callable[["QuantizerConfig", int], "Quantizer"]

QUANTIZERS: Registry[QuantizerFactory] = Registry("quantizer", "quantizer.name", "semid.quantizers")


def _rq_kmeans(cfg: QuantizerConfig, seed: int) -> Quantizer:
    from semid.quantizers.rq_kmeans import RQKMeans

    k = cfg.kmeans
    return RQKMeans(
        n_levels=cfg.levels,
        codebook_size=cfg.codebook_size,
        backend=k.backend,
        niter=k.niter,
        nredo=k.nredo,
        beam_size=k.beam_size,
        random_state=seed,
    )


def _rq_kmeans_balanced(cfg: QuantizerConfig, seed: int) -> Quantizer:
    from semid.quantizers.balanced import BalancedRQKMeans

    k = cfg.kmeans
    return BalancedRQKMeans(
        n_levels=cfg.levels,
        codebook_size=cfg.codebook_size,
        niter=k.niter,
        nredo=k.nredo,
        balanced_iters=k.balanced_iters,
        balance_slack=k.balance_slack,
        random_state=seed,
    )


def _vae(kind: str) -> QuantizerFactory:
    def factory(cfg: QuantizerConfig, seed: int) -> Quantizer:
        from semid.quantizers.rq_vae import RQVAE

        return RQVAE(
            n_levels=cfg.levels,
            codebook_size=cfg.codebook_size,
            kind=kind,
            random_state=seed,
            **cfg.vae.model_dump(),
        )

    return factory


def _dictionary(cfg: QuantizerConfig, seed: int) -> Quantizer:
    from semid.quantizers.dictionary import ResidualDictionary

    d = cfg.dictionary
    return ResidualDictionary(
        n_levels=cfg.levels,
        codebook_size=cfg.codebook_size,
        alpha=d.alpha,
        max_iter=d.max_iter,
        batch_size=d.batch_size,
        max_samples=d.max_samples,
        transform_max_iter=d.transform_max_iter,
        random_state=seed,
    )


QUANTIZERS.register(
    "rq-kmeans", _rq_kmeans, "per-level FAISS k-means on residuals (kmeans.backend)"
)
QUANTIZERS.register(
    "rq-kmeans-balanced",
    _rq_kmeans_balanced,
    "same, with size-constrained (balanced) assignment per level",
)
QUANTIZERS.register("rq-vae", _vae("vq"), "MLP encoder -> ResidualVQ -> MLP decoder, knobs in vae")
QUANTIZERS.register(
    "rq-vae-defaults", _vae("vq"), "rq-vae with vector-quantize-pytorch's defaults, plain Adam"
)
QUANTIZERS.register(
    "rq-vae-tuned", _vae("vq"), "rq-vae with the recipe measured best on content embeddings"
)
QUANTIZERS.register(
    "residual-lfq", _vae("lfq"), "same trainer with ResidualLFQ (codebook_size a power of 2)"
)
QUANTIZERS.register(
    "residual-lfq-tuned",
    _vae("lfq"),
    "residual-lfq with rq-vae-tuned's recipe plus a commitment loss (0.25)",
)
QUANTIZERS.register(
    "residual-fsq", _vae("fsq"), "same trainer with ResidualFSQ (levels from vae.fsq_levels)"
)
QUANTIZERS.register(
    "dictionary", _dictionary, "per-level scikit-learn MiniBatchDictionaryLearning -> codes"
)
