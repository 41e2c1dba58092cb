"""``semid grid --dry-run``: an estimate of the GPU-hours a grid needs.

This is an ESTIMATE, printed as one. It multiplies, per cell, the training examples the
generator sees (epochs x examples per epoch, counted from the config and the dataset's size)
by a per-example cost, plus a share for evaluation:

* **Training FLOPs per example** = 6 x parameters x tokens per example (forward + backward),
  the parameters counted by building the cell's model on the ``meta`` device.
* **Measured reference** (:data:`MEASURED`): the default run on this project's 2-core CPU
  (benchmarks/results/default_run.json) trained 772.5 examples/s with a 2.7M-parameter text-t5
  and spent 16% of its model-stage time again on evaluation. No GPU run has been measured
  here; the GPU rate is :data:`GPU_TFLOPS` of sustained bf16 training throughput, an assumed
  figure (about 15% of an A100/H100's peak, typical of small seq2seq models), overridable
  with ``$SEMID_GPU_TFLOPS``. Replace it with your own: a finished model stage records its
  ``examples_per_second`` and ``parameters`` (``_stage.json``), and :func:`calibrate` turns
  them into a TFLOP/s figure.

The same FLOPs at the measured reference's rate give the hours a cell's generator would take on
that 2-core CPU (the *reference CPU-hours* column; a CPU preset's budget). Search-only cells
(``tasks=[search]``) have no recommendation examples, and ``data.sample_items`` sizes the
catalogue. Embedding, quantizer and baseline stages are not counted (minutes, shared between
cells).
"""

from __future__ import annotations

import os
from typing import Any

# Items and users of the MovieLens releases (their published counts), for configs whose data
# stage has not run yet.
DATASETS: dict[str, tuple[int, int]] = {
    "ml-latest-small": (9742, 610),
    "ml-100k": (1682, 943),
    "ml-1m": (3883, 6040),
    "ml-10m": (10681, 69878),
    "ml-20m": (27278, 138493),
    "ml-25m": (62423, 162541),
    "ml-latest": (86537, 330975),
}

MEASURED: dict[str, Any] = {
    "hardware": "2-core CPU (this project's CI machine), fp32",
    "parameters": 2.7e6,
    "examples_per_second": 772.5,
    "tokens_per_example": 14,
    "eval_share": 0.16,
}
GPU_TFLOPS = 40.0


def gpu_tflops() -> float:
    return float(os.environ.get("SEMID_GPU_TFLOPS", GPU_TFLOPS))


def calibrate(examples_per_second: float, parameters: float, tokens_per_example: float) -> float:
    """The sustained TFLOP/s a measured training throughput corresponds to."""
    return 6 * parameters * tokens_per_example * examples_per_second / 1e12


def count_parameters(cfg) -> int:
    """Parameters of the cell's generator, built on the meta device (no memory, no weights)."""
    import torch

    from semid.generative.model import build_model

    q = cfg.quantizer
    vocab = cfg.model.text_vocab_size + q.levels * q.codebook_size + 64  # + disambiguation
    model_cfg = cfg.model
    if model_cfg.backbone == "text-t5":  # same transformer; the text projection is small
        model_cfg = model_cfg.model_copy(update={"backbone": "t5-scratch"})
    if model_cfg.backbone != "t5-scratch":
        return int(MEASURED["parameters"] * 100)  # a pretrained checkpoint: not sized here
    with torch.device("meta"):
        model = build_model(model_cfg, vocab, 0, 1)
    return sum(p.numel() for p in model.parameters())


def examples_per_epoch(cfg) -> tuple[int, float]:
    """(training examples per epoch, mean tokens per example) of a cell, from its config
    (the catalogue's published size, cut by ``data.sample_items`` / ``max_items``; no rec
    examples in a search-only run)."""
    items, users = DATASETS.get(cfg.data.dataset, DATASETS["ml-latest-small"])
    if cfg.data.sample_items:
        items = min(items, cfg.data.sample_items)
    if cfg.data.max_items:
        items = min(items, cfg.data.max_items)
    if "rec" not in cfg.tasks:
        users = 0  # search-only: no user sequences, no rec examples
    queries = items * max(cfg.queries.per_item - cfg.queries.test_per_item, 0)
    indexing = 0
    if cfg.train.indexing_examples:
        indexing = items * len(cfg.train.indexing_variants) * cfg.train.indexing_repeats
    windows = cfg.train.rec_windows_per_user or cfg.data.max_history
    rec = users * min(windows, cfg.data.max_history)
    n = queries + indexing + rec
    text_tokens = cfg.model.text_slots + 2 if cfg.model.backbone == "text-t5" else 16
    history = cfg.model.max_history_items
    tokens = ((queries + indexing) * text_tokens + rec * (history + 2)) / max(n, 1)
    return n, tokens + cfg.quantizer.levels + 2  # + the target ID tokens


def cell_gpu_hours(cfg) -> dict[str, Any]:
    n, tokens = examples_per_epoch(cfg)
    steps = cfg.train.epochs * n / cfg.train.batch_size
    if cfg.train.max_steps:
        steps = min(steps, cfg.train.max_steps)
    seen = steps * cfg.train.batch_size
    params = count_parameters(cfg)
    flops = 6 * params * tokens * seen * (1 + MEASURED["eval_share"])
    return {
        "examples": n,
        "parameters": params,
        "seen": seen,
        "gpu_hours": flops / (gpu_tflops() * 1e12) / 3600,
        "cpu_hours": flops / (reference_tflops() * 1e12) / 3600,
    }


def reference_tflops() -> float:
    """The sustained TFLOP/s of the measured reference (:data:`MEASURED`, the 2-core CPU)."""
    return calibrate(
        MEASURED["examples_per_second"], MEASURED["parameters"], MEASURED["tokens_per_example"]
    )


def gpu_hours_rows(grid, only=None) -> tuple[list[list[str]], float, str]:
    """(one row per cell: name, parameters, examples/epoch, examples seen, GPU-hours and hours
    at the measured reference's rate; the total GPU-hours; a note saying what the estimate
    assumes)."""
    from semid.grid import select_cells

    rows, total, cpu_total = [], 0.0, 0.0
    for cell in select_cells(grid.cells, only):
        est = cell_gpu_hours(cell.config)
        total += est["gpu_hours"]
        cpu_total += est["cpu_hours"]
        rows.append(
            [
                cell.name,
                f"{est['parameters'] / 1e6:.1f}M",
                f"{est['examples']:,}",
                f"{est['seen']:,.0f}",
                f"{est['gpu_hours']:.2f}",
                f"{est['cpu_hours']:.2f}",
            ]
        )
    ref = reference_tflops()
    note = (
        f"estimated total: {total:.1f} GPU-hours (training + {MEASURED['eval_share']:.0%} for "
        f"evaluation); {cpu_total:.1f} hours at the measured reference's rate. An estimate: "
        f"6 x parameters x tokens FLOPs per example at an assumed "
        f"{gpu_tflops():g} TFLOP/s ($SEMID_GPU_TFLOPS); measured reference: "
        f"{MEASURED['examples_per_second']} examples/s = {ref * 1e3:.2f} GFLOP/s on a "
        f"{MEASURED['hardware']}. Embedding, quantizer and baseline stages are not counted. "
        "See semid.costs."
    )
    return rows, total, note
