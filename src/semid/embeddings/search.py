"""Search space: the sentence encoder fine-tuned on (training query, item text) pairs.

Training uses in-batch negatives (sentence-transformers' ``MultipleNegativesRankingLoss``):
for each query of a batch, the other items of the batch are its negatives. Batches never hold
the same item (or the same query text) twice, so no negative is a false one. The same tuner
trains the multitask encoder on several pair sets at once (one loss each, summed per step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from semid.data.dataset import Splits
from semid.device import resolve_device
from semid.embeddings.encoders import (
    encode_texts,
    load_sentence_encoder,
    resolve_encoder,
)
from semid.errors import DataError
from semid.io import atomic_dir


@dataclass
class PairSet:
    """Positive (anchor, positive) text pairs for one in-batch contrastive loss.

    ``keys[i]`` names what pair ``i`` is about (item indices, query text); two pairs that share
    any key never share a batch, so an in-batch negative is never also a positive.
    """

    name: str
    anchors: list[str]
    positives: list[str]
    keys: list[tuple[Hashable, ...]]
    symmetric: bool = False
    weight: float = 1.0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.anchors) == len(self.positives) == len(self.keys)):
            raise ValueError(f"pair set {self.name}: anchors, positives and keys differ in length")

    def __len__(self) -> int:
        return len(self.anchors)


def search_pairs(splits: Splits, item_texts: Sequence[str]) -> PairSet:
    """(query, item text) pairs of the TRAINING queries only (``split == "train"``)."""
    queries = splits.queries
    missing = {"query", "item_idx", "split"} - set(queries.columns)
    if missing:
        raise DataError(f"queries: missing column(s) {sorted(missing)}")
    train = queries.filter(pl.col("split") == "train")
    if train.height == 0:
        raise DataError("queries: no training queries (split == 'train') to fine-tune on")
    items = train["item_idx"].to_numpy()
    if items.min() < 0 or items.max() >= len(item_texts):
        raise DataError(f"queries: item_idx outside 0..{len(item_texts) - 1}")
    texts = train["query"].to_list()
    return PairSet(
        name="search",
        anchors=texts,
        positives=[item_texts[i] for i in items],
        keys=[(int(i), f"q:{q}") for i, q in zip(items, texts, strict=True)],
        info={"pairs": len(texts), "items": int(np.unique(items).size)},
    )


def no_duplicate_batches(
    keys: Sequence[tuple[Hashable, ...]], batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """A shuffled partition of ``range(len(keys))`` into batches whose pairs share no key.

    Greedy, in a random order: each batch takes the next pairs that clash with none already in
    it; skipped pairs wait for a later batch. Every pair appears exactly once.
    """
    remaining = dict.fromkeys(rng.permutation(len(keys)).tolist())
    batches = []
    while remaining:
        batch: list[int] = []
        seen: set = set()
        for index in remaining:
            if seen.isdisjoint(keys[index]):
                batch.append(index)
                seen.update(keys[index])
                if len(batch) == batch_size:
                    break
        for index in batch:
            del remaining[index]
        batches.append(np.asarray(batch, dtype=np.int64))
    return batches


def _losses_module():
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses
    return losses


def in_batch_loss(model, scale: float, symmetric: bool) -> torch.nn.Module:
    """``MultipleNegativesRankingLoss`` (query -> item; both directions when ``symmetric``)."""
    losses = _losses_module()
    if not symmetric:
        return losses.MultipleNegativesRankingLoss(model, scale=scale)
    try:
        return losses.MultipleNegativesRankingLoss(
            model,
            scale=scale,
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
        )
    except TypeError:  # older sentence-transformers
        return losses.MultipleNegativesSymmetricRankingLoss(model, scale=scale)


class ContrastiveTuner:
    """Fine-tune a sentence encoder on pair sets with in-batch negatives.

    Each step draws one batch from every pair set and minimises the weighted sum of their
    losses. An epoch is one pass over the largest pair set (smaller ones are reshuffled and
    repeated).

    Parameters
    ----------
    encoder : str
        ``minilm``, ``mpnet`` or a local sentence-transformers folder.
    epochs : float
        Passes over the largest pair set.
    max_steps : int or None
        Stop after this many steps.
    batch_size : int
        Pairs per batch (per pair set).
    lr : float
        AdamW learning rate (linear warm-up, then linear decay).
    warmup_ratio : float
        Share of the steps used for warm-up.
    max_seq_length : int
        Tokens kept of each text while training.
    scale : float
        Inverse temperature of the in-batch softmax.
    weight_decay : float
        AdamW weight decay.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    random_state : int
        Seeds the batch order, dropout and everything else.
    progress : bool
        Show a progress bar.

    Attributes
    ----------
    model_ : SentenceTransformer
        The fine-tuned encoder.
    encoder_path_ : str
        Where the starting encoder was loaded from.
    loss_curve_ : list of dict
        Per step: ``step`` and the loss of each pair set.
    steps_ : int
        Optimiser steps taken.
    epochs_ : float
        Passes over the largest pair set actually made.
    seconds_ : float
        Training time.
    """

    def __init__(
        self,
        encoder: str = "minilm",
        epochs: float = 1.0,
        max_steps: int | None = None,
        batch_size: int = 64,
        lr: float = 5e-5,
        warmup_ratio: float = 0.1,
        max_seq_length: int = 64,
        scale: float = 20.0,
        weight_decay: float = 0.01,
        device: str = "auto",
        random_state: int = 0,
        progress: bool = True,
    ) -> None:
        self.encoder = encoder
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.warmup_ratio = warmup_ratio
        self.max_seq_length = max_seq_length
        self.scale = scale
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, pair_sets: Sequence[PairSet]) -> ContrastiveTuner:
        """Fine-tune the encoder on ``pair_sets``; returns self."""
        from transformers import get_linear_schedule_with_warmup

        pair_sets = [p for p in pair_sets if len(p) > 0]
        if not pair_sets:
            raise DataError("contrastive tuning: no training pairs")
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size}: in-batch negatives need at least 2")
        start = time.perf_counter()
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        device = resolve_device(self.device, "embedding.device")
        self.encoder_path_ = resolve_encoder(self.encoder)
        model = load_sentence_encoder(self.encoder_path_, str(device))
        inference_length = model.max_seq_length
        model.max_seq_length = self.max_seq_length
        losses = [in_batch_loss(model, self.scale, p.symmetric) for p in pair_sets]

        steps_per_epoch = max(math.ceil(len(p) / self.batch_size) for p in pair_sets)
        total = max(1, math.ceil(self.epochs * steps_per_epoch))
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.lr, weight_decay=self.weight_decay, foreach=True
        )
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(self.warmup_ratio * total), total
        )
        preprocess = getattr(model, "preprocess", None) or model.tokenize
        queues: list[list[np.ndarray]] = [[] for _ in pair_sets]

        def next_batch(k: int) -> np.ndarray:
            if not queues[k]:
                queues[k] = no_duplicate_batches(pair_sets[k].keys, self.batch_size, rng)[::-1]
            return queues[k].pop()

        def features(texts: list[str]) -> dict:
            return {
                name: value.to(device) if isinstance(value, torch.Tensor) else value
                for name, value in preprocess(texts).items()
            }

        model.train()
        self.loss_curve_ = []
        bar = tqdm(range(total), desc="fine-tuning encoder", disable=not self.progress)
        for step in bar:
            record: dict[str, float] = {"step": step + 1}
            objective: Any = 0.0
            for k, (pairs, loss_fn) in enumerate(zip(pair_sets, losses, strict=True)):
                idx = next_batch(k)
                anchors = [pairs.anchors[i] for i in idx]
                positives = [pairs.positives[i] for i in idx]
                value = loss_fn([features(anchors), features(positives)], None)
                objective = objective + pairs.weight * value
                record[pairs.name] = round(float(value.detach()), 5)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            self.loss_curve_.append(record)
            bar.set_postfix({k: v for k, v in record.items() if k != "step"})
        model.eval()
        model.max_seq_length = inference_length  # train on short texts, embed whole ones
        self.model_ = model
        self.steps_ = total
        self.epochs_ = round(total / steps_per_epoch, 4)
        self.seconds_ = time.perf_counter() - start
        return self

    def transform(
        self, texts: Sequence[str], batch_size: int = 128, normalize: bool = True
    ) -> np.ndarray:
        """Embed ``texts`` with the fine-tuned encoder: float32 (n, dim)."""
        return encode_texts(self.model_, list(texts), batch_size, normalize, self.progress)

    def save(self, folder: str | Path) -> Path:
        """Save the fine-tuned encoder as a sentence-transformers folder (atomically)."""
        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            self.model_.save(str(tmp))
        return folder
