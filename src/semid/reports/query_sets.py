"""Every evaluation set of a study's rows and their coverage, beside the reference methods."""

from __future__ import annotations

import math
from typing import Any

from semid.reports.cells import GENERATIVE, Study
from semid.reports.stats import finite_or_none, mean_std
from semid.reports.tables import collapse_identical, fmt_mean_std, md_table

# (metrics key, column label, reference method); the reference is the same in every cell
QUERY_SETS = (
    ("search", "template search", "dense"),
    ("search_title", "title alone", "dense"),
    ("search_real", "real requests", "dense"),
    ("rec", "rec", "sasrec"),
)
COVERAGE_SETS = (("search", "search coverage"), ("rec", "rec coverage"))


def _over_seeds(values: list[float]) -> tuple[float, float] | None:
    """:func:`semid.reports.stats.mean_std` of the finite values; None when there are none."""
    mean, std = mean_std(values)
    return None if math.isnan(mean) else (mean, std)


def query_set_rows(study: Study, k: int) -> list[dict[str, Any]]:
    """Per row: generative Recall@k on every evaluation set and coverage (distinct items over
    all top-k lists), mean and std over finished seeds; plus the reference methods' recall.

    ``{"row", "seeds", "<set>": (mean, std) | None, "<set> coverage": (mean, std) | None}``
    (std NaN for one seed);
    the reference rows are named ``dense`` and ``sasrec`` (the same in every cell).
    """
    out: list[dict[str, Any]] = []
    references: dict[str, dict[str, tuple]] = {}  # method -> group -> per-set values
    for group, cells in study.groups().items():
        done = [c for c in cells if c.status == "done" and c.metrics]
        if not done:
            continue
        row: dict[str, Any] = {"row": group, "seeds": len(done)}
        for key, _, _ in QUERY_SETS:
            row[key] = _over_seeds([c.metric(GENERATIVE, key, f"recall@{k}") for c in done])
        for key, _ in COVERAGE_SETS:
            row[f"{key} coverage"] = _over_seeds(
                [c.metric(GENERATIVE, key, "coverage") for c in done]
            )
        out.append(row)
        for reference in {r for _, _, r in QUERY_SETS}:
            references.setdefault(reference, {})[group] = tuple(
                tuple(c.metric(reference, key, f"recall@{k}") for c in done) if ref == reference
                else ()
                for key, _, ref in QUERY_SETS
            )  # fmt: skip
    for reference in sorted(references):
        # one row per distinct set of values: a study whose rows see different inputs (the
        # catalogue sizes of a scale grid) gets one reference row per input
        for label, values in collapse_identical(study, references[reference]):
            name = reference if label == "all rows" else f"{reference} ({label})"
            row = {"row": name, "seeds": None}
            for (key, _, _), per_seed in zip(QUERY_SETS, values, strict=True):
                row[key] = _over_seeds(list(per_seed)) if per_seed else None
            if any(row[key] for key, _, _ in QUERY_SETS):
                out.append(row)
    return out


def query_sets_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`query_set_rows` for JSON: (mean, std) pairs as lists, NaN as None."""
    return [
        {k: [finite_or_none(x) for x in v] if isinstance(v, tuple) else v for k, v in r.items()}
        for r in rows
    ]


def query_sets_from_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The inverse of :func:`query_sets_json` (lists back to (mean, std), None to NaN)."""
    return [
        {k: tuple(math.nan if x is None else x for x in v) if isinstance(v, list) else v
         for k, v in r.items()}
        for r in rows
    ]  # fmt: skip


def query_sets_table(rows: list[dict[str, Any]], k: int) -> str:
    """Markdown table of :func:`query_set_rows`."""
    if not rows:
        return "No finished cells."
    # only the sets some row has (a search-only study has no rec columns)
    sets = [(key, label) for key, label, _ in QUERY_SETS if any(r.get(key) for r in rows)]
    coverage = [(f"{key} coverage", label) for key, label in COVERAGE_SETS]
    coverage = [(key, label) for key, label in coverage if any(r.get(key) for r in rows)]
    header = ["row", "seeds"] + [f"{label} R@{k}" for _, label in sets]
    header += [label for _, label in coverage]
    body = []
    for row in rows:
        cells = [row["row"], "—" if row["seeds"] is None else str(row["seeds"])]
        for key, _ in sets:
            value = row.get(key)
            cells.append("—" if value is None else fmt_mean_std(*value))
        for key, _ in coverage:
            value = row.get(key)
            cells.append("—" if value is None else f"{value[0]:,.0f}")
        body.append(cells)
    return md_table(header, body)
