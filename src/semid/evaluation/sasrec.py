"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence.

The recommendation baseline, trained on the same ``train`` sequences as everything else.
Each position predicts the next item from the items before it. Loss (``loss=``):

- ``"ce"`` (default): full softmax cross-entropy over every item, which trains SASRec much
  better than the original sampled loss (Klenitskiy & Vasilev, RecSys 2023) and is cheap at
  MovieLens catalogue sizes;
- ``"bce"``: the original binary cross-entropy with one uniformly sampled negative item per
  position.

Item embeddings are shared between input and output (scores = hidden state · item embedding).
By default each user contributes the most recent ``max_len + 1`` items, as in the original;
``windows_per_user`` > 1 (or None) also cuts older history into windows of ``max_len + 1``.

Defaults (40 epochs, lr 2e-3, last window per user) take 200 steps on ml-latest-small.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from semid.errors import DataError
from semid.evaluation.seen import topk_unseen


class _SASRecNet(nn.Module):
    def __init__(
        self, n_items: int, max_len: int, dim: int, n_layers: int, n_heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)  # 0 = padding
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim, n_heads, dim_feedforward=dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.n_heads = n_heads
        nn.init.normal_(self.items.weight, std=dim**-0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden state of every position of left-padded ``seq`` (B, L) -> (B, L, dim)."""
        batch, length = seq.shape
        pos = torch.arange(length, device=seq.device)
        x = self.items(seq) * math.sqrt(self.items.embedding_dim) + self.positions(pos)
        real = seq > 0
        x = self.dropout(x) * real.unsqueeze(-1)
        # Causal mask that also hides padding keys; every query still sees itself (no NaN).
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)
        blocked = causal.unsqueeze(0) | ~real.unsqueeze(1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=seq.device)
        mask = torch.zeros(blocked.shape, device=seq.device).masked_fill(blocked, float("-inf"))
        mask = mask.repeat_interleave(self.n_heads, dim=0)
        return self.norm(self.blocks(x, mask=mask))

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every real item (column i = item index i)."""
        return hidden @ self.items.weight[1:].T


def _left_pad(rows: Sequence[Sequence[int]], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), dtype=np.int64)
    for r, row in enumerate(rows):
        row = list(row)[-length:]
        if row:
            out[r, length - len(row) :] = np.asarray(row, dtype=np.int64) + 1
    return out


def training_windows(
    sequences: Sequence[Sequence[int]], max_len: int, max_per_sequence: int | None = None
) -> list[list[int]]:
    """Cut each sequence from its end into windows of ``max_len + 1`` items (overlap 1).

    ``max_per_sequence`` keeps only the most recent windows of each sequence (1 = the
    original SASRec, which reads the last ``max_len`` items of each user).
    """
    windows = []
    for seq in sequences:
        seq = list(seq)
        end = len(seq)
        taken = 0
        while end >= 2 and (max_per_sequence is None or taken < max_per_sequence):
            taken += 1
            start = max(0, end - max_len - 1)
            windows.append(seq[start:end])
            end = start + 1 if start > 0 else 0
    return windows


class SASRec:
    """Self-attentive sequential recommender.

    Parameters
    ----------
    max_len : int
        Most recent items the model reads.
    dim : int
        Hidden size (item and position embeddings).
    n_layers : int
        Self-attention blocks.
    n_heads : int
        Attention heads.
    dropout : float
        Dropout on embeddings, attention and feed-forward layers.
    epochs : int
        Passes over the training windows.
    windows_per_user : int or None
        Most recent windows of ``max_len + 1`` items used per training sequence (None: all,
        i.e. the whole history, cut into windows).
    max_steps : int or None
        Stop after this many steps.
    batch_size : int
        Windows per step.
    lr : float
        Adam learning rate.
    loss : {"ce", "bce"}
        Full softmax cross-entropy, or BCE with one sampled negative per position.
    device : str
        ``cpu`` or ``cuda``.
    random_state : int
        Seeds initialisation, dropout, batch order and negative sampling.
    progress : bool
        Show a progress bar.

    Attributes
    ----------
    model_ : torch.nn.Module
    n_items_ : int
    loss_curve_ : list of float
        Mean training loss per epoch.
    seconds_ : float
    """

    def __init__(
        self,
        max_len: int = 50,
        dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 1,
        dropout: float = 0.2,
        epochs: int = 40,
        windows_per_user: int | None = 1,
        max_steps: int | None = None,
        batch_size: int = 128,
        lr: float = 2e-3,
        loss: str = "ce",
        device: str = "cpu",
        random_state: int = 0,
        progress: bool = True,
    ) -> None:
        self.max_len = max_len
        self.dim = dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.epochs = epochs
        self.windows_per_user = windows_per_user
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.loss = loss
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, train_sequences: Sequence[Sequence[int]], n_items: int) -> SASRec:
        """Train on chronological item sequences (item indices 0..n_items-1)."""
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss={self.loss!r}: expected 'ce' or 'bce'")
        flat = [i for s in train_sequences for i in s]
        if flat and (min(flat) < 0 or max(flat) >= n_items):
            raise DataError(f"train sequences: item index outside 0..{n_items - 1}")
        windows = training_windows(train_sequences, self.max_len, self.windows_per_user)
        if not windows:
            raise DataError("SASRec: no training sequence has two or more items")
        start = time.perf_counter()
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        device = torch.device(self.device)
        padded = _left_pad(windows, self.max_len + 1)
        inputs = torch.from_numpy(padded[:, :-1])
        targets = torch.from_numpy(padded[:, 1:])  # 0 = nothing to predict
        model = _SASRecNet(
            n_items, self.max_len, self.dim, self.n_layers, self.n_heads, self.dropout
        ).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, betas=(0.9, 0.98))
        steps_per_epoch = math.ceil(len(windows) / self.batch_size)
        total = self.epochs * steps_per_epoch
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        self.loss_curve_ = []
        model.train()
        step = 0
        bar = tqdm(total=total, desc="SASRec", disable=not self.progress)
        while step < total:
            order = rng.permutation(len(windows))
            epoch_loss, batches = 0.0, 0
            for begin in range(0, len(order), self.batch_size):
                if step >= total:
                    break
                idx = torch.from_numpy(order[begin : begin + self.batch_size])
                seq, tgt = inputs[idx].to(device), targets[idx].to(device)
                hidden = model(seq)
                keep = tgt > 0
                value = self._loss(model, hidden[keep], tgt[keep] - 1, n_items, rng, device)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                epoch_loss += float(value.detach())
                batches += 1
                step += 1
                bar.update(1)
            self.loss_curve_.append(round(epoch_loss / max(batches, 1), 5))
            bar.set_postfix(loss=self.loss_curve_[-1])
        bar.close()
        model.eval()
        self.model_ = model
        self.n_items_ = n_items
        self.steps_ = step
        self.seconds_ = time.perf_counter() - start
        return self

    def _loss(self, model, hidden, target, n_items, rng, device) -> torch.Tensor:
        if self.loss == "ce":
            return nn.functional.cross_entropy(model.item_scores(hidden), target)
        negatives = torch.from_numpy(rng.integers(0, n_items - 1, size=len(target))).to(device)
        negatives = negatives + (negatives >= target).long()  # uniform over items != target
        item_vectors = model.items.weight[1:]
        pos = (hidden * item_vectors[target]).sum(-1)
        neg = (hidden * item_vectors[negatives]).sum(-1)
        bce = nn.functional.binary_cross_entropy_with_logits
        return bce(pos, torch.ones_like(pos)) + bce(neg, torch.zeros_like(neg))

    @torch.no_grad()
    def scores(self, histories: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
        """Score of every item as each history's next item: float32 (n, n_items)."""
        device = next(self.model_.parameters()).device
        out = np.zeros((len(histories), self.n_items_), dtype=np.float32)
        for begin in range(0, len(histories), batch_size):
            seq = torch.from_numpy(_left_pad(histories[begin : begin + batch_size], self.max_len))
            hidden = self.model_(seq.to(device))[:, -1]
            out[begin : begin + len(seq)] = self.model_.item_scores(hidden).cpu().numpy()
        return out

    def recommend(
        self,
        histories: Sequence[Sequence[int]],
        k: int,
        exclude_seen: bool = False,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Top-``k`` next items per history (oldest item first): int64 (n, k).

        ``exclude_seen`` skips each history's own items (:func:`semid.evaluation.seen.topk_unseen`),
        so a row still holds ``k`` items whenever the catalogue has ``k`` unseen ones.
        """
        out = np.full((len(histories), k), -1, dtype=np.int64)
        for begin in range(0, len(histories), batch_size):
            chunk = histories[begin : begin + batch_size]
            out[begin : begin + len(chunk)] = topk_unseen(
                self.scores(chunk, batch_size), chunk, k, exclude_seen
            )
        return out
