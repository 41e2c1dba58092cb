"""The report of a grid: paper-style tables over seeds, corrected tests, head/torso, diagnostics.

Every number is read from the cells' run directories (``metrics.json``, ``predictions.parquet``,
``manifest.json``, the splits and ids stage folders); nothing is typed. Definitions:

- **Rows** are the grid's cells grouped over training seeds (the grid's ``group_over`` axis, else
  an axis named ``seed`` or ``train.seed``): mean ± sample standard deviation (ddof=1) over seeds
  of Recall@K and NDCG@K, with the number of seeds of every row.
- **Tests** compare each row with its baseline row (the cell with the same labels except the
  grid's ``baseline`` axes) on hit@K, paired seed by seed. With three or more common seeds the
  headline test is a paired t-test over seeds (``scipy.stats.ttest_rel`` on the per-seed
  Recall@K): the unit is a trained model, so training-seed variance is counted. With fewer
  seeds it is a paired bootstrap (:func:`paired_bootstrap`): examples are resampled within each
  seed (both runs of a seed scored on identical inputs), the statistic is the difference in
  Recall@K averaged over seeds; it counts test-sample noise only, which the report says. The
  bootstrap is also shown beside the t-test whenever the inputs pair. Headline p-values are
  Holm–Bonferroni corrected (``statsmodels.stats.multitest.multipletests(method="holm")``) over
  all comparisons of the results table; the secondary bootstrap p-values form a family of their
  own.
- **Head / torso**: item popularity = occurrences in the training sequences of the run's split
  (``sequences.parquet``, ``train`` lists). The head is the smallest set of most popular items
  (ties by item index) that accounts for ``head_share`` (default 50%) of the training
  interactions; every other item, unseen ones included, is the torso. Recommendation examples
  are split by whether their target item is in the head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from semid.errors import ConfigError, SemidError
from semid.grid import CELL_FAILED_FILE, read_grid_json, write_results
from semid.io import read_json, write_json, write_text
from semid.reports.plots import TradeoffPoint, tradeoff_scatter
from semid.runs import DONE_FILE, STAGES

GENERATIVE = "generative"
TASKS = ("search", "rec")
# Config keys that only reseed training: rows average over them (see ``load_study``).
SEED_AXES = ("seed", "train.seed", "quantizer.seed")
REFERENCE_ORDER = ["dense", "dense-user", "bm25", "sasrec", "popularity", "popularity-unseen"]
# Diagnostics shown first (substring of the flattened key, in this order of priority).
PREFERRED_DIAGNOSTICS = (
    "usage",
    "perplexity",
    "unique_share",
    "colliding",
    "largest_bucket",
    "nn_same",
    "explained_variance",
    "dead",
    "utiliz",
    "collision",
    "coherence",
)
MAX_DIAGNOSTIC_COLUMNS = 10


# ---------------------------------------------------------------------------------------------
# Statistics (pure functions, tested on crafted inputs)
# ---------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the finite values; NaN when undefined."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else float("nan")


def hits_at_k(ranks: np.ndarray | Sequence[int], k: int) -> np.ndarray:
    """1.0 where the 0-based rank is within the top ``k`` (-1 = not retrieved), else 0.0."""
    ranks = np.asarray(ranks)
    return ((ranks >= 0) & (ranks < k)).astype(float)


@dataclass
class PairedTest:
    """A paired test of a row against its baseline on one task.

    ``kind``: ``"seeds"`` (t-test over per-seed Recall@K), ``"bootstrap"`` (examples resampled
    within each seed) or ``"none"``. ``n``: pairs (seeds, or examples over all seeds); ``seeds``:
    common seeds; ``pvalue_holm``: the p-value after Holm correction over its table's family.
    """

    kind: str
    n: int
    mean_diff: float
    statistic: float
    pvalue: float
    seeds: int = 0
    pvalue_holm: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "n": self.n,
            "seeds": self.seeds,
            "mean_diff": _num(self.mean_diff),
            "ci95": [_num(self.ci[0]), _num(self.ci[1])],
            "statistic": _num(self.statistic),
            "pvalue": _num(self.pvalue),
            "pvalue_holm": _num(self.pvalue_holm),
        }


NO_TEST = PairedTest("none", 0, float("nan"), float("nan"), float("nan"))
MIN_SEEDS_FOR_SEED_TEST = 3
BOOTSTRAP_RESAMPLES = 10_000


def paired_ttest(a: Sequence[float], b: Sequence[float], kind: str) -> PairedTest:
    """``scipy.stats.ttest_rel(a, b)``; NaN statistic and p-value when every pair is equal."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) < 2:
        return PairedTest("none", len(a), float("nan"), float("nan"), float("nan"))
    diff = a - b
    seeds = len(a) if kind == "seeds" else 0
    if np.all(diff == diff[0]):  # zero variance: the t statistic is undefined
        return PairedTest(kind, len(a), float(diff.mean()), float("nan"), float("nan"), seeds)
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(0.95)
    return PairedTest(
        kind,
        len(a),
        float(diff.mean()),
        float(result.statistic),
        float(result.pvalue),
        seeds,
        ci=(float(ci.low), float(ci.high)),
    )


def paired_bootstrap(
    row: Sequence[Sequence[float]],
    base: Sequence[Sequence[float]],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """Two-sided paired bootstrap test of ``mean over seeds of mean(row_s - base_s)``.

    ``row[s]`` and ``base[s]`` are per-example values (e.g. hit@K) of seed ``s`` on the same
    inputs in the same order. Each resample draws every seed's examples with replacement
    (within that seed, keeping the pairs) and averages the seeds' mean differences. The
    p-value is the share of resampled statistics, centred on the observed one, at least as far
    from zero as the observed one, ``(1 + count) / (1 + n_resamples)``; ``ci`` is the
    percentile 95% interval. Drawing with replacement only fixes how often each distinct
    difference is drawn, so the resampled means are drawn as multinomial counts (exact, and
    fast for hit indicators).
    """
    if len(row) != len(base) or not row:
        return NO_TEST
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    observed, n = 0.0, 0
    for a, b in zip(row, base, strict=True):
        diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        if len(diff) == 0:
            return NO_TEST
        values, counts = np.unique(diff, return_counts=True)
        draws = rng.multinomial(len(diff), counts / len(diff), size=n_resamples)
        total += draws @ values / len(diff)
        observed += float(diff.mean())
        n += len(diff)
    total /= len(row)
    observed /= len(row)
    extreme = np.abs(total - observed) >= abs(observed) - 1e-12
    pvalue = (1.0 + extreme.sum()) / (1.0 + n_resamples)
    low, high = np.percentile(total, [2.5, 97.5])
    return PairedTest(
        "bootstrap",
        n,
        observed,
        float("nan"),
        float(min(pvalue, 1.0)),
        len(row),
        ci=(float(low), float(high)),
    )


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (statsmodels); NaN entries stay NaN, out of the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    finite = ~np.isnan(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method="holm")[1]
    return out


def compare_to_baseline(
    row: dict[str, pl.DataFrame | None],
    base: dict[str, pl.DataFrame | None],
    row_values: dict[str, float],
    base_values: dict[str, float],
    k: int,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[PairedTest]:
    """Tests of a row against its baseline: the headline test first, then the other one.

    Parameters
    ----------
    row, base : dict
        Seed label -> the run's predictions for one method and task (columns ``input``,
        ``target``, ``rank``), or None when the run has none.
    row_values, base_values : dict
        Seed label -> the run's Recall@K (for the test over seeds).
    k : int
        Cut-off of the hit indicators.
    n_resamples : int
        Bootstrap resamples.

    Returns
    -------
    list of PairedTest
        ``[seeds t-test, bootstrap]`` with >= 3 common seeds (the bootstrap only when the
        inputs pair), ``[bootstrap]`` with fewer, ``[NO_TEST]`` when neither applies.
    """
    common = [s for s in row if s in base]
    pairable = bool(common) and all(
        row[s] is not None
        and base[s] is not None
        and row[s].height == base[s].height
        and row[s].select("input", "target").equals(base[s].select("input", "target"))
        for s in common
    )
    bootstrap = None
    if pairable:
        bootstrap = paired_bootstrap(
            [hits_at_k(row[s]["rank"].to_numpy(), k) for s in common],
            [hits_at_k(base[s]["rank"].to_numpy(), k) for s in common],
            n_resamples,
        )
    seeds = [
        s
        for s in row_values
        if s in base_values and not math.isnan(row_values[s]) and not math.isnan(base_values[s])
    ]
    out = []
    if len(seeds) >= MIN_SEEDS_FOR_SEED_TEST:
        out.append(
            paired_ttest([row_values[s] for s in seeds], [base_values[s] for s in seeds], "seeds")
        )
    if bootstrap is not None:
        out.append(bootstrap)
    return out or [NO_TEST]


def head_items(train_lists: Sequence[Sequence[int]], share: float = 0.5) -> set[int]:
    """The most popular items that together account for ``share`` of training interactions.

    Popularity is the number of occurrences in the training sequences; ties are broken by item
    index so the split is deterministic. The head is the shortest such prefix.
    """
    if not 0 < share <= 1:
        raise ConfigError(f"--head-share {share}: must be in (0, 1]")
    flat = np.fromiter((i for seq in train_lists for i in seq), dtype=np.int64)
    if len(flat) == 0:
        return set()
    counts = np.bincount(flat)
    order = np.lexsort((np.arange(len(counts)), -counts))  # by count desc, then index asc
    cumulative = np.cumsum(counts[order])
    n_head = int(np.searchsorted(cumulative, share * cumulative[-1] - 1e-9) + 1)
    return {int(i) for i in order[:n_head] if counts[i] > 0}


def head_torso_recall(frame: pl.DataFrame, head: set[int], k: int) -> dict[str, tuple[float, int]]:
    """Recall@K of recommendation examples whose target is a head vs a torso item.

    ``frame`` has ``target`` and ``rank`` columns; returns ``{"head": (recall, n), "torso": ...}``.
    """
    targets = frame["target"].to_numpy()
    hits = hits_at_k(frame["rank"].to_numpy(), k)
    in_head = np.isin(targets, np.fromiter(head, dtype=np.int64, count=len(head)))
    out = {}
    for part, mask in (("head", in_head), ("torso", ~in_head)):
        n = int(mask.sum())
        out[part] = (float(hits[mask].mean()) if n else float("nan"), n)
    return out


# ---------------------------------------------------------------------------------------------
# Loading a results folder
# ---------------------------------------------------------------------------------------------


@dataclass
class CellResult:
    """One cell of a grid as found on disk."""

    name: str
    group: str
    labels: dict[str, str]
    seed: str
    run_dir: Path
    status: str
    metrics: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    _predictions: pl.DataFrame | None = field(default=None, repr=False)

    def metric(self, method: str, task: str, name: str) -> float:
        value = ((self.metrics or {}).get(method) or {}).get(task, {}).get(name)
        return float("nan") if value is None else float(value)

    def stage_path(self, stage: str) -> Path | None:
        path = ((self.manifest or {}).get("stages", {}).get(stage) or {}).get("path")
        return Path(path) if path else None

    def predictions(self, method: str, task: str) -> pl.DataFrame | None:
        """This run's per-example predictions for one method and task (or None)."""
        if self._predictions is None:
            path = self.run_dir / "predictions.parquet"
            if not path.exists():
                return None
            self._predictions = pl.read_parquet(
                path, columns=["method", "task", "input", "target", "rank"]
            )
        frame = self._predictions.filter(
            (pl.col("method") == method) & (pl.col("task") == task)
        ).select("input", "target", "rank")
        return frame if frame.height else None


@dataclass
class Study:
    """A grid's results folder: its description and its cells."""

    results_dir: Path
    info: dict[str, Any]
    cells: list[CellResult]

    @property
    def group_over(self) -> str | None:
        return self.info.get("group_over")

    def groups(self) -> dict[str, list[CellResult]]:
        """Finished cells by group, groups in grid order."""
        out: dict[str, list[CellResult]] = {}
        for cell in self.cells:
            if cell.status == "done":
                out.setdefault(cell.group, []).append(cell)
        return out

    def group_labels(self, group: str) -> dict[str, str]:
        for cell in self.cells:
            if cell.group == group:
                return {k: v for k, v in cell.labels.items() if k != self.group_over}
        return {}

    def baseline_of(self, group: str) -> str | None:
        """The group a row is tested against (None without a baseline in the grid)."""
        baseline = self.info.get("baseline") or {}
        if not baseline:
            return None
        labels = self.group_labels(group) | baseline
        return "__".join(labels.values()) or None

    def varying_axes(self) -> list[str]:
        """Axes (except the seed axis) with more than one value: the table's label columns."""
        return [
            a["name"]
            for a in self.info["axes"]
            if a["name"] != self.group_over and len(a["labels"]) > 1
        ]

    def fixed_axes(self) -> dict[str, str]:
        return {
            a["name"]: a["labels"][0]
            for a in self.info["axes"]
            if a["name"] != self.group_over and len(a["labels"]) == 1
        }


def load_study(results_dir: str | Path) -> Study:
    """Read ``grid.json`` and every cell's run directory under ``results_dir``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: no such results folder")
    info = read_grid_json(results_dir)
    records = {r["cell"]: r for r in write_results(results_dir)}
    group_over = info.get("group_over")
    regroup = False
    axis_names = [a["name"] for a in info.get("axes", [])]
    if group_over is None:  # a grid without group_over still averages over its seed axis
        group_over = next((a for a in SEED_AXES if a in axis_names), None)
        if group_over is not None:
            info = info | {"group_over": group_over}
            regroup = True
    cells = []
    for entry in info["cells"]:
        record = records[entry["name"]]
        run_dir = results_dir / entry["name"]
        group = entry["group"]
        if regroup:
            rest = [v for a, v in entry["labels"].items() if a != group_over]
            group = "__".join(rest) or info["name"]
        cell = CellResult(
            name=entry["name"],
            group=group,
            labels=entry["labels"],
            seed=entry["labels"].get(group_over, "") if group_over else "",
            run_dir=run_dir,
            status=record["status"],
            metrics=record.get("metrics"),
        )
        if (run_dir / "config.json").exists():
            cell.config = read_json(run_dir / "config.json")
        if (run_dir / "manifest.json").exists():
            cell.manifest = read_json(run_dir / "manifest.json")
        cells.append(cell)
    return Study(results_dir, info, cells)


def non_seed_differences(cells: list[CellResult]) -> list[str]:
    """Config keys (dotted) that differ between the runs of one row other than the seeds.

    Empty when the row's runs differ only in ``seed`` / ``train.seed`` / ``name``, i.e. when
    the row is what it claims: one setting over training seeds.
    """
    flats = [_flatten_config(c.config) for c in cells if c.config is not None]
    keys = sorted({k for f in flats for k in f} - set(SEED_AXES) - {"name"})
    return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]


def _flatten_config(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def default_k(study: Study) -> int:
    """30 when every finished cell has Recall@30 (the paper's cut-off), else the largest K."""
    common: set[int] | None = None
    for cell in study.cells:
        if cell.status != "done" or not cell.metrics:
            continue
        ks = {
            int(name.split("@", 1)[1])
            for tasks in cell.metrics.values()
            for values in tasks.values()
            for name in values
            if name.startswith("recall@") and name.split("@", 1)[1].isdigit()
        }
        common = ks if common is None else common & ks
    if not common:
        return 30
    return 30 if 30 in common else max(common)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


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


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _values(cells: list[CellResult], method: str, task: str, name: str) -> dict[str, float]:
    return {c.seed: c.metric(method, task, name) for c in cells}


def _md_table(header: list[str], rows: list[list[str]]) -> str:
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
            "mean": {k: _num(v[0]) for k, v in self.values.items()},
            "std": {k: _num(v[1]) for k, v in self.values.items()},
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
    rows = []
    for group, cells in groups.items():
        values = {
            f"{task} {m}@{k}": mean_std(list(_values(cells, GENERATIVE, task, f"{m}@{k}").values()))
            for task in TASKS
            for m in ("recall", "ndcg")
        }
        base = study.baseline_of(group)
        tests: dict[str, PairedTest] = {}
        others: dict[str, list[PairedTest]] = {}
        if base is not None and base != group and base in groups:
            for task in TASKS:
                found = compare_to_baseline(
                    {c.seed: c.predictions(GENERATIVE, task) for c in cells},
                    {c.seed: c.predictions(GENERATIVE, task) for c in groups[base]},
                    _values(cells, GENERATIVE, task, f"recall@{k}"),
                    _values(groups[base], GENERATIVE, task, f"recall@{k}"),
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
    header = axes or ["cell"]
    header = header + [
        "seeds",
        f"search R@{k}",
        f"search N@{k}",
        f"rec R@{k}",
        f"rec N@{k}",
        "p search (Holm)",
        "p rec (Holm)",
    ]
    body = []
    for row in rows:
        label_cells = [row.labels.get(a, "") for a in axes] if axes else [row.group]
        if row.is_baseline:
            label_cells[0] = f"**{label_cells[0]}**"
        p_cells = (
            ["baseline", "baseline"]
            if row.is_baseline
            else [fmt_p(row.tests.get(task)) for task in TASKS]
        )
        body.append(
            label_cells
            + [str(len(row.seeds))]
            + [fmt_mean_std(*row.values[f"{t} {m}@{k}"]) for t in TASKS for m in ("recall", "ndcg")]
            + p_cells
        )
    return _md_table(header, body)


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
    return _md_table(header, body)


def _collapse(study: Study, per_group: dict[str, tuple]) -> list[tuple[str, tuple]]:
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
    body = []
    for method in methods:
        per_group = {}
        for group, cells in groups.items():
            key = []
            for task in TASKS:
                for m in ("recall", "ndcg"):
                    vals = _values(cells, method, task, f"{m}@{k}")
                    key.append(tuple(sorted(vals.items())))
            if any(any(not math.isnan(v) for _, v in part) for part in key):
                per_group[group] = tuple(key)
        for label, key in _collapse(study, per_group):
            cells_text = [fmt_mean_std(*mean_std([v for _, v in part])) for part in key]
            body.append([method, label, str(len(key[0]))] + cells_text)
    if not body:
        return "No reference points in these runs."
    header = [
        "method",
        "rows",
        "seeds",
        f"search R@{k}",
        f"search N@{k}",
        f"rec R@{k}",
        f"rec N@{k}",
    ]
    return _md_table(header, body)


# ---------------------------------------------------------------------------------------------
# Head / torso
# ---------------------------------------------------------------------------------------------


@dataclass
class HeadTorso:
    """Head/torso recommendation recall per group (mean, std over seeds) and the split's size."""

    rows: list[dict[str, Any]]
    head_item_share: list[float]
    head_target_share: list[float]


def head_torso(study: Study, k: int, share: float) -> HeadTorso:
    """Split every run's recommendation examples by target popularity (see module docstring)."""
    head_cache: dict[Path, set[int]] = {}
    item_share: list[float] = []
    target_share: list[float] = []

    def head_for(cell: CellResult) -> set[int] | None:
        splits = cell.stage_path("splits")
        if splits is None or not (splits / "sequences.parquet").exists():
            return None
        if splits not in head_cache:
            seqs = pl.read_parquet(splits / "sequences.parquet", columns=["train"])
            train = seqs["train"].to_list()
            head_cache[splits] = head_items(train, share)
            n_items = _n_items(cell) or (max((max(s) for s in train if s), default=-1) + 1)
            item_share.append(len(head_cache[splits]) / max(n_items, 1))
        return head_cache[splits]

    rows = []
    methods = [GENERATIVE] + [m for m in REFERENCE_ORDER if m != "dense-user"]
    for group, cells in study.groups().items():
        for method in methods:
            per_seed: dict[str, dict[str, tuple[float, int]]] = {}
            for cell in cells:
                frame = cell.predictions(method, "rec")
                head = head_for(cell)
                if frame is None or head is None:
                    continue
                per_seed[cell.seed] = head_torso_recall(frame, head, k)
                if method == GENERATIVE:
                    n_head = per_seed[cell.seed]["head"][1]
                    target_share.append(n_head / max(frame.height, 1))
            if not per_seed:
                continue
            row = {"group": group, "method": method, "seeds": sorted(per_seed)}
            for part in ("head", "torso"):
                row[part] = mean_std([v[part][0] for v in per_seed.values()])
                row[f"n_{part}"] = float(np.mean([v[part][1] for v in per_seed.values()]))
            rows.append(row)
    return HeadTorso(rows, item_share, target_share)


def _n_items(cell: CellResult) -> int | None:
    data = cell.stage_path("data")
    if data is None or not (data / "items.parquet").exists():
        return None
    return pl.scan_parquet(data / "items.parquet").select(pl.len()).collect().item()


def head_torso_table(study: Study, result: HeadTorso, k: int) -> str:
    """Generator rows per group, then the reference methods with identical rows merged."""
    body = []
    for row in (r for r in result.rows if r["method"] == GENERATIVE):
        body.append(
            [
                row["group"],
                GENERATIVE,
                fmt_mean_std(*row["head"]),
                fmt_mean_std(*row["torso"]),
                f"{row['n_head']:.0f}",
                f"{row['n_torso']:.0f}",
            ]
        )
    methods = []
    for r in result.rows:
        if r["method"] != GENERATIVE and r["method"] not in methods:
            methods.append(r["method"])
    for method in methods:
        per_group = {
            r["group"]: (r["head"], r["torso"], r["n_head"], r["n_torso"])
            for r in result.rows
            if r["method"] == method
        }
        for label, key in _collapse(study, per_group):
            head, torso, n_head, n_torso = key
            body.append(
                [
                    label,
                    method,
                    fmt_mean_std(*head),
                    fmt_mean_std(*torso),
                    f"{n_head:.0f}",
                    f"{n_torso:.0f}",
                ]
            )
    if not body:
        return "No recommendation predictions to split."
    header = ["row", "method", f"head R@{k}", f"torso R@{k}", "n head", "n torso"]
    return _md_table(header, body)


# ---------------------------------------------------------------------------------------------
# Diagnostics and cost
# ---------------------------------------------------------------------------------------------


def flatten_diagnostics(diag: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Scalars of a diagnostics.json as ``{dotted key: text}``.

    Short lists of numbers become ``a / b``; a short list of records (one per level) becomes
    one ``a / b`` entry per field. Anything longer is left to the run's own report.
    """
    out: dict[str, str] = {}
    for key, value in diag.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_diagnostics(value, name + "."))
        elif isinstance(value, bool) or value is None:
            out[name] = str(value)
        elif isinstance(value, (int, float)):
            out[name] = _fmt_number(value)
        elif isinstance(value, str) and len(value) <= 40:
            out[name] = value
        elif isinstance(value, list) and 0 < len(value) <= 8:
            if all(_is_number(v) for v in value):
                out[name] = " / ".join(_fmt_number(v) for v in value)
            elif all(isinstance(v, dict) for v in value):
                fields = [f for f in value[0] if all(_is_number(v.get(f)) for v in value)]
                for f in fields:
                    out[f"{name}.{f}"] = " / ".join(_fmt_number(v[f]) for v in value)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt_number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "—"
    return f"{value:.4g}"


def diagnostics_table(study: Study) -> str:
    """One row per (cell, ID space): the quantizer diagnostics the ids stage recorded."""
    rows: list[tuple[str, str, dict[str, str]]] = []
    seen_paths: dict[Path, str] = {}
    for cell in study.cells:
        ids = cell.stage_path("ids")
        if cell.status != "done" or ids is None:
            continue
        for diag in sorted(ids.glob("*/diagnostics.json")):
            try:
                flat = flatten_diagnostics(read_json(diag))
            except (OSError, ValueError):
                continue
            shared = seen_paths.get(diag)
            seen_paths.setdefault(diag, cell.name)
            flat = flat | ({"same IDs as": shared} if shared else {})
            rows.append((cell.name, diag.parent.name, flat))
    if not rows:
        return "No diagnostics.json found in the cells' ids stage folders."
    keys: list[str] = []
    for _, _, flat in rows:
        keys += [k for k in flat if k not in keys and k != "same IDs as"]
    preferred = [k for p in PREFERRED_DIAGNOSTICS for k in keys if p in k.lower()]
    preferred = list(dict.fromkeys(preferred))  # first match wins, no duplicates
    chosen = (preferred + [k for k in keys if k not in preferred])[:MAX_DIAGNOSTIC_COLUMNS]
    header = ["cell", "space"] + chosen
    body = [[name, space] + [flat.get(k, "—") for k in chosen] for name, space, flat in rows]
    note = ""
    if len(keys) > len(chosen):
        note = (
            f"\n\n{len(keys) - len(chosen)} more diagnostics per space are in each cell's "
            "`report.md`."
        )
    return _md_table(header, body) + note


def cost_table(study: Study) -> str:
    """Wall time of the stages each cell computed itself (cached stages cost nothing)."""
    body = []
    distinct: dict[str, float] = {}  # stage folder -> seconds it took to build
    built: dict[str | None, float | None] = {}  # cached stage folder -> its _stage.json seconds
    for cell in study.cells:
        if cell.manifest is None:
            continue
        info = cell.manifest.get("stages", {})
        cells = []
        total = 0.0
        with_cached = 0.0
        for stage in STAGES:
            s = info.get(stage)
            if s is None:
                cells.append("—")
                continue
            path = s.get("path")
            if s.get("cached"):
                if path not in built:
                    built[path] = _built_seconds(path)
                seconds = built[path]
                with_cached += seconds or 0.0
                cells.append("cached" if seconds is None else f"({seconds:.0f})")
            else:
                seconds = float(s.get("seconds") or 0)
                total += seconds
                with_cached += seconds
                cells.append(f"{seconds:.0f}")
            if path and seconds is not None:
                distinct[path] = float(seconds)
        peaks = [s.get("peak_rss_mb") for s in info.values() if s.get("peak_rss_mb")]
        body.append(
            [cell.name, cell.status]
            + cells
            + [f"{total:.0f}", f"{with_cached:.0f}", f"{max(peaks):.0f}" if peaks else "—"]
        )
    if not body:
        return "No cell has started yet."
    header = ["cell", "status"] + STAGES + ["this cell s", "with cached s", "peak RSS MB"]
    footer = (
        f"\n\nWhole grid from an empty cache, one cell at a time: "
        f"{sum(distinct.values()) / 60:.1f} min (each of the {len(distinct)} distinct stage "
        "folders counted once, at the seconds it took to build)."
    )
    return _md_table(header, body) + footer


def _built_seconds(path: str | None) -> float | None:
    """Seconds a cached stage took when it was built (from its ``_stage.json``)."""
    if not path or not (Path(path) / DONE_FILE).exists():
        return None
    try:
        return float(read_json(Path(path) / DONE_FILE).get("seconds") or 0.0)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Held-out targets and ID collisions
# ---------------------------------------------------------------------------------------------


def target_collisions(
    codes: np.ndarray, levels: int, disambiguation: bool, targets: np.ndarray, hits: np.ndarray
) -> dict[str, float]:
    """How the held-out targets sit in the ID space, and the generator's hit rate on each part.

    Parameters
    ----------
    codes : (n_items, n_cols) int array, the IDs (disambiguation column included, if any).
    levels : number of quantizer levels (the columns that carry meaning).
    disambiguation : whether a disambiguation column follows the levels.
    targets : item index of every held-out example.
    hits : 1.0 where the generator ranked that example's target in its top K.

    Returns the share of targets whose quantizer code (the first ``levels`` columns) is shared
    with another item, the mean number of items per target's code, the share of targets a
    decoder can reach at all (without a disambiguation token only the lowest-index item of each
    code is reachable: see ``PrefixTrie``), and Recall on targets with a shared vs a unique code.
    """
    codes = np.asarray(codes)[:, :levels]
    targets = np.asarray(targets, dtype=np.int64)
    hits = np.asarray(hits, dtype=float)
    _, first, inverse, counts = np.unique(
        codes, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    size = counts[inverse[targets]]
    shared = size > 1
    reachable = (
        np.ones(len(targets), dtype=bool) if disambiguation else first[inverse[targets]] == targets
    )
    return {
        "n": float(len(targets)),
        "shared_code_share": float(shared.mean()) if len(targets) else float("nan"),
        "items_per_code": float(size.mean()) if len(targets) else float("nan"),
        "reachable_share": float(reachable.mean()) if len(targets) else float("nan"),
        "recall_shared": float(hits[shared].mean()) if shared.any() else float("nan"),
        "recall_unique": float(hits[~shared].mean()) if (~shared).any() else float("nan"),
    }


def collision_rows(study: Study, k: int) -> list[dict[str, Any]]:
    """:func:`target_collisions` for every group and task, averaged over the finished seeds."""
    from semid.quantizers.ids import load_ids

    rows = []
    for group, cells in study.groups().items():
        per_task: dict[str, list[dict[str, float]]] = {}
        for cell in cells:
            ids = cell.stage_path("ids")
            if cell.status != "done" or ids is None or not ids.exists():
                continue
            try:
                spaces = load_ids(ids)
            except SemidError:
                continue
            for task in ("search", "rec"):
                frame = cell.predictions(GENERATIVE, task)
                space = spaces.get("item") or spaces.get(task)
                if frame is None or space is None:
                    continue
                per_task.setdefault(task, []).append(
                    target_collisions(
                        space.codes,
                        space.levels,
                        space.disambiguation,
                        frame["target"].to_numpy(),
                        hits_at_k(frame["rank"].to_numpy(), k),
                    )
                )
        for task, found in per_task.items():
            mean = {key: mean_std([f[key] for f in found])[0] for key in found[0]}
            rows.append({"group": group, "task": task, "seeds": len(found), **mean})
    return rows


def collisions_table(rows: list[dict[str, Any]], k: int) -> str:
    """Markdown table of :func:`collision_rows`."""
    if not rows:
        return "No ID spaces with generator predictions found."
    body = [
        [
            r["group"],
            r["task"],
            f"{r['shared_code_share']:.3f}",
            f"{r['items_per_code']:.1f}",
            f"{r['reachable_share']:.3f}",
            "—" if math.isnan(r["recall_shared"]) else f"{r['recall_shared']:.4f}",
            "—" if math.isnan(r["recall_unique"]) else f"{r['recall_unique']:.4f}",
        ]
        for r in rows
    ]
    header = [
        "row",
        "task",
        "targets with a shared code",
        "items per target's code",
        "targets reachable",
        f"R@{k} shared code",
        f"R@{k} unique code",
    ]
    return _md_table(header, body)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def write_study_report(
    results_dir: str | Path, k: int | None = None, head_share: float = 0.5
) -> Path:
    """Write ``report.md``, ``tradeoff.png`` and ``study.json`` into a grid's results folder."""
    study = load_study(results_dir)
    results_dir = study.results_dir
    k = k or default_k(study)
    info = study.info
    rows = row_stats(study, k)
    ht = head_torso(study, k, head_share)
    collisions = collision_rows(study, k)

    points = [
        TradeoffPoint(
            label=row.group,
            x=row.values[f"search recall@{k}"][0],
            y=row.values[f"rec recall@{k}"][0],
            xerr=row.values[f"search recall@{k}"][1],
            yerr=row.values[f"rec recall@{k}"][1],
            highlight=row.is_baseline,
        )
        for row in rows
    ]
    plot = None
    if any(not (math.isnan(p.x) or math.isnan(p.y)) for p in points):
        plot = tradeoff_scatter(
            points,
            results_dir / "tradeoff.png",
            xlabel=f"search Recall@{k}",
            ylabel=f"recommendation Recall@{k}",
            title=f"{info['name']}: search vs recommendation (mean ± std over seeds)",
        )

    n_done = sum(c.status == "done" for c in study.cells)
    failed = [c for c in study.cells if c.status == "failed"]
    fixed = study.fixed_axes()
    baseline = info.get("baseline") or {}
    group_over = study.group_over
    text = [
        f"# Study `{info['name']}`"
        + (f" (preset `{info['preset']}`)" if info.get("preset") else "")
        + "\n"
    ]
    if info.get("description"):
        text.append(info["description"] + "\n")
    text.append(
        f"{n_done} of {len(study.cells)} cells finished"
        + (f", {len(failed)} failed" if failed else "")
        + f". Grid file: `{info.get('source', '?')}`. "
        + (
            f"Rows average over training seeds (`{group_over}`; mean ± sample std, ddof=1; the "
            "*seeds* column gives their number per row). "
            if group_over
            else "One run per row (no seed axis): no seed variance is measured. "
        )
        + _seed_note(rows)
        + ("All rows: " + ", ".join(f"{a}={v}" for a, v in fixed.items()) + ". " if fixed else "")
        + "Every number below is read from the cells' run directories.\n"
    )
    text += [
        "## Results\n",
        f"Generator Recall@{k} (R) and NDCG@{k} (N) on held-out search queries and on each "
        "user's held-out next item. "
        + (
            "p: Holm-corrected p-value against the baseline row ("
            + ", ".join(f"{a}={v}" for a, v in baseline.items())
            + f", in bold): a paired t-test over seeds (>= {MIN_SEEDS_FOR_SEED_TEST} common "
            "seeds), else a paired bootstrap of examples within each seed (‡: counts "
            "test-sample noise only, not training-seed variance). See *Statistical tests*.\n"
            if baseline
            else "\n"
        ),
        results_table(study, rows, k) + "\n",
        "### Reference points\n",
        "Non-generative methods scored on the same inputs; rows with identical results are "
        "merged.\n",
        reference_table(study, k) + "\n",
        "## Search vs recommendation\n",
        (
            "![trade-off](tradeoff.png)\n\nOne point per row (mean over seeds; bars: std over "
            "seeds); the baseline row is the black square.\n"
            if plot
            else "No finished cells.\n"
        ),
        "## Recommendation by item popularity\n",
        f"Head = the most interacted items that account for {head_share:.0%} of the training "
        "interactions (popularity counted in each run's training sequences); torso = every "
        "other item. "
        + (
            f"The head holds {100 * np.mean(ht.head_item_share):.1f}% of the catalogue and "
            f"{100 * np.mean(ht.head_target_share):.1f}% of the recommendation targets "
            "(means over the splits). "
            if ht.head_item_share and ht.head_target_share
            else ""
        )
        + "n = examples per seed.\n",
        head_torso_table(study, ht, k) + "\n",
        "## Held-out targets and ID collisions\n",
        "Code = the quantizer's levels without the disambiguation token. *Targets with a shared "
        "code*: held-out targets whose code another item also has (the generator must then pick "
        "the item by its disambiguation token, which carries no meaning); *items per target's "
        "code*: mean over targets; *targets reachable*: share a decoder can return at all "
        "(without a disambiguation token only one item per code is decodable); Recall split by "
        "whether the target's code is shared. Means over seeds.\n",
        collisions_table(collisions, k) + "\n",
        "## Statistical tests\n",
        f"Each row against its baseline row (same labels except the baseline axes), on hit@{k}, "
        "two-sided. *seeds*: paired t-test over the common training seeds "
        f"(`scipy.stats.ttest_rel` on per-seed Recall@{k}; the headline test whenever there are "
        f">= {MIN_SEEDS_FOR_SEED_TEST} common seeds): a seed is a trained model, so the test "
        "counts training-seed variance (and the test-sample noise inside each seed's mean). "
        f"*bootstrap*: paired bootstrap ({BOOTSTRAP_RESAMPLES} resamples, fixed seed) that "
        "resamples the held-out examples within each seed, keeping each example's pair (both "
        "runs of a seed are scored on identical inputs), and averages the per-seed differences "
        "over seeds; it counts test-sample noise only and is the headline test only with fewer "
        f"than {MIN_SEEDS_FOR_SEED_TEST} seeds (‡). *seeds* column: common seeds; *n*: pairs. "
        "**p (Holm)**: Holm–Bonferroni correction (`statsmodels` `multipletests`, "
        "method=holm) over all headline comparisons of the results table (every row and "
        "task); the secondary bootstrap p-values are corrected as a family of their own. "
        "The results table shows the corrected headline p-values.\n",
        tests_table(rows, k) + "\n",
        "## Semantic-ID diagnostics\n",
        diagnostics_table(study) + "\n",
        "## Cost\n",
        "Seconds of the stages each cell computed itself; `(N)` = reused from the stage cache, "
        "N = the seconds it took when it was built (by an earlier cell or grid). *this cell s*: "
        "what the cell computed; *with cached s*: the cell's full cost from scratch. Cells that "
        "ran side by side (`--jobs`) or beside other work share the CPU, so their seconds are "
        "upper bounds.\n",
        cost_table(study) + "\n",
    ]
    if failed:
        text += [
            "## Failed cells\n",
            _md_table(["cell", "error"], [[c.name, _error(c)] for c in failed]) + "\n",
        ]
    path = results_dir / "report.md"
    write_text(path, "\n".join(text))
    write_json(
        results_dir / "study.json",
        {
            "grid": info["name"],
            "preset": info.get("preset"),
            "k": k,
            "head_share": head_share,
            "rows": [row.to_json() for row in rows],
            "head_torso": [
                {**r, "head": [_num(x) for x in r["head"]], "torso": [_num(x) for x in r["torso"]]}
                for r in ht.rows
            ],
            "collisions": [
                {kk: _num(v) if isinstance(v, float) else v for kk, v in r.items()}
                for r in collisions
            ],
        },
    )
    return path


def _seed_note(rows: list[RowStats]) -> str:
    """A warning when a row averages runs that differ in more than their seeds."""
    mixed = [
        f"{r.group} ({', '.join(r.non_seed_differences)})" for r in rows if r.non_seed_differences
    ]
    if not mixed:
        return ""
    return "**Rows whose runs differ in more than the seed:** " + "; ".join(mixed) + ". "


def _error(cell: CellResult) -> str:
    path = cell.run_dir / CELL_FAILED_FILE
    return read_json(path).get("error", "?").replace("|", "/") if path.exists() else "?"
