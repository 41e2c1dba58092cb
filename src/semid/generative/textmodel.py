"""The ``text-t5`` backbone: a T5 whose encoder reads a frozen sentence encoder's view of a text.

Search inputs (queries, item texts) are embedded once by a pretrained sentence encoder (the
embedding stage's, e.g. all-MiniLM-L6-v2), kept frozen and cached; a learned projection turns
each vector into ``text_slots`` encoder input positions. Recommendation inputs stay ID tokens.
Both go through the same small T5 encoder and decoder trained from scratch, so one seq2seq
model still serves both tasks, while search starts from what the pretrained encoder knows
about language instead of learning English from 80k template queries.

ID-token rows of the input and output tables can start from the quantizer's geometry
(:func:`id_token_vectors`): the mean residual of the items carrying each code, projected by PCA.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

from semid.generative.model import autocast_dtype


class TextConditionedT5(T5ForConditionalGeneration):
    """T5 with a projection from a sentence vector to ``config.text_slots`` encoder inputs."""

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.text_projection = nn.Linear(config.text_dim, config.text_slots * config.d_model)
        nn.init.normal_(self.text_projection.weight, 0.0, config.text_dim**-0.5)
        nn.init.zeros_(self.text_projection.bias)
        # A linear path from the text vector straight to the output logits (see logit_prior).
        self.text_skip = (
            nn.Linear(config.text_dim, config.d_model, bias=False)
            if getattr(config, "text_skip", False)
            else None
        )
        if self.text_skip is not None:
            nn.init.zeros_(self.text_skip.weight)

    def logit_prior(self, text_vectors: torch.Tensor) -> torch.Tensor | None:
        """Per text, a bias added to the logits of every decoding step: the tied token table
        times a learned projection of the text vector (None without ``text_skip``).

        Initialised from the same PCA axes as the ID-token rows (:func:`init_text_skip`), a
        fresh model already ranks each level's codes by the similarity of the text to the
        code's (residual) centroid, which is what dense retrieval over the embeddings the IDs
        were made from does; the seq2seq part learns the rest.
        """
        if self.text_skip is None:
            return None
        projected = self.text_skip(text_vectors.to(self.shared.weight.dtype))
        return projected @ self.shared.weight.T

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        text_vectors: torch.Tensor | None = None,
        text_rows: torch.Tensor | None = None,
        item_tokens: torch.Tensor | None = None,
        item_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder input embeddings of a batch.

        Token embeddings, where positions ``1..text_slots`` of rows ``text_rows`` take the
        projected ``text_vectors`` (one per such row), and positions ``1..m`` of rows
        ``item_rows`` take one vector per history item: the sum of the embeddings of its ID
        tokens (``item_tokens``: (rows, max_items, n_cols), ``pad_token_id`` where absent).
        """
        embeds = self.shared(input_ids)
        if text_vectors is not None and len(text_vectors):
            slots = self.config.text_slots
            # unit-norm sentence vectors have entries ~dim**-0.5: rescale to the tokens' ~1
            scaled = text_vectors.to(embeds.dtype) * self.config.text_dim**0.5
            projected = self.text_projection(scaled).view(len(text_vectors), slots, -1)
            embeds[text_rows, 1 : 1 + slots] = projected.to(embeds.dtype)
        if item_tokens is not None and len(item_tokens):
            if item_rows is None:
                raise ValueError("embed_inputs: item_tokens need their item_rows")
            valid = torch.as_tensor(item_tokens[..., 0] != self.config.pad_token_id)
            pooled = self.shared(item_tokens).sum(dim=2)
            rows = item_rows[:, None].expand_as(valid)[valid]
            cols = torch.arange(1, 1 + valid.shape[1], device=valid.device).expand_as(valid)
            embeds[rows, cols[valid]] = pooled[valid].to(embeds.dtype)
        return embeds


def build_text_t5(
    config: T5Config,
    text_dim: int,
    text_slots: int,
    encoder_path: str,
    pooled_history: bool = True,
    text_skip: bool = False,
    text_tokens: int = 0,
) -> TextConditionedT5:
    """A fresh :class:`TextConditionedT5`; ``encoder_path`` is recorded in its config, and
    ``text_tokens``: how many word pieces of a search text follow its vector slots."""
    config.text_skip = bool(text_skip)
    config.text_tokens = int(text_tokens)
    config.text_dim = int(text_dim)
    config.text_slots = int(text_slots)
    config.text_encoder_path = str(encoder_path)
    config.pooled_history = bool(pooled_history)
    return TextConditionedT5(config)


class FrozenTextEncoder:
    """A sentence-transformers model used frozen, with an in-memory cache of its vectors."""

    def __init__(self, path: str | Path, batch_size: int = 256, precision: str = "fp32") -> None:
        from semid.embeddings.encoders import load_sentence_encoder

        self.path = str(path)
        self.device = "cpu" if not torch.cuda.is_available() else "cuda"
        self.model = load_sentence_encoder(self.path, self.device)
        self.model.eval()
        self.batch_size = batch_size
        #: "fp32" or "bf16" (resolved from "auto" for this machine by :func:`text_precision`)
        self.precision = text_precision(precision)

    @property
    def dim(self) -> int:
        from semid.embeddings.encoders import embedding_dimension

        return embedding_dimension(self.model)

    @property
    def max_tokens(self) -> int:
        """Input tokens the encoder reads (longer texts are truncated)."""
        return int(self.model.max_seq_length)

    def encode(
        self,
        texts: Sequence[str],
        progress: bool = False,
        known: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Unit-norm float32 vectors (n, dim); each distinct text is embedded once.

        ``known``: vectors this encoder already produced for some texts (e.g. the content
        embedding stage's item vectors), reused instead of re-encoding them.
        """
        from semid.embeddings.encoders import encode_texts

        unique, inverse = np.unique(np.asarray(list(texts), dtype=object), return_inverse=True)
        known = known or {}
        todo = [t for t in unique.tolist() if t not in known]
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            fresh = encode_texts(
                self.model, todo, self.batch_size, normalize=True, progress=progress
            )
        found = dict(zip(todo, fresh, strict=True))
        vectors = np.stack([known[t] if t in known else found[t] for t in unique.tolist()])
        return vectors.astype(np.float32)[inverse.reshape(-1)]


def text_precision(precision: str) -> str:
    """``precision`` ("auto", "fp32", "bf16") resolved for this machine: "auto" is "bf16" on
    CUDA with bf16 and on CPUs with AVX512-BF16/AMX (where bf16 autocast is fast), else
    "fp32"."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"text precision {precision!r}: expected auto, fp32 or bf16")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return "bf16" if autocast_dtype(precision, device) is not None else "fp32"


def pca_axes(embeddings: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """(n_features, dim) top principal axes of ``embeddings`` (random ones beyond its rank)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    axes = vt[:dim].T
    if axes.shape[1] < dim:
        extra = rng.standard_normal((x.shape[1], dim - axes.shape[1])) / np.sqrt(x.shape[1])
        axes = np.concatenate([axes, extra], axis=1)
    return axes


def init_text_skip(
    model: TextConditionedT5, axes: np.ndarray, sample: np.ndarray, level: tuple[int, int]
) -> float:
    """Start ``text_skip`` as the PCA projection ``axes`` times a scale that gives the first
    level's prior logits a standard deviation of 1 over ``sample`` text vectors; returns it."""
    if model.text_skip is None or axes.shape[0] != model.text_skip.in_features:
        return 0.0
    with torch.no_grad():
        model.text_skip.weight.copy_(torch.from_numpy(axes.T.astype(np.float32)))
        first, count = level
        prior = model.logit_prior(torch.from_numpy(sample.astype(np.float32)))
        assert prior is not None  # text_skip was just set
        spread = float(prior[:, first : first + count].std(dim=1).mean())
        scale = 1.0 / spread if spread > 0 else 1.0
        model.text_skip.weight.mul_(scale)
    return scale


def id_token_vectors(
    codes: np.ndarray, embeddings: np.ndarray, cardinalities: Sequence[int], dim: int, seed: int
) -> list[np.ndarray]:
    """One ``dim``-vector per (column, code), from the items carrying that code.

    Column ``c`` code ``k`` gets the mean, over the items with that code, of the item's
    embedding minus the mean of the items sharing its prefix ``codes[:, :c]`` (its residual
    at that level; for RQ-kmeans this is close to the level's centroid). Vectors are projected
    on the embeddings' top ``dim`` principal axes (random axes beyond their rank) and scaled to
    unit variance per entry; codes no item carries get a random vector of the same scale.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(axis=0)
    axes = pca_axes(embeddings, dim, seed)
    out = []
    prefix = np.zeros(len(codes), dtype=np.int64)
    for col, card in enumerate(cardinalities):
        _, group = np.unique(prefix, return_inverse=True)
        group = group.reshape(-1)
        counts = np.bincount(group).astype(np.float64)
        group_mean = np.zeros((len(counts), x.shape[1]))
        np.add.at(group_mean, group, x)
        residual = x - group_mean[group] / counts[group, None]
        code = codes[:, col]
        sums = np.zeros((card, x.shape[1]))
        np.add.at(sums, code, residual)
        n = np.bincount(code, minlength=card).astype(np.float64)
        mean = sums / np.maximum(n, 1)[:, None]
        projected = mean @ axes
        scale = projected[n > 0].std() if (n > 0).sum() > 1 else 1.0
        projected = projected / (scale if scale > 0 else 1.0)
        empty = n == 0
        projected[empty] = rng.standard_normal((int(empty.sum()), dim))
        out.append(projected.astype(np.float32))
        prefix = prefix * card + code
    return out
