"""Statistics of a grid report: means over seeds, paired tests, Holm, head/torso (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from semid.errors import ConfigError


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
            "mean_diff": finite_or_none(self.mean_diff),
            "ci95": [finite_or_none(self.ci[0]), finite_or_none(self.ci[1])],
            "statistic": finite_or_none(self.statistic),
            "pvalue": finite_or_none(self.pvalue),
            "pvalue_holm": finite_or_none(self.pvalue_holm),
        }


NO_TEST = PairedTest("none", 0, float("nan"), float("nan"), float("nan"))
MIN_SEEDS_FOR_SEED_TEST = 3
BOOTSTRAP_RESAMPLES = 10_000


def paired_ttest(a: Sequence[float], b: Sequence[float], kind: str) -> PairedTest:
    """``scipy.stats.ttest_rel(a, b)``; NaN statistic and p-value when every pair is equal."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if len(x) < 2:
        return PairedTest("none", len(x), float("nan"), float("nan"), float("nan"))
    diff = x - y
    seeds = len(x) if kind == "seeds" else 0
    if np.all(diff == diff[0]):  # zero variance: the t statistic is undefined
        return PairedTest(kind, len(a), float(diff.mean()), float("nan"), float("nan"), seeds)
    result = stats.ttest_rel(x, y)
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
    row: Sequence[Sequence[float] | np.ndarray],
    base: Sequence[Sequence[float] | np.ndarray],
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
    pairs = [(row[s], base[s]) for s in row if s in base]
    present = [(r, b) for r, b in pairs if r is not None and b is not None]
    pairable = (
        bool(pairs)
        and len(present) == len(pairs)
        and all(
            r.height == b.height and r.select("input", "target").equals(b.select("input", "target"))
            for r, b in present
        )
    )
    bootstrap = None
    if pairable:
        bootstrap = paired_bootstrap(
            [hits_at_k(r["rank"].to_numpy(), k) for r, _ in present],
            [hits_at_k(b["rank"].to_numpy(), k) for _, b in present],
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


def finite_or_none(value: float) -> float | None:
    """A float for JSON: None for NaN (or None)."""
    return None if value is None or math.isnan(value) else float(value)
