"""Config of the semantic-ID stage: quantizer and ID shape.

Quantizer names (``QuantizerConfig.name``) are those of
:data:`semid.quantizers.registry.QUANTIZERS` (``semid ids list`` prints them with their help).

The two RQ-VAE presets are resolved when the config is validated: ``vae`` then holds the
preset's values, with any field the user set explicitly winning. The saved config therefore
shows every value that was used, and re-validating it gives the same config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class KMeansConfig(BaseModel):
    """Residual k-means (``rq-kmeans`` and ``rq-kmeans-balanced``)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["faiss-kmeans", "faiss-rq"] = Field(
        "faiss-kmeans",
        description="'faiss-kmeans': one faiss.Kmeans per level on the residuals of the levels "
        "before (greedy RQ-KMeans as in OneRec; any codebook_size). 'faiss-rq': "
        "faiss.ResidualQuantizer (beam-search encoding; codebook_size must be a power of 2).",
    )
    niter: int = Field(25, ge=1, description="k-means iterations per level.")
    nredo: int = Field(1, ge=1, description="k-means restarts per level (best kept).")
    beam_size: int = Field(
        5, ge=1, description="faiss-rq only: beam size of the encoder (faiss max_beam_size)."
    )
    balanced_iters: int = Field(
        10,
        ge=1,
        description="rq-kmeans-balanced: at most this many balanced assignment / centroid "
        "update rounds per level after the plain k-means initialisation (stops early when "
        "fewer than 0.1% of the items move).",
    )
    balance_slack: float = Field(
        1.0,
        ge=1.0,
        description="rq-kmeans-balanced: capacity of each code = ceil(slack * n / codebook_size).",
    )


class VAEConfig(BaseModel):
    """RQ-VAE / residual-LFQ / residual-FSQ trainer. Field names follow vector-quantize-pytorch.

    The defaults are the library's defaults (what a user who copies the README gets), with a
    TIGER-shaped MLP and plain Adam: this is the ``rq-vae-defaults`` preset.
    """

    model_config = ConfigDict(extra="forbid")

    # --- data and architecture
    normalize: Literal["none", "l2", "standardize"] = Field(
        "none",
        description="Input normalisation before the encoder: none, l2 (unit rows) or "
        "standardize (per-dimension mean 0 / std 1, undone by decode).",
    )
    hidden_sizes: list[int] = Field(
        [512, 256, 128],
        description="Hidden layer widths of the encoder MLP (the decoder mirrors them). "
        "[] gives a linear encoder/decoder.",
    )
    latent_dim: int = Field(32, ge=1, description="Width of the quantized latent.")
    activation: Literal["relu", "silu", "gelu"] = Field("relu", description="MLP activation.")
    # --- ResidualVQ (library names)
    codebook_dim: int | None = Field(
        None,
        ge=1,
        description="ResidualVQ codebook_dim: project the latent to this width before the "
        "codebooks (None = latent_dim).",
    )
    kmeans_init: bool = Field(
        False,
        description="ResidualVQ kmeans_init: initialise each codebook by k-means on the first "
        "batch it sees (library default False: random uniform init).",
    )
    kmeans_iters: int = Field(10, ge=1, description="ResidualVQ kmeans_iters for kmeans_init.")
    faiss_kmeans_init: bool = Field(
        False,
        description="semid option: before training, initialise every level's codebook with "
        "FAISS k-means (25 iterations, seeded) on the encoded full data's residuals. "
        "Overrides kmeans_init.",
    )
    threshold_ema_dead_code: float = Field(
        0.0,
        ge=0,
        description="ResidualVQ threshold_ema_dead_code: a code whose EMA cluster size falls "
        "below this is replaced by a random vector of the batch (0 = never; library default).",
    )
    decay: float = Field(
        0.8, gt=0, lt=1, description="ResidualVQ decay: EMA decay of the codebook updates."
    )
    commitment_weight: float = Field(
        1.0, ge=0, description="ResidualVQ commitment_weight (encoder-to-code commitment loss)."
    )
    rotation_trick: bool = Field(
        True,
        description="ResidualVQ rotation_trick: gradient through the quantizer by the rotation "
        "trick (library default True) instead of the straight-through estimator.",
    )
    use_cosine_sim: bool = Field(
        False, description="ResidualVQ use_cosine_sim: l2-normalised codes and inputs."
    )
    # --- ResidualLFQ / ResidualFSQ (library names)
    entropy_loss_weight: float = Field(
        0.1, ge=0, description="ResidualLFQ entropy_loss_weight (library default 0.1)."
    )
    diversity_gamma: float = Field(
        1.0, ge=0, description="ResidualLFQ diversity_gamma (weight of codebook entropy)."
    )
    commitment_loss_weight: float = Field(
        0.0, ge=0, description="ResidualLFQ commitment_loss_weight (library default 0)."
    )
    fsq_levels: list[int] | None = Field(
        None,
        description="ResidualFSQ levels (codes per latent dimension). None = derived from "
        "codebook_size: the FSQ paper's recommended levels for 2^8..2^16 (256 -> [8, 6, 5] = "
        "240 codes), else the levels in 3..8 whose product is the largest <= codebook_size.",
    )
    # --- optimisation
    optimizer: Literal["adam", "adamw", "adagrad"] = Field("adam", description="Optimizer.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay of the optimizer.")
    batch_size: int = Field(256, ge=2, description="Items per training step.")
    epochs: int = Field(20, ge=1, description="Passes over the items.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many steps (None = run every epoch)."
    )
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")
    num_threads: int | None = Field(
        1,
        ge=1,
        description="torch CPU threads while training (restored afterwards; None = keep "
        "torch's setting). The model is tiny, so a step is dominated by per-op overhead and "
        "extra threads mostly add contention.",
    )

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if any(w < 1 for w in value):
            raise ValueError("every hidden size must be >= 1")
        return value

    @field_validator("fsq_levels")
    @classmethod
    def _fsq_levels_valid(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(v < 2 for v in value)):
            raise ValueError("FSQ levels must be a non-empty list of integers >= 2")
        return value


class DictionaryConfig(BaseModel):
    """Per-level dictionary learning (``dictionary``)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        0.1, gt=0, description="MiniBatchDictionaryLearning alpha (sparsity of the fit codes)."
    )
    max_iter: int = Field(
        1, ge=1, description="MiniBatchDictionaryLearning max_iter (passes over the data)."
    )
    transform_max_iter: int = Field(
        50,
        ge=1,
        description="MiniBatchDictionaryLearning transform_max_iter: coordinate-descent "
        "iterations of each sparse-coding step (also used while fitting; sklearn default 1000 "
        "was measured 3.3x slower on 4,000 x 384 with 256 atoms).",
    )
    batch_size: int = Field(256, ge=1, description="MiniBatchDictionaryLearning batch_size.")
    max_samples: int | None = Field(
        5_000,
        ge=1,
        description="Fit each level's dictionary on at most this many items (seeded sample; "
        "all items are encoded). Dictionary learning is the slowest quantizer.",
    )


# Fields of VAEConfig that the ``rq-vae-tuned`` preset changes; everything else stays at the
# library defaults. Chosen by the ablation in ``benchmarks/quantizers.py --ablation``
# (benchmarks/results/quantizers-rq-vae-ablation.json), MiniLM content embeddings of
# ml-latest-small, 2 levels x 256, seed 0:
#   defaults (20 epochs, batch 256)           level-1 codes used 2/256, 336 distinct IDs, EV 0.119
#   + normalize=standardize                   252/256, 7,986 distinct IDs, EV 0.297
#   + batch 1024, 1,500 steps (this preset)   256/256, 8,349 distinct IDs, EV 0.369
# Unit-norm 384-d embeddings have a per-dimension std of ~0.05, so the reconstruction loss is
# ~1e-3 and the commitment loss (latent scale) dominates: the encoder collapses onto a few
# codes within the defaults' 780 steps (20 epochs of 9,742 items at batch 256). Standardizing
# the input is the fix; so is training longer (the same defaults for 2,280 or 4,880 steps: 256
# level-1 codes, 7,792 distinct IDs, EV 0.26 / 0.32; 4,880 is their step count on ML-25M).
# k-means init alone does not prevent the collapse (kmeans_init or faiss_kmeans_init: 1
# level-1 code used); dead-code replacement alone does
# (threshold_ema_dead_code=2: 256/256, 6,072 distinct IDs, EV 0.174) but less well, and
# neither improved a standardized run (faiss init + dead codes + the long schedule: 8,384
# distinct IDs, EV 0.370, NN-coherence 0.344 vs 0.359 without).
RQ_VAE_TUNED: dict[str, Any] = {
    "normalize": "standardize",
    "batch_size": 1024,
    "epochs": 1000,
    "max_steps": 1500,
}

# ``residual-lfq-tuned``: the same recipe plus a commitment loss (LFQ's own recipe; the library
# default is 0). Chosen by ``benchmarks/quantizers.py --ablation residual-lfq``
# (benchmarks/results/quantizers-residual-lfq.json),
# MiniLM content embeddings of ml-latest-small, 2 x 256, seed 0:
#   defaults                                  level-1 codes used 36/256, 175 distinct IDs, EV 0.094
#   + standardize                             19/256, 20 distinct IDs (latents outgrow the +-1
#                                             codes: every sign saturates)
#   + standardize + commitment 0.25           175/256, 3,588 distinct IDs, EV 0.232
#   + batch 1024, 1,500 steps (this preset)   254/256, 7,338 distinct IDs, EV 0.329
# The RQ-VAE recipe without the commitment loss collapses LFQ to 4 IDs. On unit-norm input the
# reconstruction loss (~1.5e-3) is negligible beside the entropy term (-0.2 to -0.7), but a 100x
# lower entropy weight alone reaches only 495 distinct IDs.
RESIDUAL_LFQ_TUNED: dict[str, Any] = {**RQ_VAE_TUNED, "commitment_loss_weight": 0.25}

VAE_PRESETS: dict[str, dict[str, Any]] = {
    "rq-vae-defaults": {},
    "rq-vae-tuned": RQ_VAE_TUNED,
    "residual-lfq-tuned": RESIDUAL_LFQ_TUNED,
}


class QuantizerConfig(BaseModel):
    """Which quantizer turns embeddings into codes, and the ID shape."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("rq-kmeans", description="Quantizer name (see `semid ids list`).")
    levels: int = Field(3, ge=1, le=8, description="Number of code levels.")
    codebook_size: int = Field(256, ge=2, description="Codes per level.")
    disambiguation: bool = Field(
        True, description="Append a token that makes colliding IDs unique (as in TIGER)."
    )
    kmeans: KMeansConfig = Field(
        default_factory=KMeansConfig, description="rq-kmeans / rq-kmeans-balanced settings."
    )
    vae: VAEConfig = Field(
        default_factory=VAEConfig,
        description="rq-vae / residual-lfq / residual-fsq settings (presets fill them).",
    )
    dictionary: DictionaryConfig = Field(
        default_factory=DictionaryConfig, description="dictionary settings."
    )
    seed: int | None = Field(
        None,
        description="Seed of the quantizer's training (None: the run seed). With `train.seed`"
        " it varies the training seeds while the splits (run seed) stay fixed.",
    )

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        from semid.quantizers.registry import QUANTIZERS

        return QUANTIZERS.validate(value)

    @model_validator(mode="after")
    def _resolve_preset(self) -> QuantizerConfig:
        preset = VAE_PRESETS.get(self.name)
        if preset:
            explicit = {k: getattr(self.vae, k) for k in self.vae.model_fields_set}
            self.vae = VAEConfig.model_validate({**preset, **explicit})
        return self
