"""PNG plots of an ID space (matplotlib, Agg backend): code usage, bucket sizes, training."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semid.io import atomic_path  # noqa: E402
from semid.quantizers.diagnostics import bucket_sizes  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_code_usage(codes: np.ndarray, level_sizes: list[int], path: Path) -> None:
    """Items per code, codes sorted by count, one panel per level."""
    levels = len(level_sizes)
    fig, axes = plt.subplots(1, levels, figsize=(4 * levels, 3), squeeze=False)
    for level, (ax, size) in enumerate(zip(axes[0], level_sizes, strict=True)):
        counts = np.sort(np.bincount(codes[:, level], minlength=size))[::-1]
        ax.bar(np.arange(size), counts, width=1.0)
        ax.set_title(f"level {level + 1}: {(counts > 0).sum()}/{size} codes used")
        ax.set_xlabel("code (sorted by count)")
        ax.set_ylabel("items")
    _save(fig, path)


def plot_bucket_sizes(codes: np.ndarray, path: Path) -> None:
    """How many full IDs (before disambiguation) are shared by 1, 2, 3... items."""
    sizes = bucket_sizes(codes)
    values, counts = np.unique(sizes, return_counts=True)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(values, counts, width=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("items sharing the ID")
    ax.set_ylabel("IDs")
    ax.set_title(f"bucket sizes ({sizes.size} IDs, largest {sizes.max()})")
    _save(fig, path)


def plot_training(training_log: list[dict], path: Path) -> None:
    """Loss and per-level perplexity over epochs (learned quantizers only)."""
    rows = [r for r in training_log if "epoch" in r]
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(9, 3))
    for key in ("loss", "recon_loss", "quantizer_loss"):
        if key in rows[0]:
            ax_loss.plot(epochs, [r[key] for r in rows], label=key)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    if "perplexity" in rows[0]:
        for level in range(len(rows[0]["perplexity"])):
            ax_ppl.plot(epochs, [r["perplexity"][level] for r in rows], label=f"level {level + 1}")
        ax_ppl.set_xlabel("epoch")
        ax_ppl.set_ylabel("perplexity of codes chosen")
        ax_ppl.legend()
    _save(fig, path)


def write_plots(
    folder: Path, codes: np.ndarray, level_sizes: list[int], training_log: list[dict]
) -> None:
    """Write code_usage.png, bucket_sizes.png and (if learned) training.png into ``folder``."""
    folder = Path(folder)
    plot_code_usage(codes, level_sizes, folder / "code_usage.png")
    plot_bucket_sizes(codes, folder / "bucket_sizes.png")
    plot_training(training_log, folder / "training.png")
