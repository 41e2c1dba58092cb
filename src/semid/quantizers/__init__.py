"""Semantic-ID stage: quantizers turn item embeddings into codes, codes into unique IDs.

Add a quantizer: write a class with ``fit`` / ``encode`` / ``decode`` (see
:class:`~semid.quantizers.base.Quantizer` and ``examples/custom_quantizer.py``) and register a
factory ``(QuantizerConfig, seed) -> quantizer`` with :func:`register_quantizer` (in-tree: one
line in :mod:`semid.quantizers.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semid._lazy import lazy_getattr
from semid.quantizers.base import Quantizer, level_sizes
from semid.quantizers.config import QuantizerConfig
from semid.quantizers.registry import QUANTIZERS, QuantizerFactory

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


register_quantizer = QUANTIZERS.register


def make_quantizer(cfg: QuantizerConfig, random_state: int) -> Quantizer:
    """An unfitted quantizer for ``cfg`` (names: :mod:`semid.quantizers.registry`)."""
    return QUANTIZERS.get(cfg.name)(cfg, random_state)


__all__ = [
    "QUANTIZERS",
    "QuantizerFactory",
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
