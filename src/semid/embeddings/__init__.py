"""Item-embedding spaces: content, search, rec, separate, fused-concat, fused-svd, multitask.

``build_embeddings`` writes one space into a folder; ``load_embeddings`` reads it back. The
pieces are usable alone as scikit-learn-style estimators: :class:`ContentEmbedder`,
:class:`ContrastiveTuner`, :class:`ENMF`, :class:`ImplicitMF`, :class:`FusedSVD`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semid._lazy import lazy_getattr

# Public name -> module. Imported on first use, so that ``import semid.config`` (which needs
# only EmbeddingConfig) does not pull in torch and sentence-transformers.
_EXPORTS = {
    "EmbeddingArtifact": "build",
    "build_embeddings": "build",
    "data_hash": "build",
    "load_embeddings": "build",
    "EmbeddingConfig": "config",
    "ContentEmbedder": "content",
    "resolve_encoder": "encoders",
    "ENMF": "enmf",
    "FusedSVD": "fused",
    "fuse_concat": "fused",
    "ContrastiveTuner": "search",
    "PairSet": "search",
    "ImplicitMF": "als",  # optional dependency: implicit
}

__all__ = [
    "ENMF",
    "ContentEmbedder",
    "ContrastiveTuner",
    "EmbeddingArtifact",
    "EmbeddingConfig",
    "FusedSVD",
    "ImplicitMF",
    "PairSet",
    "build_embeddings",
    "data_hash",
    "fuse_concat",
    "load_embeddings",
    "resolve_encoder",
]

if TYPE_CHECKING:
    from semid.embeddings.als import ImplicitMF
    from semid.embeddings.build import (
        EmbeddingArtifact,
        build_embeddings,
        data_hash,
        load_embeddings,
    )
    from semid.embeddings.config import EmbeddingConfig
    from semid.embeddings.content import ContentEmbedder
    from semid.embeddings.encoders import resolve_encoder
    from semid.embeddings.enmf import ENMF
    from semid.embeddings.fused import FusedSVD, fuse_concat
    from semid.embeddings.search import ContrastiveTuner, PairSet


__getattr__ = lazy_getattr(__name__, _EXPORTS)
