"""Figures of the study report (matplotlib, no pyplot state: safe in workers and tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from semid.io import atomic_path


@dataclass
class TradeoffPoint:
    """One cell (averaged over seeds): search on x, recommendation on y, with std error bars."""

    label: str
    x: float
    y: float
    xerr: float | None = None
    yerr: float | None = None
    highlight: bool = False


def _err(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


def tradeoff_scatter(
    points: list[TradeoffPoint],
    path: str | Path,
    xlabel: str = "search Recall@30",
    ylabel: str = "recommendation Recall@30",
    title: str | None = None,
) -> Path:
    """Scatter of search vs recommendation quality, one labelled point per cell; writes a PNG.

    Points with ``highlight`` (the baseline row) are drawn as squares. Error bars are the
    standard deviation over seeds (none for a single seed).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 5.5), dpi=120)
    ax = fig.add_subplot()
    for point in points:
        if math.isnan(point.x) or math.isnan(point.y):
            continue
        ax.errorbar(
            point.x,
            point.y,
            xerr=_err(point.xerr),
            yerr=_err(point.yerr),
            fmt="s" if point.highlight else "o",
            markersize=7 if point.highlight else 5,
            capsize=3,
            color="black" if point.highlight else None,
        )
        ax.annotate(
            point.label, (point.x, point.y), textcoords="offset points", xytext=(5, 4), fontsize=7
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
