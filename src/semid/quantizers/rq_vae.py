"""RQ-VAE and its scalar cousins: MLP encoder -> residual quantizer -> MLP decoder.

One trainer, three quantizers from vector-quantize-pytorch:

``kind="vq"`` (``rq-vae``)
    ``ResidualVQ``: EMA codebooks, loss = MSE reconstruction + commitment loss.
``kind="lfq"`` (``residual-lfq``)
    ``ResidualLFQ``: lookup-free, sign-of-latent codes; the latent is projected to
    ``log2(codebook_size)`` dimensions by the library, so ``codebook_size`` must be a power of 2.
    Loss = MSE + the library's entropy auxiliary loss.
``kind="fsq"`` (``residual-fsq``)
    ``ResidualFSQ``: each latent dimension is rounded to one of ``levels[i]`` values; a level's
    code is the mixed-radix number of the rounded dimensions, so a level has ``prod(levels)``
    codes (:func:`fsq_levels_for` picks the levels from ``codebook_size``). Loss = MSE.

Every knob that decides whether training works is an ``__init__`` argument named as in the
library (``kmeans_init``, ``threshold_ema_dead_code``, ``decay``, ``commitment_weight``,
``rotation_trick``, ``use_cosine_sim``, ``codebook_dim``...), plus ``faiss_kmeans_init``:
initialise each level's codebook from FAISS k-means on the encoded full data's residuals.

``training_log_`` gets one entry per epoch: mean loss terms and, per level, the perplexity,
codes used and dead codes (codes never chosen in the epoch) of the codes chosen in training.
Training is seeded (``torch.random.fork_rng`` + ``torch.manual_seed``, a seeded shuffling
generator) and the caller's torch RNG state is left untouched.
"""

from __future__ import annotations

import math
from itertools import combinations_with_replacement
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from semid.device import resolve_device
from semid.errors import ConfigError
from semid.quantizers.base import (
    DEFAULTS,
    BaseQuantizer,
    check_codes,
    check_fit_shape,
    check_fitted,
    check_input_dim,
    require_power_of_two,
)
from semid.quantizers.rq_kmeans import fit_kmeans, nearest

# Recommended FSQ levels from Mentzer et al. 2023 ("Finite Scalar Quantization"), Table 1.
FSQ_PAPER_LEVELS = {
    2**8: [8, 6, 5],
    2**10: [8, 5, 5, 5],
    2**12: [7, 5, 5, 5, 5],
    2**14: [8, 8, 8, 6, 5],
    2**16: [8, 8, 8, 5, 5, 5],
}

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


def fsq_levels_for(codebook_size: int) -> list[int]:
    """FSQ levels for a target codebook size (product <= ``codebook_size``).

    The FSQ paper's recommendation for 2^8..2^16; otherwise the non-increasing levels in 2..8
    (at most 8 dimensions) with the largest product <= codebook_size, ties broken by the
    largest smallest level, then by fewer dimensions.
    """
    if codebook_size in FSQ_PAPER_LEVELS:
        return list(FSQ_PAPER_LEVELS[codebook_size])
    best: tuple = (0, 0, 0)
    best_levels = [2]
    for dims in range(1, 9):
        for combo in combinations_with_replacement(range(8, 1, -1), dims):
            product = math.prod(combo)
            if product > codebook_size:
                continue
            key = (product, min(combo), -dims)
            if key > best:
                best, best_levels = key, list(combo)
    return best_levels


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ResidualAutoencoder(nn.Module):
    """Encoder MLP, a vector-quantize-pytorch residual quantizer, decoder MLP."""

    # The library's quantizers are typed as plain modules; their methods are looked up at run time.
    quantizer: Any

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module, kind: str):
        super().__init__()
        self.encoder, self.quantizer, self.decoder, self.kind = encoder, quantizer, decoder, kind

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, codes (b, levels) and the quantizer's own loss (scalar)."""
        z = self.encoder(x)[:, None, :]
        if self.kind == "fsq":
            quantized, indices = self.quantizer(z)
            aux = torch.zeros((), device=x.device)
        else:
            quantized, indices, aux = self.quantizer(z)
            aux = aux.sum()
        return self.decoder(quantized[:, 0, :]), indices[:, 0, :], aux

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (b, levels) in eval mode."""
        return self.forward(x)[1]

    @torch.no_grad()
    def reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder output for codes (b, levels)."""
        latent = self.quantizer.get_output_from_indices(codes[:, None, :])
        return self.decoder(latent[:, 0, :])


class RQVAE(BaseQuantizer):
    """Residual-quantized autoencoder (RQ-VAE, residual LFQ or residual FSQ).

    Every default is :class:`~semid.quantizers.config.VAEConfig`'s (the ``rq-vae-defaults``
    preset), written there once.

    Parameters
    ----------
    n_levels : int
        Number of residual quantizers (code levels).
    codebook_size : int
        Codes per level (LFQ: power of 2; FSQ: target, see :func:`fsq_levels_for`).
    kind : {"vq", "lfq", "fsq"}
        ``ResidualVQ``, ``ResidualLFQ`` or ``ResidualFSQ``.
    normalize : {"none", "l2", "standardize"}
        Input normalisation (standardize is undone by :meth:`decode`).
    hidden_sizes : list of int
        Encoder hidden widths; the decoder mirrors them.
    latent_dim : int
        Width of the quantized latent.
    activation : {"relu", "silu", "gelu"}
        MLP activation.
    codebook_dim, kmeans_init, kmeans_iters, threshold_ema_dead_code, decay, \
commitment_weight, rotation_trick, use_cosine_sim
        ``ResidualVQ`` arguments (library names and meaning).
    faiss_kmeans_init : bool
        Initialise every VQ level from FAISS k-means on the encoded full data's residuals.
    entropy_loss_weight, diversity_gamma, commitment_loss_weight
        ``ResidualLFQ`` arguments.
    fsq_levels : list of int or None
        ``ResidualFSQ`` levels (None = :func:`fsq_levels_for`).
    optimizer : {"adam", "adamw", "adagrad"}
    lr, weight_decay : float
    batch_size, epochs : int
    max_steps : int or None
        Stop after this many optimizer steps.
    device : str
        "auto", "cpu" or "cuda".
    num_threads : int or None
        torch CPU threads while fitting (restored afterwards); None keeps torch's setting.
    random_state : int
        Seed of the weights, the codebooks and the shuffling.
    progress : bool
        Show a tqdm bar.

    Attributes
    ----------
    model_ : ResidualAutoencoder
        The trained network (on CPU after fit).
    level_sizes_ : list of int
        Codes each level can emit (FSQ: ``prod(fsq_levels)``).
    training_log_ : list of dict
        One entry per epoch (see the module docstring).
    """

    def __init__(
        self,
        *,
        n_levels: int = DEFAULTS.levels,
        codebook_size: int = DEFAULTS.codebook_size,
        kind: str = "vq",
        normalize: str = DEFAULTS.vae.normalize,
        hidden_sizes: list[int] | tuple[int, ...] = tuple(DEFAULTS.vae.hidden_sizes),
        latent_dim: int = DEFAULTS.vae.latent_dim,
        activation: str = DEFAULTS.vae.activation,
        codebook_dim: int | None = DEFAULTS.vae.codebook_dim,
        kmeans_init: bool = DEFAULTS.vae.kmeans_init,
        kmeans_iters: int = DEFAULTS.vae.kmeans_iters,
        faiss_kmeans_init: bool = DEFAULTS.vae.faiss_kmeans_init,
        threshold_ema_dead_code: float = DEFAULTS.vae.threshold_ema_dead_code,
        decay: float = DEFAULTS.vae.decay,
        commitment_weight: float = DEFAULTS.vae.commitment_weight,
        rotation_trick: bool = DEFAULTS.vae.rotation_trick,
        use_cosine_sim: bool = DEFAULTS.vae.use_cosine_sim,
        entropy_loss_weight: float = DEFAULTS.vae.entropy_loss_weight,
        diversity_gamma: float = DEFAULTS.vae.diversity_gamma,
        commitment_loss_weight: float = DEFAULTS.vae.commitment_loss_weight,
        fsq_levels: list[int] | None = DEFAULTS.vae.fsq_levels,
        optimizer: str = DEFAULTS.vae.optimizer,
        lr: float = DEFAULTS.vae.lr,
        weight_decay: float = DEFAULTS.vae.weight_decay,
        batch_size: int = DEFAULTS.vae.batch_size,
        epochs: int = DEFAULTS.vae.epochs,
        max_steps: int | None = DEFAULTS.vae.max_steps,
        device: str = DEFAULTS.vae.device,
        num_threads: int | None = DEFAULTS.vae.num_threads,
        random_state: int = 0,
        progress: bool = True,
    ) -> None:
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.kind = kind
        self.normalize = normalize
        self.hidden_sizes = hidden_sizes
        self.latent_dim = latent_dim
        self.activation = activation
        self.codebook_dim = codebook_dim
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.faiss_kmeans_init = faiss_kmeans_init
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.decay = decay
        self.commitment_weight = commitment_weight
        self.rotation_trick = rotation_trick
        self.use_cosine_sim = use_cosine_sim
        self.entropy_loss_weight = entropy_loss_weight
        self.diversity_gamma = diversity_gamma
        self.commitment_loss_weight = commitment_loss_weight
        self.fsq_levels = fsq_levels
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.max_steps = max_steps
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state
        self.progress = progress

    # -- construction
    def _check_params(self) -> None:
        if self.kind not in ("vq", "lfq", "fsq"):
            raise ConfigError(f"RQVAE kind={self.kind!r}: expected 'vq', 'lfq' or 'fsq'")
        if self.normalize not in ("none", "l2", "standardize"):
            raise ConfigError(
                f"quantizer.vae.normalize={self.normalize!r}: expected none, l2 or standardize"
            )
        if self.optimizer not in ("adam", "adamw", "adagrad"):
            raise ConfigError(
                f"quantizer.vae.optimizer={self.optimizer!r}: expected adam, adamw or adagrad"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"quantizer.vae.activation={self.activation!r}: unknown")
        if self.kind == "lfq":
            require_power_of_two(self.codebook_size, "residual-lfq")

    def _build(self, dim: int) -> ResidualAutoencoder:
        from vector_quantize_pytorch import ResidualFSQ, ResidualLFQ, ResidualVQ

        sizes = [dim, *self.hidden_sizes, self.latent_dim]
        encoder = mlp(sizes, self.activation)
        decoder = mlp(sizes[::-1], self.activation)
        if self.kind == "vq":
            quantizer = ResidualVQ(
                dim=self.latent_dim,
                num_quantizers=self.n_levels,
                codebook_size=self.codebook_size,
                codebook_dim=self.codebook_dim,
                kmeans_init=self.kmeans_init and not self.faiss_kmeans_init,
                kmeans_iters=self.kmeans_iters,
                threshold_ema_dead_code=self.threshold_ema_dead_code,
                decay=self.decay,
                commitment_weight=self.commitment_weight,
                rotation_trick=self.rotation_trick,
                use_cosine_sim=self.use_cosine_sim,
            )
        elif self.kind == "lfq":
            quantizer = ResidualLFQ(
                dim=self.latent_dim,
                num_quantizers=self.n_levels,
                codebook_size=self.codebook_size,
                entropy_loss_weight=self.entropy_loss_weight,
                diversity_gamma=self.diversity_gamma,
                commitment_loss_weight=self.commitment_loss_weight,
            )
        else:
            quantizer = ResidualFSQ(
                dim=self.latent_dim, levels=list(self.level_shape_), num_quantizers=self.n_levels
            )
        return ResidualAutoencoder(encoder, quantizer, decoder, self.kind)

    # -- normalisation
    def _normalize(self, X: np.ndarray) -> np.ndarray:
        if self.normalize == "l2":
            return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if self.normalize == "standardize":
            return (X - self.mean_) / self.scale_
        return X

    # -- fitting
    def fit(self, X: np.ndarray, y: object = None) -> RQVAE:
        """Train the autoencoder and its codebooks on ``X`` (n, d)."""
        self._check_params()
        X = check_fit_shape(X, self.codebook_size, self.n_levels)
        self.dim_ = X.shape[1]
        if self.kind == "fsq":
            self.level_shape_ = list(self.fsq_levels or fsq_levels_for(self.codebook_size))
            size = math.prod(self.level_shape_)
            if size > self.codebook_size:
                raise ConfigError(
                    f"quantizer.vae.fsq_levels={self.level_shape_}: {size} codes per level "
                    f"exceed codebook_size={self.codebook_size}"
                )
            self.level_sizes_ = [size] * self.n_levels
        else:
            self.level_sizes_ = [self.codebook_size] * self.n_levels
        self.mean_ = X.mean(axis=0).astype(np.float32)
        self.scale_ = np.maximum(X.std(axis=0), 1e-6).astype(np.float32)
        data = torch.from_numpy(self._normalize(X).astype(np.float32))
        device = resolve_device(self.device, "quantizer.vae.device")
        devices = [device.index or 0] if device.type == "cuda" else []
        threads = torch.get_num_threads()
        try:
            if self.num_threads:
                torch.set_num_threads(self.num_threads)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.random_state)
                model = self._build(self.dim_).to(device)
                if self.faiss_kmeans_init and self.kind == "vq":
                    self._init_codebooks(model, data, device)
                self.training_log_ = self._train(model, data, device)
        finally:
            torch.set_num_threads(threads)
        self.model_ = model.cpu().eval()
        return self

    def _make_optimizer(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    @torch.no_grad()
    def _init_codebooks(
        self, model: ResidualAutoencoder, data: torch.Tensor, device: torch.device
    ) -> None:
        """Set each VQ level's codebook to FAISS k-means centroids of the full data residuals."""
        model.eval()
        latent = torch.cat([model.encoder(chunk.to(device)).cpu() for chunk in data.split(4096)])
        residual = model.quantizer.project_in(latent.to(device)).cpu().numpy().astype(np.float32)
        for level, layer in enumerate(model.quantizer.layers):
            points = residual
            if self.use_cosine_sim:
                points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
            centroids = fit_kmeans(points, self.codebook_size, seed=self.random_state + level)
            if self.use_cosine_sim:
                centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
            assigned = nearest(points, centroids)
            counts = np.bincount(assigned, minlength=self.codebook_size).astype(np.float32)
            codebook = layer._codebook
            embed = torch.from_numpy(centroids).to(device)[None]
            codebook.embed.data.copy_(embed)
            codebook.embed_avg.data.copy_(
                embed * torch.from_numpy(counts).to(device)[None, :, None]
            )
            codebook.cluster_size.data.copy_(torch.from_numpy(counts).to(device)[None])
            codebook.initted.data.copy_(torch.tensor(True))
            residual = residual - centroids[assigned]
        model.train()

    def _train(
        self, model: ResidualAutoencoder, data: torch.Tensor, device: torch.device
    ) -> list[dict]:
        optimizer = self._make_optimizer(model.parameters())
        generator = torch.Generator().manual_seed(self.random_state)
        n = data.shape[0]
        steps_per_epoch = math.ceil(n / self.batch_size)
        total = self.epochs * steps_per_epoch
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        log: list[dict] = []
        step = 0
        model.train()
        bar = tqdm(
            total=total, desc=f"residual-{self.kind}", disable=not self.progress, leave=False
        )
        for epoch in range(self.epochs):
            if step >= total:
                break
            order = torch.randperm(n, generator=generator)
            sums: dict[str, float] = {"loss": 0.0, "recon_loss": 0.0, "quantizer_loss": 0.0}
            counts = np.zeros((self.n_levels, self.level_sizes_[0]), dtype=np.int64)
            batches = 0
            for start in range(0, n, self.batch_size):
                if step >= total:
                    break
                idx = order[start : start + self.batch_size]
                if idx.numel() < 2:
                    continue
                x = data[idx].to(device)
                recon, codes, aux = model(x)
                recon_loss = torch.mean((recon - x) ** 2)
                loss = recon_loss + aux
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                batches += 1
                sums["loss"] += loss.item()
                sums["recon_loss"] += recon_loss.item()
                sums["quantizer_loss"] += aux.item()
                flat = codes.detach().cpu().numpy()
                for level in range(self.n_levels):
                    counts[level] += np.bincount(flat[:, level], minlength=counts.shape[1])
                bar.update(1)
            if batches == 0:
                break
            entry: dict[str, Any] = {"epoch": epoch + 1, "step": step}
            entry.update({k: round(v / batches, 6) for k, v in sums.items()})
            entry["perplexity"] = [round(_perplexity(c), 3) for c in counts]
            entry["codes_used"] = [int((c > 0).sum()) for c in counts]
            entry["dead_codes"] = [int((c == 0).sum()) for c in counts]
            log.append(entry)
            bar.set_postfix(loss=entry["loss"], ppl=entry["perplexity"][0])
        bar.close()
        return log

    # -- inference
    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes (n, n_levels) int64 of ``X`` (eval mode; no codebook update)."""
        check_fitted(self, "model_")
        X = check_input_dim(X, self.dim_)
        data = torch.from_numpy(self._normalize(X).astype(np.float32))
        self.model_.eval()
        codes = [self.model_.codes(chunk) for chunk in data.split(4096)]
        return torch.cat(codes).numpy().astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Decoder output for ``codes``, mapped back to the input space (undoes standardize)."""
        check_fitted(self, "model_")
        codes = check_codes(codes, self.n_levels, self.level_sizes_[0])
        self.model_.eval()
        tensor = torch.from_numpy(codes)
        out = torch.cat([self.model_.reconstruct(chunk) for chunk in tensor.split(4096)]).numpy()
        if self.normalize == "standardize":
            out = out * self.scale_ + self.mean_
        return out.astype(np.float32)


def _perplexity(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return 0.0
    share = counts[counts > 0] / total
    return float(np.exp(-(share * np.log(share)).sum()))
