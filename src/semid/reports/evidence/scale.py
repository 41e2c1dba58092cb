"""The evidence page's catalogue-scale section: the RQ-kmeans / RQ-VAE search gap against the
catalogue size, read from a *published* scale study (``study.json`` of
``semid report RESULTS --publish DIR`` over ``grids/ml-25m-scale.yaml``: its ``scaling`` list,
:class:`semid.reports.scaling.ScalingPoint`), so the page cites committed evidence only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semid.errors import ConfigError
from semid.io import read_json
from semid.reports.evidence.collect import ALPHA
from semid.reports.evidence.tables import fmt
from semid.reports.tables import md_table

ML25M_ITEMS = 62_423
# the paper's own numbers at the full catalogue (search Recall@30, its generator)
PAPER_SEARCH = {"rq-kmeans": 0.046, "rq-vae": 0.002}


def _read_study(path: Path) -> dict[str, Any]:
    """One published scale study: its points, each carrying its source folder and its search
    targets' collision structure (semid.reports.breakdowns)."""
    file = path / "study.json" if path.is_dir() else path
    if not file.exists():
        raise ConfigError(
            f"{file}: no study.json (publish the scale grid first: "
            "semid report RESULTS --publish DIR)"
        )
    data = read_json(file)
    points = data.get("scaling") or []
    if not points:
        raise ConfigError(f"{file}: no catalogue-size axis in this study ('scaling' is empty)")
    collisions = {
        r["group"]: {
            key: r.get(key) for key in ("reachable_share", "items_per_code", "recall_unique")
        }
        for r in data.get("collisions", [])
        if r.get("task") == "search"
    }
    source = file.parent.as_posix()
    points = [
        {**p, "source": source, "collisions": collisions.get(p.get("group", ""), {})}
        for p in points
    ]
    return {"source": source, "grid": data.get("grid"), "preset": data.get("preset"),
            "k": data.get("k"), "points": points}  # fmt: skip


def read_scale(paths: Path | Sequence[Path] | None) -> dict[str, Any] | None:
    """The ``scaling`` points of one or more published scale studies (folders with
    ``study.json``, or the files); None without a path. Where two studies hold the same
    (series, catalogue size), the point with more training seeds wins (the later one on a
    tie), so a multi-seed preset at some sizes completes a one-seed sweep over all of them.
    One clear error when a file is missing or has no size axis."""
    if paths is None:
        return None
    paths = [paths] if isinstance(paths, Path) else list(paths)
    if not paths:
        return None
    studies = [_read_study(p) for p in paths]
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for study in studies:
        for point in study["points"]:
            key = (point["series"], point["items"])
            if key not in merged or point["seeds"] >= merged[key]["seeds"]:
                merged[key] = point
    order = {key: i for i, key in enumerate(merged)}
    return {
        "sources": [s["source"] for s in studies],
        "grid": studies[0]["grid"],
        "presets": [s["preset"] for s in studies],
        "k": studies[0]["k"],
        "points": sorted(merged.values(), key=lambda p: order[(p["series"], p["items"])]),
    }


def _gap(point: dict[str, Any] | None) -> str:
    if point is None or not point.get("gap") or point["gap"][0] is None:
        return "—"
    mean, lo, hi = point["gap"]
    interval = "" if lo is None else f" [{lo:+.3f}, {hi:+.3f}]"
    p = point.get("gap_pvalue_holm")
    return f"{mean:+.4f}{interval}" + ("" if p is None else f", p={p:.2g}")


def _series(points: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The baseline series and the others, in the study's order."""
    names = list(dict.fromkeys(p["series"] for p in points))
    base = next((p["series"] for p in points if p["is_baseline"]), names[0])
    return base, [n for n in names if n != base]


def _by(points: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(p["series"], p["items"]): p for p in points}


def _seeds(points: list[dict[str, Any]]) -> str:
    """The training seeds of the points of one size (``3``, or ``1-3`` when they differ)."""
    seeds = sorted({p["seeds"] for p in points})
    if not seeds:
        return "—"
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"


def _join(values: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def scale_tables(points: list[dict[str, Any]], k: int) -> tuple[str, str]:
    """Template search per size (rows: sizes; each series, its gap, the references), and the
    title-alone and real-request sets per size."""
    base, others = _series(points)
    sizes = sorted({p["items"] for p in points})
    by = _by(points)
    names = [base, *others]
    header = (
        ["catalogue items", "training seeds"]
        + [f"{n} R@{k}" for n in names]
        + [f"{n} − {base}" for n in others]
        + [f"dense kNN R@{k}", f"BM25 R@{k}"]
    )
    body, sets_body = [], []
    for n in sizes:
        row = [p for (s, i), p in by.items() if i == n]
        refs = row[0]["references"] if row else {}
        body.append(
            [f"{n:,}", _seeds(row)]
            + [fmt((by.get((s, n)) or {}).get("recall", [None])[0]) for s in names]
            + [_gap(by.get((s, n))) for s in others]
            + [fmt(refs.get("dense", {}).get("search")), fmt(refs.get("bm25", {}).get("search"))]
        )
        queries = row[0].get("queries", {}) if row else {}
        sets_body.append(
            [f"{n:,}", str(queries.get("search_real", "—"))]
            + [fmt((by.get((s, n)) or {}).get("sets", {}).get("search_title")) for s in names]
            + [fmt(refs.get("dense", {}).get("search_title"))]
            + [fmt((by.get((s, n)) or {}).get("sets", {}).get("search_real")) for s in names]
            + [fmt(refs.get("dense", {}).get("search_real"))]
        )
    sets_header = (
        ["catalogue items", "real requests in it"]
        + [f"title alone: {s}" for s in names]
        + ["title alone: dense"]
        + [f"real: {s}" for s in names]
        + ["real: dense"]
    )
    return md_table(header, body), md_table(sets_header, sets_body)


def collisions_table(points: list[dict[str, Any]]) -> str:
    """Per size and series: the share of search targets decodable without the token (the
    lowest-index item of its code), the items sharing a target's code, and R@K on unique-code
    targets."""
    base, others = _series(points)
    names = [base, *others]
    sizes = sorted({p["items"] for p in points})
    by = _by(points)
    body = []
    for n in sizes:
        row = [f"{n:,}"]
        for key, digits in (("reachable_share", 3), ("items_per_code", 1), ("recall_unique", 3)):
            for s in names:
                row.append(fmt((by.get((s, n)) or {}).get("collisions", {}).get(key), digits))
        body.append(row)
    header = ["catalogue items"] + [
        f"{label}: {s}" for label in ("decodable", "items per code", "R unique-code") for s in names
    ]
    return md_table(header, body)


def scale_sentences(points: list[dict[str, Any]]) -> list[str]:
    """How each series' gap to the baseline moves with the catalogue, and how the baseline
    compares with dense kNN at the smallest and largest size (wording from the numbers)."""
    base, others = _series(points)
    by = _by(points)
    sizes = sorted({p["items"] for p in points})
    lo, hi = sizes[0], sizes[-1]
    out = []
    for name in others:
        mine = [by[(name, n)] for n in sizes if (name, n) in by and by[(name, n)].get("gap")]
        if not mine:
            continue
        first, last = mine[0], mine[-1]

        def significant(p: dict[str, Any]) -> bool:
            return p.get("gap_pvalue_holm") is not None and p["gap_pvalue_holm"] < ALPHA

        above = [f"{p['items']:,}" for p in mine if significant(p) and p["gap"][0] > 0]
        below = [f"{p['items']:,}" for p in mine if significant(p) and p["gap"][0] < 0]
        neither = [f"{p['items']:,}" for p in mine if not significant(p)]
        parts = []
        if above:
            parts.append(f"above `{base}` at {_join(above)} items")
        if below:
            parts.append(("below it" if above else f"below `{base}`") + f" at {_join(below)} items")
        tail = (
            f"significantly {' and '.join(parts)} (Holm p < {ALPHA})"
            if parts
            else f"at no size significantly different from `{base}` (Holm p < {ALPHA})"
        )
        if neither and parts:
            tail += f"; not significant at {_join(neither)} items"
        out.append(
            f"- `{name}` − `{base}`: {first['gap'][0]:+.3f} at {first['items']:,} items, "
            f"{last['gap'][0]:+.3f} at {last['items']:,} items; {tail}."
        )
    base_lo, base_hi = by.get((base, lo)), by.get((base, hi))
    if base_lo and base_hi:
        ratios = []
        for point in (base_lo, base_hi):
            dense = point["references"].get("dense", {}).get("search")
            if dense:
                ratios.append(f"{point['recall'][0] / dense:.2f}× at {point['items']:,}")
        if ratios:
            out.append(
                f"- `{base}` reaches {' and '.join(ratios)} items of dense kNN over the same "
                "embeddings (the generator's reference)."
            )
    if hi < ML25M_ITEMS:
        out.append(
            f"- The full catalogue ({ML25M_ITEMS:,} items) is not in these results: the largest "
            f"size measured is {hi:,} (the grid's larger cells were not run)."
        )
    return out


def scale_verdict(scale: dict[str, Any] | None) -> list[str]:
    """The verdict's line on catalogue scale (nothing without a scale study)."""
    if scale is None:
        return []
    lines = [line.removeprefix("- ") for line in scale_sentences(scale["points"])]
    return ["- **At the paper's catalogue scale (section 6):** " + " ".join(lines)]


def scale_section(scale: dict[str, Any] | None, page: Path) -> str:
    """Section 6 of the evidence page (a line saying the grid was not run, without one)."""
    title = "## 6. At the paper's catalogue scale: ML-25M's item table"
    if scale is None:
        return f"{title}\n\n(ml-25m-scale grid not published: pass `--scale DIR`)\n"
    points, k = scale["points"], scale["k"] or 30
    folders = [Path(os.path.relpath(Path(src), page.parent)).as_posix() for src in scale["sources"]]
    tests = sorted({p["gap_test"] for p in points if p.get("gap_test")})
    test_text = {
        "bootstrap": "a paired bootstrap over the held-out queries where a cell has one training "
        "seed (test-sample noise only)",
        "seeds": "a paired t-test over training seeds where it has several",
    }
    search, sets = scale_tables(points, k)
    test_names = "; ".join(test_text.get(t, t) for t in tests) or "no test"
    seed_text = _seed_text(points)
    presets = ", ".join(f"`{p}`" for p in scale["presets"])
    figures = "\n\n".join(
        f"![search vs catalogue size, preset {p}]({f}/scaling.png)"
        for f, p in zip(folders, scale["presets"], strict=True)
    )
    reports = ", ".join(f"[`{f}/report.md`]({f}/report.md)" for f in folders)
    return f"""{title}

The paper's regime at growing catalogue size (grid `{scale["grid"]}`, preset{
        "s" if len(folders) > 1 else ""
    } {presets}): nested random subsets of ML-25M's {ML25M_ITEMS:,} movies, search only (the
item table carries no interactions here), 2 × 256 codes without the disambiguation token, content
embeddings, a generator trained from scratch on each subset's template queries and titles.
{seed_text}; gaps with their 95% interval and Holm-corrected p from
{test_names}. The paper
reported, at the full catalogue with its own generator, search Recall@{k}
{PAPER_SEARCH["rq-vae"]} for RQ-VAE vs {PAPER_SEARCH["rq-kmeans"]} for RQ-kmeans.

Template search (held-out queries of the subset's items):

{search}

The query made of a title alone, and the real requests (TREC ToT 2023) whose movie is in the
subset (few at small sizes: read those columns as counts of hits, not rates):

{sets}

Collisions (no disambiguation token: of the items sharing a code only one is decodable):
*decodable* = share of search targets the decoder can emit at all (their code is theirs alone,
or they are the lowest-index item of it); *items per code* = items sharing a target's code;
*R unique-code* = R@{k} on the targets with a code of their own:

{collisions_table(points)}

{chr(10).join(scale_sentences(points))}

{figures}

Full report{"s" if len(folders) > 1 else ""} (NDCG, strata, collisions, cost): {reports}.
"""


def _seed_text(points: list[dict[str, Any]]) -> str:
    """``1 training seed per cell``, or per seed count the sizes that have it."""
    sizes: dict[int, set[int]] = {}
    for p in points:
        sizes.setdefault(p["seeds"], set()).add(p["items"])

    def plural(n: int) -> str:
        return f"{n} training seed" + ("" if n == 1 else "s")

    if len(sizes) == 1:
        return f"{plural(next(iter(sizes)))} per cell"
    parts = [
        f"{plural(n)} per cell at {_join([f'{i:,}' for i in sorted(items)])} items"
        for n, items in sorted(sizes.items(), reverse=True)
    ]
    return "; ".join(parts)
