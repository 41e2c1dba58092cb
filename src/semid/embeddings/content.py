"""Content space: a pre-trained sentence encoder applied to each item's text."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semid.device import resolve_device
from semid.embeddings.encoders import (
    encode_texts,
    load_sentence_encoder,
    resolve_encoder,
)


class ContentEmbedder:
    """Embed item texts with a frozen sentence encoder.

    Parameters
    ----------
    encoder : str
        ``minilm``, ``mpnet`` or a local sentence-transformers folder (see
        :func:`semid.embeddings.resolve_encoder`).
    batch_size : int
        Texts encoded at once.
    normalize : bool
        L2-normalise the embeddings.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    progress : bool
        Show a progress bar.

    Attributes
    ----------
    encoder_path_ : str
        The resolved model folder.
    embeddings_ : ndarray of shape (n_texts, dim)
        The embeddings of the texts given to :meth:`fit`.
    """

    def __init__(
        self,
        encoder: str = "minilm",
        batch_size: int = 128,
        normalize: bool = True,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self.progress = progress

    def fit(self, texts: Sequence[str]) -> ContentEmbedder:
        """Load the encoder and embed ``texts`` (nothing is trained)."""
        self.encoder_path_ = resolve_encoder(self.encoder)
        self.model_ = load_sentence_encoder(
            self.encoder_path_, str(resolve_device(self.device, "embedding.device"))
        )
        self.embeddings_ = self.transform(texts)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 (n, dim)."""
        return encode_texts(
            self.model_, list(texts), self.batch_size, self.normalize, self.progress
        )
