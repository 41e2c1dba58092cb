"""Item-embedding spaces: content, search, rec, separate, fused-concat, fused-svd, multitask.

``build_embeddings`` writes one space into a folder; ``load_embeddings`` reads it back. The
pieces are usable alone as scikit-learn-style estimators: :class:`ContentEmbedder`,
:class:`ContrastiveTuner`, :class:`ENMF`, :class:`ImplicitMF`, :class:`FusedSVD`.
"""

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

__all__ = [
    "ENMF",
    "ContentEmbedder",
    "ContrastiveTuner",
    "EmbeddingArtifact",
    "EmbeddingConfig",
    "FusedSVD",
    "PairSet",
    "build_embeddings",
    "data_hash",
    "fuse_concat",
    "load_embeddings",
    "resolve_encoder",
]


def __getattr__(name: str):
    if name == "ImplicitMF":  # optional dependency: implicit
        from semid.embeddings.als import ImplicitMF

        return ImplicitMF
    raise AttributeError(name)
