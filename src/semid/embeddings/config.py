"""Config of the embedding stage.

Defaults fit a 2-core CPU: every space builds on ml-latest-small in a few minutes. The
``paper-embeddings`` preset holds the paper's budgets (meant for a GPU).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from semid.data.config import omit_new_defaults

RecModel = Literal["enmf", "als", "bpr"]


class EmbeddingConfig(BaseModel):
    """Which item-embedding space to build, with which encoder and training budgets."""

    model_config = ConfigDict(extra="forbid")

    space: str = Field(
        "content",
        description="Item-embedding space (semid.embeddings.spaces.SPACES, `semid embed list`): "
        "content (sentence encoder on item text), search "
        "(encoder fine-tuned on training queries), rec (collaborative, see rec_model), separate "
        "(search + rec, two ID spaces), fused-concat, fused-svd (search and rec fused into one), "
        "multitask (one encoder tuned on queries and co-occurring items).",
    )
    encoder: str = Field(
        "minilm",
        description="Sentence encoder: 'minilm' (all-MiniLM-L6-v2), 'mpnet' (all-mpnet-base-v2) "
        "or a path to a local sentence-transformers folder.",
    )
    batch_size: int = Field(128, ge=1, description="Encoding batch size.")
    normalize: bool = Field(
        True, description="L2-normalise the item embeddings of every space written."
    )
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")

    # Contrastive fine-tuning of the encoder (spaces search, separate, fused-*, multitask).
    tune_epochs: float = Field(
        1.0, gt=0, description="Passes over the training (query, item) pairs."
    )
    tune_max_steps: int | None = Field(
        60, ge=1, description="Stop fine-tuning after this many steps (None: run every epoch)."
    )
    tune_batch_size: int = Field(
        64, ge=2, description="Pairs per step; the other pairs of a batch are the negatives."
    )
    tune_lr: float = Field(5e-5, gt=0, description="AdamW learning rate of the fine-tuning.")
    tune_warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Linear warm-up share.")
    tune_max_seq_length: int = Field(
        64, ge=8, description="Tokens kept of each query / item text while fine-tuning."
    )
    tune_scale: float = Field(
        20.0, gt=0, description="Inverse temperature of the in-batch softmax (cosine * scale)."
    )

    # Collaborative embeddings (spaces rec, separate, fused-*).
    rec_model: RecModel = Field(
        "enmf",
        description="enmf (Chen et al. 2020, whole-data loss, PyTorch) or implicit's als / bpr.",
    )
    rec_dim: int = Field(64, ge=2, description="Dimension of the collaborative embeddings.")
    rec_epochs: int = Field(
        100, ge=1, description="Epochs (ENMF, BPR) or alternating iterations (ALS)."
    )
    rec_batch_size: int = Field(64, ge=1, description="Users per ENMF step.")
    rec_lr: float = Field(0.01, gt=0, description="Learning rate (ENMF: Adam; BPR: SGD).")
    rec_neg_weight: float = Field(
        0.1,
        ge=0,
        description="ENMF weight c0 of every unobserved (user, item) pair (observed pairs: 1).",
    )
    rec_dropout: float = Field(
        0.3, ge=0, lt=1, description="ENMF dropout on the user vector (as in the original)."
    )
    rec_regularization: float = Field(0.01, ge=0, description="ALS / BPR L2 regularisation.")
    rec_alpha: float = Field(
        10.0, gt=0, description="ALS confidence of observed pairs (1 + alpha)."
    )

    # Multitask space.
    cooc_window: int = Field(
        1,
        ge=1,
        description="multitask: items at most this many positions apart in a user's training "
        "history form an (item, item) positive pair.",
    )
    rec_loss_weight: float = Field(
        1.0, ge=0, description="multitask: weight of the item-item loss (the query loss has 1)."
    )

    seed: int | None = Field(
        None,
        description="Seed of the embedding training of the trained spaces (search, rec, "
        "fused-*, multitask; None: the run seed). With `train.seed` and `quantizer.seed` it "
        "varies every training seed while the splits (run seed) stay fixed.",
    )

    @field_validator("space")
    @classmethod
    def _known_space(cls, value: str) -> str:
        from semid.embeddings.spaces import SPACES

        return SPACES.validate(value)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        """Without ``seed`` while None: configs that do not set it dump, hash and key as
        before it existed."""
        return omit_new_defaults(self, handler(self), ("seed",))
