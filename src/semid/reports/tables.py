"""The report's main tables: results over seeds, tests, reference points."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from semid.reports.cells import GENERATIVE, CellResult, Study, non_seed_differences
from semid.reports.stats import (
    BOOTSTRAP_RESAMPLES,
    MIN_SEEDS_FOR_SEED_TEST,
    PairedTest,
    compare_to_baseline,
    finite_or_none,
    holm,
    mean_std,
)

REFERENCE_ORDER = ["dense", "dense-user", "bm25", "sasrec", "popularity", "popularity-unseen"]


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``0.1234 ± 0.0056``; the mean alone for one seed; '—' when missing."""
    if mean is None or math.isnan(mean):
        return "—"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt_pvalue(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def fmt_p(test: PairedTest | None, corrected: bool = True) -> str:
    """p-value cell (Holm-corrected by default): ``0.0123``, ``3.1e-05``.

    ‡ marks a bootstrap within fewer than 3 seeds (test-sample noise only, not seed variance).
    """
    if test is None:
        return "—"
    if test.kind == "none":
        return "n/a"
    if math.isnan(test.pvalue):
        return "= (identical)" if test.mean_diff == 0 else "n/a"
    p = test.pvalue_holm if corrected and not math.isnan(test.pvalue_holm) else test.pvalue
    mark = "‡" if test.kind == "bootstrap" and test.seeds < MIN_SEEDS_FOR_SEED_TEST else ""
    return _fmt_pvalue(p) + mark


def cell_values(cells: list[CellResult], method: str, task: str, name: str) -> dict[str, float]:
    return {c.seed: c.metric(method, task, name) for c in cells}


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class RowStats:
    """A table row: one group of cells over seeds, with its tests against the baseline."""

    group: str
    labels: dict[str, str]
    seeds: list[str]
    values: dict[str, tuple[float, float]]  # "search recall@30" -> (mean, std)
    tests: dict[str, PairedTest]  # task -> headline test (absent for the baseline row itself)
    baseline: str | None
    is_baseline: bool
    other_tests: dict[str, list[PairedTest]] = field(default_factory=dict)  # task -> the rest
    non_seed_differences: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "labels": self.labels,
            "seeds": self.seeds,
            "n_seeds": len(self.seeds),
            "mean": {k: finite_or_none(v[0]) for k, v in self.values.items()},
            "std": {k: finite_or_none(v[1]) for k, v in self.values.items()},
            "baseline": self.baseline,
            "is_baseline": self.is_baseline,
            "tests": {task: t.to_json() for task, t in self.tests.items()},
            "other_tests": {
                task: [t.to_json() for t in ts] for task, ts in self.other_tests.items()
            },
            "non_seed_differences": self.non_seed_differences,
        }


def row_stats(study: Study, k: int, n_resamples: int = BOOTSTRAP_RESAMPLES) -> list[RowStats]:
    """Mean ± std over seeds of the generator's metrics per group, and the corrected tests.

    Holm correction runs over every headline test of the table (all rows and tasks), and
    separately over the secondary tests.
    """
    groups = study.groups()
    tasks = study.tasks()
    rows = []
    for group, cells in groups.items():
        values = {
            f"{task} {m}@{k}": mean_std(
                list(cell_values(cells, GENERATIVE, task, f"{m}@{k}").values())
            )
            for task in tasks
            for m in ("recall", "ndcg")
        }
        base = study.baseline_of(group)
        tests: dict[str, PairedTest] = {}
        others: dict[str, list[PairedTest]] = {}
        if base is not None and base != group and base in groups:
            for task in tasks:
                found = compare_to_baseline(
                    {c.seed: c.predictions(GENERATIVE, task) for c in cells},
                    {c.seed: c.predictions(GENERATIVE, task) for c in groups[base]},
                    cell_values(cells, GENERATIVE, task, f"recall@{k}"),
                    cell_values(groups[base], GENERATIVE, task, f"recall@{k}"),
                    k,
                    n_resamples,
                )
                tests[task], others[task] = found[0], found[1:]
        rows.append(
            RowStats(
                group=group,
                labels=study.group_labels(group),
                seeds=[c.seed for c in cells],
                values=values,
                tests=tests,
                baseline=base if base in groups else None,
                is_baseline=base == group,
                other_tests={t: o for t, o in others.items() if o},
                non_seed_differences=non_seed_differences(cells),
            )
        )
    _apply_holm([t for r in rows for t in r.tests.values()])
    _apply_holm([t for r in rows for ts in r.other_tests.values() for t in ts])
    return rows


def _apply_holm(tests: list[PairedTest]) -> None:
    for test, adjusted in zip(tests, holm([t.pvalue for t in tests]), strict=True):
        test.pvalue_holm = float(adjusted)


def results_table(study: Study, rows: list[RowStats], k: int) -> str:
    """The paper-style table: one row per group, mean ± std over seeds, p vs the baseline."""
    axes = study.varying_axes()
    tasks = study.tasks()
    header = axes or ["cell"]
    header = (
        header
        + ["seeds"]
        + [f"{t} {m}@{k}" for t in tasks for m in ("R", "N")]
        + [f"p {t} (Holm)" for t in tasks]
    )
    body = []
    for row in rows:
        label_cells = [row.labels.get(a, "") for a in axes] if axes else [row.group]
        if row.is_baseline:
            label_cells[0] = f"**{label_cells[0]}**"
        p_cells = (
            ["baseline"] * len(tasks)
            if row.is_baseline
            else [fmt_p(row.tests.get(task)) for task in tasks]
        )
        body.append(
            label_cells
            + [str(len(row.seeds))]
            + [fmt_mean_std(*row.values[f"{t} {m}@{k}"]) for t in tasks for m in ("recall", "ndcg")]
            + p_cells
        )
    return md_table(header, body)


def tests_table(rows: list[RowStats], k: int) -> str:
    """Details of every test: kind, seeds, pairs, mean difference (95% CI), statistic, p."""
    body = []
    for row in rows:
        for task, headline in row.tests.items():
            for test in [headline] + row.other_tests.get(task, []):
                ci = "—" if math.isnan(test.ci[0]) else f"[{test.ci[0]:+.4f}, {test.ci[1]:+.4f}]"
                body.append(
                    [
                        row.group,
                        row.baseline or "—",
                        task,
                        test.kind + ("" if test is headline else " (secondary)"),
                        str(test.seeds),
                        str(test.n),
                        "—" if math.isnan(test.mean_diff) else f"{test.mean_diff:+.4f}",
                        ci,
                        "—" if math.isnan(test.statistic) else f"{test.statistic:.3f}",
                        fmt_p(test, corrected=False),
                        fmt_p(test),
                    ]
                )
    if not body:
        return "No paired tests (the grid names no baseline, or the baseline row has no results)."
    header = [
        "row",
        "baseline",
        "task",
        "test",
        "seeds",
        "n",
        f"mean diff R@{k}",
        "95% CI",
        "t",
        "p",
        "p (Holm)",
    ]
    return md_table(header, body)


def collapse_identical(study: Study, per_group: dict[str, tuple]) -> list[tuple[str, tuple]]:
    """Merge groups with identical values; label merged groups by what they have in common."""
    merged: dict[tuple, list[str]] = {}
    for group, value in per_group.items():
        merged.setdefault(_hashable(value), []).append(group)
    out = []
    for groups in merged.values():
        value = per_group[groups[0]]
        if len(groups) == 1:
            out.append((groups[0], value))
            continue
        if len(groups) == len(study.groups()):
            out.append(("all rows", value))
            continue
        label_sets = [study.group_labels(g) for g in groups]
        varying = set(study.varying_axes())
        common = [
            v
            for a, v in label_sets[0].items()
            if a in varying and all(ls.get(a) == v for ls in label_sets)
        ]
        out.append(("/".join(common) if common else ", ".join(groups), value))
    return out


def _hashable(value: Any) -> Any:
    """NaN-safe dictionary key (NaN != NaN would keep identical rows apart)."""
    if isinstance(value, tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 10)
    return value


def reference_table(study: Study, k: int) -> str:
    """Non-generative methods scored on the same inputs (identical rows merged)."""
    groups = study.groups()
    methods: list[str] = []
    for cells in groups.values():
        for cell in cells:
            for method in cell.metrics or {}:
                if method != GENERATIVE and method not in methods:
                    methods.append(method)
    methods = [m for m in REFERENCE_ORDER if m in methods] + sorted(
        set(methods) - set(REFERENCE_ORDER)
    )
    tasks = study.tasks()
    body = []
    for method in methods:
        per_group: dict[str, tuple] = {}
        for group, cells in groups.items():
            key: list[tuple[tuple[str, float], ...]] = []
            for task in tasks:
                for m in ("recall", "ndcg"):
                    vals = cell_values(cells, method, task, f"{m}@{k}")
                    key.append(tuple(sorted(vals.items())))
            if any(any(not math.isnan(v) for _, v in part) for part in key):
                per_group[group] = tuple(key)
        for label, merged in collapse_identical(study, per_group):
            cells_text = [fmt_mean_std(*mean_std([v for _, v in part])) for part in merged]
            body.append([method, label, str(len(merged[0]))] + cells_text)
    if not body:
        return "No reference points in these runs."
    header = ["method", "rows", "seeds"] + [f"{t} {m}@{k}" for t in tasks for m in ("R", "N")]
    return md_table(header, body)
