"""Semantic-ID stage: quantizers turn item embeddings into codes, codes into unique IDs.

Add a quantizer: write a class with ``fit`` / ``encode`` / ``decode`` (see
:class:`~semid.quantizers.base.Quantizer` and ``examples/custom_quantizer.py``) and register a
factory with :func:`register_quantizer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from semid._lazy import lazy_getattr
from semid.errors import ConfigError
from semid.quantizers.base import Quantizer, level_sizes
from semid.quantizers.config import QUANTIZER_NAMES, QuantizerConfig

# Public name -> module, imported on first use (the quantizers pull in torch and FAISS).
_LAZY = {
    "BalancedRQKMeans": "balanced",
    "diagnose": "diagnostics",
    "format_diagnostics": "diagnostics",
    "ResidualDictionary": "dictionary",
    "SemanticIdSpace": "ids",
    "assign_ids": "ids",
    "build_ids": "ids",
    "load_ids": "ids",
    "load_quantizer": "ids",
    "semantic_id_strings": "ids",
    "RQKMeans": "rq_kmeans",
    "RQVAE": "rq_vae",
    "fsq_levels_for": "rq_vae",
}

if TYPE_CHECKING:
    from semid.quantizers.balanced import BalancedRQKMeans
    from semid.quantizers.diagnostics import diagnose, format_diagnostics
    from semid.quantizers.dictionary import ResidualDictionary
    from semid.quantizers.ids import (
        SemanticIdSpace,
        assign_ids,
        build_ids,
        load_ids,
        load_quantizer,
        semantic_id_strings,
    )
    from semid.quantizers.rq_kmeans import RQKMeans
    from semid.quantizers.rq_vae import RQVAE, fsq_levels_for


__getattr__ = lazy_getattr(__name__, _LAZY)


QuantizerFactory = Callable[[QuantizerConfig, int], Quantizer]


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


QUANTIZERS: dict[str, QuantizerFactory] = {
    "rq-kmeans": _rq_kmeans,
    "rq-kmeans-balanced": _rq_kmeans_balanced,
    "rq-vae": _vae("vq"),
    "rq-vae-defaults": _vae("vq"),
    "rq-vae-tuned": _vae("vq"),
    "residual-lfq": _vae("lfq"),
    "residual-fsq": _vae("fsq"),
    "dictionary": _dictionary,
}


def register_quantizer(name: str, factory: QuantizerFactory) -> None:
    """Make ``quantizer.name: <name>`` build ``factory(cfg, random_state)``."""
    QUANTIZERS[name] = factory
    if name not in QUANTIZER_NAMES:
        QUANTIZER_NAMES.append(name)


def make_quantizer(cfg: QuantizerConfig, random_state: int) -> Quantizer:
    """An unfitted quantizer for ``cfg`` (see :mod:`semid.quantizers.config` for names)."""
    try:
        factory = QUANTIZERS[cfg.name]
    except KeyError:
        raise ConfigError(
            f"quantizer.name={cfg.name!r}: unknown (available: {', '.join(QUANTIZERS)})"
        ) from None
    return factory(cfg, random_state)


__all__ = [
    "QUANTIZERS",
    "RQVAE",
    "BalancedRQKMeans",
    "Quantizer",
    "QuantizerConfig",
    "RQKMeans",
    "ResidualDictionary",
    "SemanticIdSpace",
    "assign_ids",
    "build_ids",
    "diagnose",
    "format_diagnostics",
    "fsq_levels_for",
    "level_sizes",
    "load_ids",
    "load_quantizer",
    "make_quantizer",
    "register_quantizer",
    "semantic_id_strings",
]
