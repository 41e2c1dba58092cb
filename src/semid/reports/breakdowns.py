"""The report's breakdowns: head/torso, ID diagnostics, cost, held-out targets vs collisions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semid.errors import SemidError
from semid.io import read_json
from semid.reports.cells import GENERATIVE, CellResult, Study
from semid.reports.stats import head_items, head_torso_recall, hits_at_k, mean_std
from semid.reports.tables import REFERENCE_ORDER, collapse_identical, fmt_mean_std, md_table
from semid.runs import DONE_FILE, STAGES

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
            row: dict[str, Any] = {"group": group, "method": method, "seeds": sorted(per_seed)}
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
        for label, key in collapse_identical(study, per_group):
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
    return md_table(header, body)


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
    return md_table(header, body) + note


def cost_table(study: Study) -> str:
    """Wall time of the stages each cell computed itself (cached stages cost nothing)."""
    body = []
    built: dict[str | None, float | None] = {}  # cached stage folder -> its _stage.json seconds
    stages = recorded_stages(study)
    for cell in study.cells:
        if cell.manifest is None:
            continue
        info = cell.manifest.get("stages", {})
        cells = []
        total = 0.0
        with_cached = 0.0
        for stage in stages:
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
        peaks = [s.get("peak_rss_mb") for s in info.values() if s.get("peak_rss_mb")]
        body.append(
            [cell.name, cell.status]
            + cells
            + [f"{total:.0f}", f"{with_cached:.0f}", f"{max(peaks):.0f}" if peaks else "—"]
        )
    if not body:
        return "No cell has started yet."
    header = ["cell", "status"] + stages + ["this cell s", "with cached s", "peak RSS MB"]
    distinct = stage_build_seconds(study)
    footer = (
        f"\n\nWhole grid from an empty cache, one cell at a time: "
        f"{sum(distinct.values()) / 60:.1f} min (each of the {len(distinct)} distinct stage "
        "folders counted once, at the seconds it took to build)."
    )
    return md_table(header, body) + footer


def recorded_stages(study: Study) -> list[str]:
    """The pipeline's stages, plus any other stage the cells' manifests record (e.g.
    ``text_vectors``) placed after the stage its manifest lists before it."""
    names = list(STAGES)
    for cell in study.cells:
        previous: str | None = None
        for name in (cell.manifest or {}).get("stages") or {}:
            if name not in names:
                names.insert(names.index(previous) + 1 if previous is not None else 0, name)
            previous = name
    return names


def stage_build_seconds(study: Study) -> dict[str, float]:
    """Stage folder -> the seconds it took to build, each distinct folder of the grid once
    (a cached stage counts at the seconds its ``_stage.json`` recorded when it was built)."""
    distinct: dict[str, float] = {}
    for cell in study.cells:
        for s in ((cell.manifest or {}).get("stages") or {}).values():
            path = s.get("path")
            if not path or path in distinct:
                continue
            seconds = _built_seconds(path) if s.get("cached") else float(s.get("seconds") or 0)
            if seconds is not None:
                distinct[path] = float(seconds)
    return distinct


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
    return md_table(header, body)


def strata_rows(study: Study, k: int) -> pl.DataFrame:
    """Generative search Recall@k per stratum (bucket size of the target's code; template
    query names the title or not), mean and std over each row's finished seeds."""
    from semid.reports.strata import (
        code_bucket_sizes,
        item_titles,
        search_strata,
        strata_over_seeds,
    )

    per_row: dict[str, list[pl.DataFrame]] = {}
    for group, cells in study.groups().items():
        for cell in cells:
            frame = cell.predictions(GENERATIVE, "search")
            ids = cell.stage_path("ids")
            if frame is None or ids is None or not ids.exists():
                continue
            found = code_bucket_sizes(ids)
            titles = item_titles(cell.manifest or {})
            preds = frame.with_columns(
                pl.lit("search").alias("task"), pl.lit(GENERATIVE).alias("method")
            )
            sizes = found[0] if found is not None else None
            per_row.setdefault(group, []).append(search_strata(preds, sizes, titles, k))
    return strata_over_seeds(per_row)


def strata_table(table: pl.DataFrame, k: int) -> str:
    """Markdown table of :func:`strata_rows`: one line per row, one column per stratum value."""
    if not table.height:
        return "No strata: no generator search predictions with codes or item titles found."
    columns = [
        ("query", "names title"),
        ("query", "no title"),
        ("bucket", "1"),
        ("bucket", "2-4"),
        ("bucket", "5+"),
    ]
    body = []
    for (row,), part in table.group_by(["row"], maintain_order=True):
        by = {(r["stratum"], r["value"]): r for r in part.iter_rows(named=True)}
        cells = [str(row), str(part["seeds"].max())]
        for key in columns:
            r = by.get(key)
            cells.append(
                "—" if r is None else f"{fmt_mean_std(r['mean'], r['std'])} ({r['n']:.0f})"
            )
        body.append(cells)
    header = ["row", "seeds", "names title", "no title", "code alone", "2-4 items", "5+ items"]
    return (
        md_table(header, body) + f"\n\nR@{k} of generative template search; n per seed in brackets."
    )
