"""Config of the generative model and its training."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from semid.data.config import omit_new_defaults


class ModelConfig(BaseModel):
    """The seq2seq backbone."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = Field(
        "text-t5",
        description="'text-t5' (small T5 from scratch whose encoder reads search texts through "
        "a frozen, cached sentence encoder and histories as ID tokens), 't5-scratch' (small T5 "
        "from scratch on word pieces), 'sentence-encoder' (the embedding encoder + a fresh "
        "decoder) or a path to a local HF seq2seq checkpoint.",
    )
    text_encoder: str | None = Field(
        None,
        description="text-t5: sentence-transformers folder (or minilm/mpnet) that reads search "
        "texts; None = the embedding stage's encoder, else minilm.",
    )
    text_slots: int = Field(
        4, ge=1, description="text-t5: encoder positions the projected text vector fills."
    )
    text_tokens: int = Field(
        0,
        ge=0,
        description="text-t5: also feed the first this-many word pieces of a search text after "
        "its vector slots (a lexical path beside the pooled sentence vector, in which e.g. "
        "'Rocky II' and 'Rocky IV' are near-identical); word pieces trained on item texts and "
        "train queries (text_vocab_size). 0: the vector alone.",
    )
    history_input: str = Field(
        "items",
        pattern="^(items|codes)$",
        description="text-t5: a history item enters the encoder as one position, the sum of "
        "its ID-token embeddings ('items'), or as all its ID tokens ('codes', as in TIGER; "
        "n_cols times longer inputs).",
    )
    text_skip: bool = Field(
        False,
        description="text-t5: add a linear path from the text vector to the output logits "
        "(the tied token table times a projection of the vector), started as the PCA "
        "projection of the ID-token rows, so a fresh model ranks codes like dense retrieval. "
        "Off by default: on validation it cost template search recall (0.81 -> 0.73) for a "
        "small rec gain (benchmarks/results/generator.json).",
    )
    id_init: str = Field(
        "centroids",
        pattern="^(centroids|random)$",
        description="ID-token rows of the input/output tables: 'centroids' (PCA projection of "
        "each code's mean residual, see generative.textmodel.id_token_vectors) or 'random'.",
    )
    d_model: int = Field(256, ge=16)
    d_ff: int = Field(1024, ge=16)
    num_layers: int = Field(4, ge=1, description="Encoder layers.")
    num_decoder_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    d_kv: int = Field(64, ge=8)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    text_vocab_size: int = Field(
        8000, ge=500, description="Word-piece vocabulary trained on item texts and train queries."
    )
    max_query_tokens: int = Field(32, ge=4, description="Truncation of search inputs.")
    text_precision: str = Field(
        "fp32",
        pattern="^(auto|fp32|bf16)$",
        description="text-t5: precision of the frozen sentence encoder when it embeds texts "
        "(the training texts' vectors and, at decoding, each query): bf16 autocast keeps "
        "LayerNorm and softmax in fp32; auto = bf16 on CUDA with bf16 and on CPUs with "
        "AVX512-BF16/AMX, else fp32 (measured: benchmarks/text_precision.py). The run records "
        "the precision it resolved to.",
    )
    max_history_items: int = Field(
        20, ge=1, description="Items of the history fed to the model (most recent last)."
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        """Without ``text_precision`` while fp32 and ``text_tokens`` while 0: configs that do
        not set them dump, hash and key as before they existed."""
        return omit_new_defaults(self, handler(self), ("text_precision", "text_tokens"))


class TrainConfig(BaseModel):
    """Training of the generative model on both tasks at once."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(3.0, gt=0, description="Passes over the training examples.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps.")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    pretrained_lr: float | None = Field(
        None,
        gt=0,
        description="Peak learning rate of the parameters a pretrained checkpoint brings (the "
        "sentence-encoder backbone's encoder, every parameter of a local HF checkpoint); None: "
        "lr. lr's 2e-3 suits a small model trained from scratch, not pretrained weights.",
    )
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    rec_windows_per_user: int | None = Field(
        None, ge=1, description="Most recent sliding-window rec examples kept per user."
    )
    indexing_examples: bool = Field(True, description="Add item text -> item ID examples.")
    indexing_variants: list[str] = Field(
        ["text", "title", "title_year"],
        description="Indexing inputs per item: 'text' (the item's metadata text), 'title' "
        "(the title alone), 'title_year' ('Title (1995)').",
    )
    text_noise: float = Field(
        0.0,
        ge=0.0,
        description="text-t5: std of Gaussian noise added to each (unit) text vector per "
        "training step, renormalised (0.03 keeps cos ~0.86 to the clean vector): teaches the "
        "decoder the neighbourhood of each training text, not only the point.",
    )
    neighbourhood_copies: int = Field(
        0,
        ge=0,
        description="text-t5: extra copies per epoch of each item's metadata-text indexing "
        "input whose sentence vector gets fresh Gaussian noise at every step "
        "(neighbourhood_cos). The decoder learns which item a vector *near* an item text "
        "belongs to; under isotropic noise the best such classifier ranks items by the dot "
        "product of the vector with their texts' vectors (dense retrieval), which is what "
        "inputs unlike any training query (long real requests) need.",
    )
    neighbourhood_cos: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Mean cosine between a neighbourhood copy and its clean vector (noise "
        "std per entry sqrt((1/cos^2 - 1) / dim)).",
    )
    indexing_repeats: int = Field(
        1,
        ge=1,
        description="Each indexing input appears this many times per epoch (DSI-style extra "
        "indexing signal; indexing inputs are cheap, the item IDs are what must be memorised).",
    )
    level_softmax: bool = Field(
        True,
        description="Train each ID position with a softmax over its own level's codes only "
        "(as decoding ranks them) instead of the whole vocabulary.",
    )
    num_threads: int | None = Field(None, ge=1, description="torch threads (default: all cores).")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda'.")
    seed: int | None = Field(
        None,
        description="Seed of the generator's init and example order; None = the run seed. "
        "Varying it alone re-trains only the generator (every other stage is shared).",
    )
    precision: str = Field(
        "auto",
        pattern="^(auto|fp32|bf16)$",
        description="Training: bf16 autocast (fp32 weights) where the hardware supports it; "
        "auto = bf16 on CUDA with bf16 and on CPUs with AVX512-BF16/AMX, else fp32. Decoding "
        "precision is eval.precision.",
    )
    grad_accum_steps: int = Field(
        1,
        ge=1,
        description="Gradient accumulation (accelerate): each optimizer step of batch_size "
        "examples runs in this many micro-batches per process.",
    )
    checkpoint_steps: int | None = Field(
        None,
        ge=1,
        description="Save a resumable checkpoint every this many optimizer steps (None: only "
        "checkpoint_minutes). A killed run continues from the latest one.",
    )
    checkpoint_minutes: float | None = Field(
        10.0,
        gt=0,
        description="Save a resumable checkpoint at the first step after this many minutes "
        "since the last one (None: only checkpoint_steps).",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        """Without the neighbourhood fields while they are off, nor pretrained_lr while None:
        configs that do not use them dump, hash and key as before they existed."""
        dumped = omit_new_defaults(self, handler(self), ("neighbourhood_copies", "pretrained_lr"))
        if self.neighbourhood_copies == 0 and isinstance(dumped, dict):
            dumped.pop("neighbourhood_cos", None)  # no copies: their cosine changes nothing
        return dumped
