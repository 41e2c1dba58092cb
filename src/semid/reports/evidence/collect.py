"""The evidence page's numbers, per row (group) of the RQ-VAE study grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from semid.io import read_json
from semid.reports.breakdowns import collision_rows, head_torso
from semid.reports.cells import GENERATIVE, TASKS, CellResult, Study
from semid.reports.stats import PairedTest, compare_to_baseline, holm
from semid.reports.tables import row_stats

K = 30
ALPHA = 0.05

HEADLINE = ["rq-kmeans", "rq-vae-defaults", "rq-vae-tuned"]
KNOBS = [
    "rq-vae-defaults",
    "defaults+standardize",
    "defaults+long-training",
    "defaults+faiss-kmeans-init",
    "defaults+dead-code",
    "defaults+commitment",
    "defaults+adamw",
    "defaults+no-rotation",
    "defaults+latent64",
    "rq-vae-tuned",
]
REGIME_TOKEN = [
    "rq-kmeans",
    "rq-vae-defaults",
    "rq-vae-tuned",
    "rq-kmeans-3x256",
    "rq-vae-tuned-3x256",
]
REGIME_PAPER = [
    "rq-kmeans-no-disambiguation",
    "rq-vae-defaults-no-disambiguation",
    "rq-vae-tuned-no-disambiguation",
]


def cell_diagnostics(study: Study) -> dict[str, dict[str, Any]]:
    """Group -> the ID diagnostics of its first finished cell (the IDs do not vary by seed)."""
    out: dict[str, dict[str, Any]] = {}
    for group, cells in study.groups().items():
        for cell in cells:
            ids = cell.stage_path("ids")
            path = ids / "item" / "diagnostics.json" if ids else None
            if cell.status == "done" and path is not None and path.exists():
                out[group] = read_json(path)
                break
    return out


def headline_test(
    cells: list[CellResult], reference: list[CellResult], task: str, k: int = K
) -> PairedTest:
    """The headline paired test of ``cells`` against ``reference`` on the generator's hit@k."""

    def recalls(group: list[CellResult]) -> dict[str, float]:
        return {c.seed: c.metric(GENERATIVE, task, f"recall@{k}") for c in group}

    return compare_to_baseline(
        {c.seed: c.predictions(GENERATIVE, task) for c in cells},
        {c.seed: c.predictions(GENERATIVE, task) for c in reference},
        recalls(cells),
        recalls(reference),
        k,
    )[0]


def pair_p(study: Study, a: str, b: str, task: str) -> float:
    """p-value of the headline test of group ``a`` against ``b`` (NaN if either is missing)."""
    groups = study.groups()
    if a not in groups or b not in groups:
        return float("nan")
    return headline_test(groups[a], groups[b], task).pvalue


def ids_summary(diag: dict[str, Any]) -> dict[str, Any]:
    """The few ID diagnostics the page shows, from an ids stage's ``diagnostics.json``."""
    return {
        "codes_used": [lvl["codes_used"] for lvl in diag["per_level"]],
        "distinct_ids": diag["collisions"]["distinct_ids"],
        "colliding_items_share": diag["collisions"]["colliding_items_share"],
        "largest_bucket": diag["collisions"]["largest_bucket"],
        "explained_variance": diag["reconstruction"]["explained_variance"],
        "nn_same_depth_1": diag.get("coherence", {}).get("nn_same_depth_1"),
        "n_items": diag["n_items"],
    }


def downstream(study: Study, reference: str) -> dict[str, dict[str, Any]]:
    """Per group: Recall@K mean ± std, p vs ``reference`` and vs the grid's baseline, IDs.

    ``"_head_share"`` holds the head's share of the items and of the recommendation targets
    (means over the splits).
    """
    groups = study.groups()
    stats = {row.group: row for row in row_stats(study, K)}
    collisions = collision_rows(study, K)
    ht = head_torso(study, K, 0.5)
    diags = cell_diagnostics(study)
    out: dict[str, dict[str, Any]] = {}
    for group, cells in groups.items():
        if group not in stats:
            continue
        row = stats[group]
        entry: dict[str, Any] = {"labels": row.labels, "seeds": row.seeds}
        for task in TASKS:
            mean, std = row.values[f"{task} recall@{K}"]
            entry[task] = {"recall": mean, "std": std}
            if reference in groups and group != reference:
                test = headline_test(cells, groups[reference], task)
                entry[task]["vs_reference"] = test.to_json()
            if task in row.tests:
                entry[task]["vs_baseline"] = row.tests[task].to_json()
        for c in collisions:
            if c["group"] == group:
                entry[c["task"]]["targets"] = {k: v for k, v in c.items() if k != "group"}
        for r in ht.rows:
            if r["group"] == group and r["method"] == GENERATIVE:
                entry["rec"].update(head=r["head"][0], torso=r["torso"][0])
                entry["rec"].update(n_head=r["n_head"], n_torso=r["n_torso"])
        if group in diags:
            entry["ids"] = ids_summary(diags[group])
        out[group] = entry
    _holm_against_reference(out)
    out["_head_share"] = {
        "head_item_share": _mean(ht.head_item_share),
        "head_target_share": _mean(ht.head_target_share),
    }
    return out


def _holm_against_reference(rows: dict[str, dict[str, Any]]) -> None:
    """Add ``pvalue_holm`` to every ``vs_reference`` test: Holm over all rows and tasks tested
    against the same reference (one family per :func:`downstream` call)."""
    tests = [e[t]["vs_reference"] for e in rows.values() for t in TASKS if "vs_reference" in e[t]]
    adjusted = holm([float("nan") if t["pvalue"] is None else t["pvalue"] for t in tests])
    for test, p in zip(tests, adjusted, strict=True):
        test["pvalue_holm"] = None if math.isnan(p) else float(p)


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def p_of(entry: dict, task: str, key: str = "vs_reference") -> float:
    """A row's p-value on ``task`` (against the reference by default; Holm-corrected where the
    test carries ``pvalue_holm``); NaN when untested."""
    test = entry.get(task, {}).get(key, {})
    value = test.get("pvalue_holm", test.get("pvalue"))
    return float("nan") if value is None else float(value)


def find_id_row(rows: list[dict], catalogue: str, quantizer: str, shape: str) -> dict | None:
    """The quantizer benchmark's row (no variant) for one catalogue, quantizer and shape."""
    for row in rows:
        key = (row["catalogue"], row["quantizer"], row["shape"])
        if key == (catalogue, quantizer, shape) and not row.get("variant"):
            return row
    return None


def catalogue_items(rows: list[dict], catalogue: str) -> int | None:
    """Items of a catalogue of the quantizer benchmark (from its first row's diagnostics)."""
    return next((r["diagnostics"]["n_items"] for r in rows if r["catalogue"] == catalogue), None)


def distinct_codes_in_top_k(study: Study, group: str, task: str = "search") -> float:
    """Mean number of distinct quantizer codes (levels only) among the generator's top K."""
    from semid.quantizers.ids import load_ids

    for cell in study.groups().get(group, []):
        ids, path = cell.stage_path("ids"), cell.run_dir / "predictions.parquet"
        if cell.status != "done" or ids is None or not path.exists():
            continue
        space = load_ids(ids)["item"]
        _, code = np.unique(space.codes[:, : space.levels], axis=0, return_inverse=True)
        code = code.reshape(-1)
        frame = pl.read_parquet(path, columns=["method", "task", "predicted"]).filter(
            (pl.col("method") == GENERATIVE) & (pl.col("task") == task)
        )
        counts = [
            len(set(code[[i for i in items[:K] if i >= 0]]))
            for items in frame["predicted"].to_list()
        ]
        return float(np.mean(counts)) if counts else float("nan")
    return float("nan")


def run_setting(study: Study, group: str) -> dict[str, Any]:
    """The settings of a group's first finished cell, from its saved config and manifest.

    Keys: ``dataset``, ``encoder``, ``space``, ``levels``, ``codebook_size``,
    ``disambiguation``, ``parameters`` (the generator's, ``None`` when its model stage has not
    recorded them), ``epochs``, ``beam_size``, ``vae_epochs``, ``vae_optimizer``.
    """
    for cell in study.groups().get(group, []):
        if cell.config is None:
            continue
        cfg = cell.config
        model = ((cell.manifest or {}).get("stages", {}).get("model") or {}).get("facts", {})
        vae = cfg["quantizer"].get("vae") or {}
        return {
            "dataset": cfg["data"]["dataset"],
            "encoder": cfg["embedding"]["encoder"],
            "space": cfg["embedding"]["space"],
            "levels": cfg["quantizer"]["levels"],
            "codebook_size": cfg["quantizer"]["codebook_size"],
            "disambiguation": cfg["quantizer"]["disambiguation"],
            "parameters": model.get("parameters"),
            "epochs": cfg["train"]["epochs"],
            "beam_size": cfg["eval"]["beam_size"],
            "vae_epochs": vae.get("epochs"),
            "vae_optimizer": vae.get("optimizer"),
            "vae": vae,
        }
    return {}


def is_missing(value: float | None) -> bool:
    return value is None or math.isnan(value)
