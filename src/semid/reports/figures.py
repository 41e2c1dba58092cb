"""Figures of a study: the search-vs-recommendation trade-off across ID schemes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TradeoffPoint:
    """One ID scheme: mean and standard deviation over seeds of its two recalls."""

    label: str
    search_mean: float
    search_std: float
    rec_mean: float
    rec_std: float
    seeds: int


def tradeoff_figure(
    points: Sequence[TradeoffPoint],
    path: str | Path,
    k: int,
    references: dict[str, tuple[float | None, float | None]] | None = None,
) -> Path:
    """Scatter of search R@k (x) vs recommendation R@k (y), one point per ID scheme with
    error bars of one standard deviation over seeds; ``references`` (label -> (search, rec),
    either may be None) are drawn as dashed lines. Written atomically; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for point in points:
        ax.errorbar(
            point.search_mean,
            point.rec_mean,
            xerr=point.search_std,
            yerr=point.rec_std,
            fmt="o",
            capsize=3,
            label=f"{point.label} ({point.seeds} seed{'s' if point.seeds != 1 else ''})",
        )
    for i, (name, (search, rec)) in enumerate((references or {}).items()):
        style: dict[str, Any] = {
            "color": f"C{(len(points) + i) % 10}",
            "linestyle": "--",
            "linewidth": 1,
        }
        if search is not None:
            ax.axvline(search, **style, label=f"{name} search")
        if rec is not None:
            ax.axhline(rec, **style, label=f"{name} rec")
    ax.set_xlabel(f"generative search Recall@{k} (template queries, test)")
    ax.set_ylabel(f"generative recommendation Recall@{k} (test)")
    ax.set_title("Search vs recommendation across ID schemes (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    tmp.replace(path)
    return path
