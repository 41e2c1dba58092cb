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
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semid.grid import CELL_FAILED_FILE
from semid.io import atomic_path, read_json, write_json, write_text
from semid.reports.breakdowns import (
    HeadTorso,
    collision_rows,
    collisions_table,
    cost_table,
    diagnostics_table,
    head_torso,
    head_torso_table,
    strata_rows,
    strata_table,
)
from semid.reports.cells import CellResult, Study, default_k, load_study
from semid.reports.plots import TradeoffPoint, tradeoff_scatter
from semid.reports.query_sets import query_set_rows, query_sets_json, query_sets_table
from semid.reports.scaling import scaling_points, scaling_section
from semid.reports.stats import BOOTSTRAP_RESAMPLES, MIN_SEEDS_FOR_SEED_TEST, finite_or_none
from semid.reports.tables import (
    RowStats,
    md_table,
    reference_table,
    results_table,
    row_stats,
    tests_table,
)

# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def write_study_report(
    results_dir: str | Path, k: int | None = None, head_share: float = 0.5
) -> Path:
    """Write ``report.md``, ``tradeoff.png`` (search and rec), ``scaling.png`` (an axis that sets
    the catalogue size: :mod:`semid.reports.scaling`) and ``study.json`` into a grid's results
    folder."""
    study = load_study(results_dir)
    results_dir = study.results_dir
    k = k or default_k(study)
    rows = row_stats(study, k)
    ht = head_torso(study, k, head_share)
    collisions = collision_rows(study, k)
    strata = strata_rows(study, k)
    query_sets = query_set_rows(study, k)
    scaling = scaling_points(study, rows, k)
    plot = _tradeoff_plot(study, rows, k)
    failed = [c for c in study.cells if c.status == "failed"]
    text = (
        _intro(study, rows, failed)
        + _results_section(study, rows, k)
        + scaling_section(study, scaling, k)
        + _breakdown_sections(study, ht, collisions, strata, k, head_share, plot is not None)
        + _query_set_section(query_sets, k)
        + _method_sections(study, rows, k)
    )
    if failed:
        text += [
            "## Failed cells\n",
            md_table(["cell", "error"], [[c.name, _error(c)] for c in failed]) + "\n",
        ]
    path = results_dir / "report.md"
    write_text(path, "\n".join(text))
    write_json(
        results_dir / "study.json",
        {
            "grid": study.info["name"],
            "preset": study.info.get("preset"),
            "k": k,
            "head_share": head_share,
            "rows": [row.to_json() for row in rows],
            "head_torso": [
                {
                    **r,
                    "head": [finite_or_none(x) for x in r["head"]],
                    "torso": [finite_or_none(x) for x in r["torso"]],
                }
                for r in ht.rows
            ],
            "strata": strata.to_dicts(),
            "query_sets": query_sets_json(query_sets),
            "collisions": [
                {kk: finite_or_none(v) if isinstance(v, float) else v for kk, v in r.items()}
                for r in collisions
            ],
            "scaling": [p.to_json() for p in scaling],
        },
    )
    return path


def _tradeoff_plot(study: Study, rows: list[RowStats], k: int) -> Path | None:
    """``tradeoff.png``: one point per row (None when no row has both recalls)."""
    if "rec" not in study.tasks():
        return None
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
    if not any(not (math.isnan(p.x) or math.isnan(p.y)) for p in points):
        return None
    return tradeoff_scatter(
        points,
        study.results_dir / "tradeoff.png",
        xlabel=f"search Recall@{k}",
        ylabel=f"recommendation Recall@{k}",
        title=f"{study.info['name']}: search vs recommendation (mean ± std over seeds)",
    )


def _intro(study: Study, rows: list[RowStats], failed: list[CellResult]) -> list[str]:
    info = study.info
    n_done = sum(c.status == "done" for c in study.cells)
    fixed = study.fixed_axes()
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
    return text


def _results_section(study: Study, rows: list[RowStats], k: int) -> list[str]:
    baseline = study.info.get("baseline") or {}
    return [
        "## Results\n",
        f"Generator Recall@{k} (R) and NDCG@{k} (N) on held-out search queries"
        + (" and on each user's held-out next item. " if "rec" in study.tasks() else ". ")
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
    ]


def _breakdown_sections(
    study: Study,
    ht: HeadTorso,
    collisions: list[dict[str, Any]],
    strata: pl.DataFrame,
    k: int,
    head_share: float,
    plotted: bool,
) -> list[str]:
    if "rec" in study.tasks():
        rec_parts = _rec_sections(study, ht, k, head_share, plotted)
    else:
        rec_parts = [
            "## Recommendation\n",
            "Search-only cells (`tasks=[search]`): no recommendation is trained or scored, so "
            "there is no search/recommendation trade-off and no head/torso split.\n",
        ]
    return rec_parts + [
        "## Held-out targets and ID collisions\n",
        "Code = the quantizer's levels without the disambiguation token. *Targets with a shared "
        "code*: held-out targets whose code another item also has (the generator must then pick "
        "the item by its disambiguation token, which carries no meaning); *items per target's "
        "code*: mean over targets; *targets reachable*: share a decoder can return at all "
        "(without a disambiguation token only one item per code is decodable); Recall split by "
        "whether the target's code is shared. Means over seeds.\n",
        collisions_table(collisions, k) + "\n",
        "## Search by query kind and code bucket\n",
        "Template queries that name the target's title vs those that do not (the hard half: "
        "attributes only), and targets by how many items share their code (1: the code alone "
        "identifies the item). Mean ± std over seeds.\n",
        strata_table(strata, k) + "\n",
    ]


def _rec_sections(
    study: Study, ht: HeadTorso, k: int, head_share: float, plotted: bool
) -> list[str]:
    """The search/recommendation trade-off and recommendation by item popularity."""
    return [
        "## Search vs recommendation\n",
        (
            "![trade-off](tradeoff.png)\n\nOne point per row (mean over seeds; bars: std over "
            "seeds); the baseline row is the black square.\n"
            if plotted
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
    ]


def _query_set_section(rows: list[dict[str, Any]], k: int) -> list[str]:
    return [
        "## Every query set and coverage\n",
        f"Generative Recall@{k} on each evaluation set of the cells (template search; the query "
        "made of each test item's title alone; the real human requests when the run had them; "
        "recommendation), mean ± std over seeds, with the references the generator is measured "
        "against (dense kNN over the embeddings the IDs came from; SASRec). *Coverage*: distinct "
        f"items across all top-{k} lists of the set, mean over seeds.\n",
        query_sets_table(rows, k) + "\n",
    ]


def _method_sections(study: Study, rows: list[RowStats], k: int) -> list[str]:
    return [
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


PUBLISHED_FILES = ("report.md", "study.json", "results.json", "tradeoff.png", "scaling.png")


def publish_study(results_dir: str | Path, target: str | Path) -> list[Path]:
    """Copy a study's committable files (report, study.json, results.json, the figure) into
    ``target``, each written to a temporary file and renamed; returns the files written."""
    results_dir, target = Path(results_dir), Path(target)
    written = []
    for name in PUBLISHED_FILES:
        source = results_dir / name
        if not source.exists():
            continue
        with atomic_path(target / name) as tmp:
            shutil.copyfile(source, tmp)
        written.append(target / name)
    return written
