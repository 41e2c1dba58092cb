"""Training loop of the generator: one model, both tasks, length-bucketed batches, AdamW."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup

from semid.generative.config import TrainConfig
from semid.generative.examples import Examples
from semid.generative.model import autocast_dtype


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, chunk_batches: int = 64
) -> list[np.ndarray]:
    """Shuffle, sort by length inside chunks of ``chunk_batches`` batches, shuffle the batches.

    Examples of similar length share a batch (little padding) while the order stays random.
    """
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Examples, idx: np.ndarray, pad_id: int, device: torch.device):
    """Trim a batch to its longest input and move it to ``device``.

    Returns ``(input_ids, mask, labels, extra)``; ``extra`` holds the keyword arguments of
    ``model.embed_inputs`` (text-t5): the sentence vectors of the batch rows that are texts
    and the ID tokens of the batch rows that are pooled histories; None for token models.
    """
    width = int(examples.lengths[idx].max())
    input_ids = torch.from_numpy(examples.inputs[idx, :width].astype(np.int64))
    mask = input_ids != pad_id
    labels = torch.from_numpy(examples.targets[idx])
    extra = None
    if examples.text_index is not None or examples.item_index is not None:
        extra = {}
    if examples.text_index is not None:
        rows = np.flatnonzero(examples.text_index[idx] >= 0)
        vectors = torch.from_numpy(examples.text_vectors[examples.text_index[idx[rows]]])
        extra["text_vectors"] = vectors.to(device)
        extra["text_rows"] = torch.from_numpy(rows).to(device)
    if examples.item_index is not None:
        rows = np.flatnonzero(examples.item_index[idx] >= 0)
        tokens = torch.from_numpy(examples.item_tokens[examples.item_index[idx[rows]]])
        extra["item_tokens"] = tokens.to(device)
        extra["item_rows"] = torch.from_numpy(rows).to(device)
    return input_ids.to(device), mask.to(device), labels.to(device), extra


def noisy(vectors: torch.Tensor, std: float, rng: torch.Generator) -> torch.Tensor:
    """Unit vectors plus isotropic Gaussian noise of ``std`` per entry, renormalised."""
    noise = torch.randn(vectors.shape, generator=rng, device=vectors.device) * std
    return torch.nn.functional.normalize(vectors + noise, dim=-1)


def level_masks(vocab_size: int, spaces: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """Boolean (n_tasks, n_cols, vocab) masks: the tokens of column ``c`` of each task's space.

    ``spaces[t]`` is ``(offsets, cardinalities)`` of the ID space task ``t`` decodes into.
    """
    n_cols = len(spaces[0][0])
    mask = torch.zeros(len(spaces), n_cols, vocab_size, dtype=torch.bool)
    for task, (offsets, cards) in enumerate(spaces):
        for col, (offset, card) in enumerate(zip(offsets, cards, strict=True)):
            mask[task, col, offset : offset + card] = True
    return mask


def seq2seq_loss(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    extra: dict | None,
    task: torch.Tensor,
    masks: torch.Tensor | None,
) -> torch.Tensor:
    """Cross-entropy of the target ID tokens; with ``masks``, each position's softmax runs
    over its own level's codes only (``masks[task, position]``)."""
    kwargs = {"attention_mask": mask}
    if extra is not None:
        kwargs["inputs_embeds"] = model.embed_inputs(input_ids, **extra)
    else:
        kwargs["input_ids"] = input_ids
    prior = None
    if extra and "text_vectors" in extra and getattr(model, "text_skip", None) is not None:
        prior = model.logit_prior(extra["text_vectors"])
    if masks is None and prior is None:
        return model(**kwargs, labels=labels).loss
    logits = model(**kwargs, decoder_input_ids=model._shift_right(labels)).logits.float()
    if prior is not None:
        logits = logits.index_add(
            0, extra["text_rows"], prior.float()[:, None, :].expand(-1, logits.shape[1], -1)
        )
    if masks is not None:
        logits = logits.masked_fill(~masks[task], float("-inf"))
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())


def train_generator(
    model: PreTrainedModel,
    examples: Examples,
    cfg: TrainConfig,
    pad_id: int,
    device: torch.device,
    seed: int,
    masks: torch.Tensor | None = None,
) -> dict:
    """Train ``model`` in place; returns the loss curve and throughput.

    ``masks`` (see :func:`level_masks`) restricts each position's softmax to its level.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    masks = masks.to(device) if masks is not None else None
    noise_rng = torch.Generator(device=device).manual_seed(seed)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = math.ceil(cfg.epochs * steps_per_epoch)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    amp = autocast_dtype(cfg.precision, device)
    curve: list[dict] = []
    step, seen, running = 0, 0, []
    start = time.perf_counter()
    bar = tqdm(total=total, desc="train generator", unit="step", dynamic_ncols=True)
    while step < total:
        for idx in length_bucketed_batches(examples.lengths, cfg.batch_size, rng):
            input_ids, mask, labels, extra = collate(examples, idx, pad_id, device)
            if cfg.text_noise and extra and "text_vectors" in extra:
                extra["text_vectors"] = noisy(extra["text_vectors"], cfg.text_noise, noise_rng)
            task = torch.from_numpy(examples.task[idx].astype(np.int64)).to(device)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = seq2seq_loss(model, input_ids, mask, labels, extra, task, masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(idx)
            running.append(loss.item())
            if step % 50 == 0 or step == total:
                mean = float(np.mean(running))
                curve.append(
                    {"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": mean}
                )
                bar.set_postfix(loss=f"{mean:.3f}")
                running = []
            bar.update(1)
            if step >= total:
                break
    bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    return {
        "steps": step,
        "examples_seen": seen,
        "seconds": round(seconds, 2),
        "examples_per_second": round(seen / max(seconds, 1e-9), 1),
        "precision": "bf16" if amp is not None else "fp32",
        "loss_curve": curve,
    }
