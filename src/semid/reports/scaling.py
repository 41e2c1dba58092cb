"""Catalogue-size scaling in a study: search Recall@K and the gap to the baseline row against
the number of catalogue items, when one axis of the grid sets the catalogue size.

The *size axis* is the varying axis whose every label gives its finished cells one catalogue
size (the data stage's item count), a different size per label, with at least two sizes
(``grids/ml-25m-scale.yaml``: ``catalogue``, nested ``data.sample_items`` subsets). A *series*
is a setting of the other varying axes (e.g. a quantizer). The gap of a row is the mean
difference in Recall@K to its baseline row (same catalogue size) from the row's headline
paired test, with that test's 95% interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semid.io import atomic_path
from semid.reports.cells import GENERATIVE, Study
from semid.reports.stats import finite_or_none, mean_std
from semid.reports.tables import RowStats, fmt_mean_std, md_table

# the search sets of a scale study (template queries, title alone, real requests) and the
# non-generative methods scored on them at every size
SCALE_SETS = ("search", "search_title", "search_real")
REFERENCE_METHODS = ("dense", "bm25")


@dataclass
class ScalingPoint:
    """One row of the study placed on the size axis.

    ``sets``: the generator's mean Recall@K over seeds on each of :data:`SCALE_SETS`;
    ``references``: the same for each reference method (identical for the rows of one size).
    """

    series: str
    items: int
    recall: tuple[float, float]  # mean, std over seeds
    gap: tuple[float, float, float] | None  # mean diff to the baseline row, 95% CI
    is_baseline: bool
    group: str = ""
    seeds: int = 0
    gap_p: float = math.nan  # the headline test's Holm-corrected p-value
    gap_test: str = ""  # its kind: seeds (t-test over seeds) or bootstrap (queries resampled)
    sets: dict[str, float] = field(default_factory=dict)
    references: dict[str, dict[str, float]] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)  # inputs scored per set

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "group": self.group,
            "items": self.items,
            "seeds": self.seeds,
            "is_baseline": self.is_baseline,
            "recall": [finite_or_none(v) for v in self.recall],
            "gap": None if self.gap is None else [finite_or_none(v) for v in self.gap],
            "gap_pvalue_holm": finite_or_none(self.gap_p),
            "gap_test": self.gap_test,
            "sets": {k: finite_or_none(v) for k, v in self.sets.items()},
            "references": {
                m: {k: finite_or_none(v) for k, v in sets.items()}
                for m, sets in self.references.items()
            },
            "queries": self.queries,
        }


def cell_items(cell) -> int | None:
    """The catalogue size of a run: its data stage's item count."""
    facts = ((cell.manifest or {}).get("stages", {}).get("data") or {}).get("facts") or {}
    items = facts.get("items")
    return int(items) if items is not None else None


def size_axis(study: Study) -> tuple[str, dict[str, int]] | None:
    """The axis that sets the catalogue size and each label's size (None without one)."""
    done = [c for cells in study.groups().values() for c in cells]
    for axis in study.varying_axes():
        sizes: dict[str, set[int | None]] = {}
        for cell in done:
            sizes.setdefault(cell.labels.get(axis, ""), set()).add(cell_items(cell))
        single = {label: next(iter(found)) for label, found in sizes.items() if len(found) == 1}
        if len(single) != len(sizes) or None in single.values():
            continue
        counts = [int(v) for v in single.values() if v is not None]
        if len(set(counts)) == len(counts) >= 2:
            return axis, {label: int(v) for label, v in single.items() if v is not None}
    return None


def scaling_points(study: Study, rows: list[RowStats], k: int) -> list[ScalingPoint]:
    """Every row on the size axis (empty when the study has no size axis)."""
    found = size_axis(study)
    if found is None:
        return []
    axis, sizes = found
    others = [a for a in study.varying_axes() if a != axis]
    groups = study.groups()
    points = []
    for row in rows:
        label = row.labels.get(axis)
        if label not in sizes:
            continue
        series = " / ".join(row.labels.get(a, "") for a in others) or "all"
        test = row.tests.get("search")
        gap = None
        if test is not None and not math.isnan(test.mean_diff):
            gap = (test.mean_diff, *test.ci)
        recall = row.values.get(f"search recall@{k}", (math.nan, math.nan))
        done = [c for c in groups.get(row.group, []) if c.status == "done" and c.metrics]
        points.append(
            ScalingPoint(
                series, sizes[label], recall, gap, row.is_baseline,
                group=row.group,
                seeds=len(done),
                gap_p=math.nan if test is None else test.pvalue_holm,
                gap_test="" if test is None else test.kind,
                sets={key: _mean(done, GENERATIVE, key, k) for key in SCALE_SETS},
                references={
                    m: {key: _mean(done, m, key, k) for key in SCALE_SETS}
                    for m in REFERENCE_METHODS
                },
                queries=_queries(done),
            )
        )  # fmt: skip
    order = {name: i for i, name in enumerate(dict.fromkeys(p.series for p in points))}
    return sorted(points, key=lambda p: (not p.is_baseline, order[p.series], p.items))


def _queries(cells: list) -> dict[str, int]:
    """Inputs scored per search set, from the first finished cell."""
    metrics = (cells[0].metrics or {}).get(GENERATIVE, {}) if cells else {}
    return {key: int(metrics[key]["n"]) for key in SCALE_SETS if "n" in metrics.get(key, {})}


def _mean(cells: list, method: str, key: str, k: int) -> float:
    """Mean Recall@k of ``method`` on ``key`` over the cells (NaN where none has it)."""
    return mean_std([c.metric(method, key, f"recall@{k}") for c in cells])[0]


def reference_points(points: list[ScalingPoint]) -> dict[str, dict[int, float]]:
    """Each reference method's template-search Recall@K per catalogue size (from the rows of
    that size; identical across them)."""
    out: dict[str, dict[int, float]] = {}
    for method in REFERENCE_METHODS:
        for p in points:
            value = p.references.get(method, {}).get("search", math.nan)
            if not math.isnan(value):
                out.setdefault(method, {}).setdefault(p.items, value)
    return out


def scaling_table(points: list[ScalingPoint], k: int) -> str:
    """Search Recall@K per series and catalogue size, and each row's gap to its baseline."""
    sizes = sorted({p.items for p in points})
    body = []
    for series in dict.fromkeys(p.series for p in points):
        by_size = {p.items: p for p in points if p.series == series}
        body.append(
            [series, f"R@{k}"]
            + [fmt_mean_std(*by_size[n].recall) if n in by_size else "—" for n in sizes]
        )
        if not any(p.is_baseline for p in by_size.values()):
            body.append([series, "gap [95% CI]"] + [_gap(by_size.get(n)) for n in sizes])
    for method, by_items in reference_points(points).items():
        body.append(
            [f"{method} (reference)", f"R@{k}"]
            + [f"{by_items[n]:.4f}" if n in by_items else "—" for n in sizes]
        )
    return md_table(["series", "value"] + [f"{n:,} items" for n in sizes], body)


def _gap(point: ScalingPoint | None) -> str:
    if point is None or point.gap is None:
        return "—"
    mean, lo, hi = point.gap
    interval = "" if math.isnan(lo) else f" [{lo:+.4f}, {hi:+.4f}]"
    return f"{mean:+.4f}{interval}"


def scaling_plot(points: list[ScalingPoint], path: str | Path, k: int, title: str) -> Path:
    """``scaling.png``: Recall@K (left) and the gap to the baseline (right) against the
    catalogue size (log scale), one line per series; bars: std over seeds, the gap's 95% CI."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = Figure(figsize=(10.0, 4.5), dpi=120)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, series in enumerate(dict.fromkeys(p.series for p in points)):
        color = f"C{i}"  # one colour per series in both panels
        mine = [p for p in points if p.series == series]
        stds = [0.0 if math.isnan(p.recall[1]) else p.recall[1] for p in mine]
        left.errorbar(
            [p.items for p in mine], [p.recall[0] for p in mine], yerr=stds,
            marker="o", capsize=3, label=series, color=color,
        )  # fmt: skip
        gaps = [(p.items, p.gap) for p in mine if p.gap is not None and not p.is_baseline]
        if gaps:
            lows, highs = zip(*(_ci_err(gap) for _, gap in gaps), strict=True)
            right.errorbar(
                [n for n, _ in gaps], [gap[0] for _, gap in gaps], yerr=[lows, highs],
                marker="o", capsize=3, label=series, color=color,
            )  # fmt: skip
    for j, (method, by_items) in enumerate(reference_points(points).items()):
        sizes = sorted(by_items)
        left.plot(
            sizes, [by_items[n] for n in sizes], linestyle="--", marker=".",
            color="grey", alpha=0.9 - 0.3 * j, label=f"{method} (reference)",
        )  # fmt: skip
    right.axhline(0.0, color="black", linewidth=0.8)
    for ax, ylabel in ((left, f"search Recall@{k}"), (right, f"Recall@{k} − baseline row")):
        ax.set_xscale("log")
        ax.set_xticks(sorted({p.items for p in points}))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("catalogue items")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _ci_err(gap: tuple[float, float, float]) -> tuple[float, float]:
    mean, lo, hi = gap
    if math.isnan(lo) or math.isnan(hi):
        return 0.0, 0.0
    return max(mean - lo, 0.0), max(hi - mean, 0.0)


def scaling_section(study: Study, points: list[ScalingPoint], k: int) -> list[str]:
    """The report's catalogue-size section and ``scaling.png`` from :func:`scaling_points`
    (nothing without a size axis)."""
    if not points:
        return []
    found = size_axis(study)
    assert found is not None
    plot = scaling_plot(
        points,
        study.results_dir / "scaling.png",
        k,
        f"{study.info['name']}: search vs catalogue size (mean ± std over seeds)",
    )
    return [
        "## Catalogue size\n",
        f"Rows by catalogue size (axis `{found[0]}`: the items of each run's data stage). "
        f"*gap*: the row's mean difference in search Recall@{k} to its baseline row of the same "
        "size, with the 95% interval of the headline paired test (*Statistical tests*).\n",
        f"![scaling]({plot.name})\n",
        scaling_table(points, k) + "\n",
    ]
