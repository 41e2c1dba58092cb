"""Training loop of the generator: one model, both tasks, length-bucketed batches, AdamW."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup

from semid import checkpoint
from semid.generative.config import TrainConfig
from semid.generative.examples import Examples
from semid.generative.model import autocast_dtype

log = logging.getLogger(__name__)
# accelerate logs every file of every checkpoint at INFO: keep its warnings only
for _name in ("accelerate.checkpointing", "accelerate.accelerator"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, chunk_batches: int = 64
) -> list[np.ndarray]:
    """Shuffle, sort by length inside chunks of ``chunk_batches`` batches, shuffle the batches.

    Examples of similar length share a batch (little padding) while the order stays random.
    """
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches: list[np.ndarray] = []
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
    extra: dict[str, torch.Tensor] | None = None
    if examples.text_index is not None or examples.item_index is not None:
        extra = {}
    if examples.text_index is not None and extra is not None:
        assert examples.text_vectors is not None  # built with the text index
        rows = np.flatnonzero(examples.text_index[idx] >= 0)
        vectors = torch.from_numpy(examples.text_vectors[examples.text_index[idx[rows]]])
        extra["text_vectors"] = vectors.to(device)
        extra["text_rows"] = torch.from_numpy(rows).to(device)
        if examples.noise_std is not None:
            std = examples.noise_std[idx[rows]]
            extra["noise_std"] = torch.from_numpy(std).to(device)
    if examples.item_index is not None and extra is not None:
        assert examples.item_tokens is not None  # built with the item index
        rows = np.flatnonzero(examples.item_index[idx] >= 0)
        tokens = torch.from_numpy(examples.item_tokens[examples.item_index[idx[rows]]])
        extra["item_tokens"] = tokens.to(device)
        extra["item_rows"] = torch.from_numpy(rows).to(device)
    return input_ids.to(device), mask.to(device), labels.to(device), extra


def noisy(vectors: torch.Tensor, std: float | torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Unit vectors plus isotropic Gaussian noise of ``std`` per entry (a float, or one per
    row), renormalised; rows whose std is 0 come back unchanged."""
    if isinstance(std, torch.Tensor):
        std = std.to(vectors.dtype)[:, None]
    noise = torch.randn(vectors.shape, generator=rng, device=vectors.device) * std
    return torch.nn.functional.normalize(vectors + noise, dim=-1)


def noise_std_for_cos(cos: float, dim: int) -> float:
    """Per-entry std of isotropic noise that leaves a unit ``dim``-vector at mean cosine
    ``cos`` from where it was: |noise|^2 ~ dim std^2, cos ~ 1 / sqrt(1 + dim std^2)."""
    return math.sqrt((1.0 / cos**2 - 1.0) / dim)


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
    if extra is not None:  # text-t5 (TextConditionedT5) only
        kwargs["inputs_embeds"] = cast(Any, model).embed_inputs(input_ids, **extra)
    else:
        kwargs["input_ids"] = input_ids
    prior = None
    if extra and "text_vectors" in extra and getattr(model, "text_skip", None) is not None:
        prior = cast(Any, model).logit_prior(extra["text_vectors"])
    if masks is None and prior is None:
        return model(**kwargs, labels=labels).loss
    shift_right: Any = model._shift_right
    logits = model(**kwargs, decoder_input_ids=shift_right(labels)).logits.float()
    if prior is not None and extra is not None:
        logits = logits.index_add(
            0, extra["text_rows"], prior.float()[:, None, :].expand(-1, logits.shape[1], -1)
        )
    if masks is not None:
        logits = logits.masked_fill(~masks[task], float("-inf"))
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())


class _Objective(torch.nn.Module):
    """The model plus its loss, as one module: what accelerate wraps (DDP, autocast), so the
    input embedding and logit prior of text-t5 run inside the wrapped forward too."""

    def __init__(self, model: PreTrainedModel, masks: torch.Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("masks", masks, persistent=False)

    def forward(self, input_ids, mask, labels, extra, task):
        return seq2seq_loss(self.model, input_ids, mask, labels, extra, task, self.masks)


def _accelerator(cfg: TrainConfig, device: torch.device):
    """accelerate's Accelerator for ``device`` with the config's precision and accumulation."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    amp = autocast_dtype(cfg.precision, device)
    return Accelerator(
        cpu=device.type == "cpu",
        mixed_precision="bf16" if amp is not None else "no",
        gradient_accumulation_steps=cfg.grad_accum_steps,
        # text-t5 batches without texts (or without histories) leave some parameters unused
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def _release_accelerator() -> None:
    """Forget accelerate's process-wide state after a single-process training (so the next
    training in this process may use another precision); kept under a launcher."""
    from accelerate.state import AcceleratorState, GradientState

    from semid import distributed

    if not distributed.launched():
        AcceleratorState._reset_state()
        GradientState._reset_state()


def shard(idx: np.ndarray, parts: int) -> list[np.ndarray]:
    """A global batch split into ``parts`` near-equal pieces (micro-batch ``a`` of rank ``r``
    is piece ``a * world + r``); an empty piece becomes the first example at weight 0."""
    return list(np.array_split(idx, parts))


class _Progress:
    """What the loop itself must restore on resume, beside accelerate's saved state."""

    def __init__(self, rng: np.random.Generator, noise_rng: torch.Generator) -> None:
        self.rng, self.noise_rng = rng, noise_rng
        self.step = self.seen = 0
        self.epoch_start_state = rng.bit_generator.state  # rng before this epoch's batches
        self.position = 0  # batches of this epoch already trained on
        self.running: list[float] = []
        self.curve: list[dict] = []
        self.seconds = 0.0

    def state_dict(self, world: int) -> dict:
        return {
            "step": self.step,
            "seen": self.seen,
            "epoch_start_state": self.epoch_start_state,
            "position": self.position,
            "noise_rng": self.noise_rng.get_state(),
            "running": list(self.running),
            "curve": list(self.curve),
            "seconds": self.seconds,
            "world_size": world,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("step", "seen", "epoch_start_state", "position", "running", "curve"):
            setattr(self, name, state[name])
        self.seconds = state["seconds"]
        self.noise_rng.set_state(state["noise_rng"])


def _resume(accelerator, progress: _Progress, folder: Path | None) -> bool:
    """Load the latest checkpoint of ``folder`` if one was written by as many processes."""
    found = checkpoint.latest(folder)
    if found is None:
        return False
    step, path = found
    mine = path / f"progress_{accelerator.process_index}.pt"
    state = torch.load(mine, weights_only=False) if mine.exists() else None
    if state is None or state["world_size"] != accelerator.num_processes:
        log.warning("checkpoint %s: written by another number of processes, not resumed", path)
        return False
    accelerator.load_state(str(path))
    progress.load_state_dict(state)
    log.info("generator: resumed from %s (step %d)", path, step)
    return True


def _save(accelerator, progress: _Progress, folder: Path) -> None:
    """Save every process's state as ``folder/step-<n>`` (staged, then renamed by rank 0)."""
    tmp = checkpoint.staging(folder, progress.step)
    accelerator.save_state(str(tmp), safe_serialization=False)
    torch.save(
        progress.state_dict(accelerator.num_processes),
        tmp / f"progress_{accelerator.process_index}.pt",
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        checkpoint.publish(folder, progress.step)
    accelerator.wait_for_everyone()


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

    Runs through ``accelerate``: under ``torchrun`` / ``accelerate launch`` with N processes
    each optimizer step's global batch of ``cfg.batch_size`` examples is split across the
    processes (and ``cfg.grad_accum_steps`` micro-batches), DDP averages the gradients; bf16
    autocast comes from accelerate's mixed precision. Inside a stage of the cache the loop
    checkpoints every ``cfg.checkpoint_steps`` steps / ``cfg.checkpoint_minutes`` minutes and
    resumes from the latest checkpoint, reproducing the uninterrupted run exactly.
    """
    accelerator = _accelerator(cfg, device)
    try:
        return _train(accelerator, model, examples, cfg, pad_id, seed, masks)
    finally:
        _release_accelerator()


def _train(accelerator, model, examples, cfg, pad_id, seed, masks) -> dict:
    device = accelerator.device
    world, rank = accelerator.num_processes, accelerator.process_index
    rng = np.random.default_rng(seed)
    model.train()
    objective = _Objective(model, masks)
    noise_rng = torch.Generator(device=device).manual_seed(seed + rank)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = math.ceil(cfg.epochs * steps_per_epoch)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    optimizer, scheduler = _optimizer(model, cfg, total)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped here, once per optimizer step
    torch.manual_seed(seed + rank)  # dropout: its own stream per process (after prepare)
    folder = checkpoint.active_dir()
    progress = _Progress(rng, noise_rng)
    resumed = _resume(accelerator, progress, folder)
    last_save = time.perf_counter()
    start = time.perf_counter() - progress.seconds
    bar = tqdm(
        total=total,
        initial=progress.step,
        desc="train generator",
        unit="step",
        dynamic_ncols=True,
        disable=not accelerator.is_main_process,
    )
    while progress.step < total:
        rng.bit_generator.state = progress.epoch_start_state
        batches = length_bucketed_batches(examples.lengths, cfg.batch_size, rng)
        for idx in batches[progress.position :]:
            local_loss = _optimizer_step(
                accelerator, objective, optimizer, scheduler, examples, idx, pad_id, cfg, noise_rng
            )
            progress.step += 1
            progress.position += 1
            progress.seen += len(idx)
            progress.running.append(local_loss / cfg.grad_accum_steps)
            if progress.step % 50 == 0 or progress.step == total:
                _log_loss(accelerator, progress, steps_per_epoch, bar)
            bar.update(1)
            if (
                folder is not None
                and progress.step < total
                and _due(accelerator, cfg, progress.step, last_save)
            ):
                progress.seconds = time.perf_counter() - start
                _save(accelerator, progress, folder)
                last_save = time.perf_counter()
            checkpoint.maybe_fail(progress.step)
            if progress.step >= total:
                break
        else:  # the epoch ran out: the next one draws its order from the rng as it is now
            progress.epoch_start_state = rng.bit_generator.state
            progress.position = 0
    bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    amp = accelerator.mixed_precision == "bf16"
    return {
        "steps": progress.step,
        "examples_seen": progress.seen,
        "seconds": round(seconds, 2),
        "examples_per_second": round(progress.seen / max(seconds, 1e-9), 1),
        "precision": "bf16" if amp else "fp32",
        "processes": world,
        "grad_accum_steps": cfg.grad_accum_steps,
        "resumed": resumed,
        "loss_curve": progress.curve,
    }


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW's parameter groups: weight decay on weight matrices only (not on biases or
    norms); the parameters a pretrained checkpoint brought (names under the model's
    ``pretrained_prefix``, see :func:`semid.generative.model.build_model`) at
    ``cfg.pretrained_lr`` when set. Empty groups are left out."""
    prefix = getattr(model, "pretrained_prefix", None)
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        decays = not (param.ndim < 2 or "norm" in name.lower())
        pretrained = (
            cfg.pretrained_lr is not None and prefix is not None and name.startswith(prefix)
        )
        groups.setdefault((decays, pretrained), []).append(param)
    return [
        {
            "params": params,
            "weight_decay": cfg.weight_decay if decays else 0.0,
            "lr": cfg.pretrained_lr if pretrained else cfg.lr,
        }
        for (decays, pretrained), params in sorted(groups.items(), reverse=True)
    ]


def _optimizer(model, cfg: TrainConfig, total: int):
    """AdamW over :func:`parameter_groups`, under a cosine schedule with linear warmup over
    ``total`` steps; returns (optimizer, scheduler)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    return optimizer, scheduler


def _optimizer_step(
    accelerator, objective, optimizer, scheduler, examples, idx, pad_id, cfg, noise_rng
) -> float:
    """One optimizer step on batch ``idx``: this process's shard of it in ``grad_accum_steps``
    micro-steps (weighted by shard size); returns the summed local loss."""
    world, rank = accelerator.num_processes, accelerator.process_index
    parts = world * cfg.grad_accum_steps
    local_loss = 0.0
    for micro in range(cfg.grad_accum_steps):
        part = shard(idx, parts)[micro * world + rank]
        weight = len(part) * parts / len(idx)
        if len(part) == 0:
            part = idx[:1]
        local_loss += _micro_step(
            accelerator,
            objective,
            optimizer,
            scheduler,
            examples,
            part,
            pad_id,
            cfg,
            weight,
            noise_rng,
            accelerator.device,
        )
    return local_loss


def _log_loss(accelerator, progress: _Progress, steps_per_epoch: int, bar) -> None:
    """Add the mean loss since the last point (over every process) to the loss curve."""
    running = torch.tensor(progress.running, device=accelerator.device)
    mean = (
        float(accelerator.reduce(running, "mean").mean())
        if accelerator.num_processes > 1
        else float(np.mean(progress.running))
    )
    progress.curve.append(
        {
            "step": progress.step,
            "epoch": round(progress.step / steps_per_epoch, 3),
            "loss": mean,
        }
    )
    bar.set_postfix(loss=f"{mean:.3f}")
    progress.running = []


def _due(accelerator, cfg: TrainConfig, step: int, last_save: float) -> bool:
    """Whether to checkpoint after ``step`` (the clock of rank 0 decides for everyone)."""
    if cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0:
        return True
    if not cfg.checkpoint_minutes:
        return False
    due = [time.perf_counter() - last_save >= 60 * cfg.checkpoint_minutes]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(due)
    return bool(due[0])


def _micro_step(
    accelerator,
    objective,
    optimizer,
    scheduler,
    examples,
    part,
    pad_id,
    cfg,
    weight,
    noise_rng,
    device,
) -> float:
    """Forward/backward one micro-batch; the optimizer steps when accelerate says so."""
    with accelerator.accumulate(objective):
        input_ids, mask, labels, extra = collate(examples, part, pad_id, device)
        row_std = extra.pop("noise_std", None) if extra else None
        if extra and "text_vectors" in extra and (cfg.text_noise or row_std is not None):
            std: float | torch.Tensor = cfg.text_noise
            if row_std is not None:  # neighbourhood copies: at least text_noise on every row
                std = torch.clamp(row_std, min=cfg.text_noise)
            extra["text_vectors"] = noisy(extra["text_vectors"], std, noise_rng)
        task = torch.from_numpy(examples.task[part].astype(np.int64)).to(device)
        loss = objective(input_ids, mask, labels, extra, task)
        if weight != 1.0:  # this piece's share of the global batch (DDP averages pieces)
            loss = loss * weight
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(objective.parameters(), 1.0)
        optimizer.step()
        if accelerator.sync_gradients:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss.item())
