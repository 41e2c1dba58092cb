"""Strata of the held-out inputs, for recall broken down by what makes an input easy or hard.

Search targets are split by the size of their quantizer-code bucket (how many items share the
code before the disambiguation token) and search queries by whether they name the target's
title. Both reports (a run's and a study's) read these from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

BUCKET_EDGES = (1, 2, 5)  # bucket-size strata: 1 (unique), 2-4, 5+


def code_bucket_sizes(ids_path: str | Path) -> tuple[np.ndarray, int] | None:
    """(items sharing each item's quantizer code, counting itself; number of quantizer levels)
    for the ID space that serves search, or None when ``ids_path`` holds no codes."""
    spaces = sorted(Path(ids_path).glob("*/codes.npy"))
    if not spaces:
        return None
    space_dir = spaces[0].parent if len(spaces) == 1 else Path(ids_path) / "search"
    codes = np.load(space_dir / "codes.npy")
    levels = json.loads((space_dir / "space.json").read_text()).get("levels", codes.shape[1])
    _, inverse, counts = np.unique(
        codes[:, :levels], axis=0, return_inverse=True, return_counts=True
    )
    return counts[inverse.reshape(-1)], int(levels)


def shared_code_items(ids_path: str | Path) -> tuple[np.ndarray, int] | None:
    """(bool per item: its quantizer code, without the disambiguation column, is shared with
    another item; number of quantizer levels) of the ID space that serves search, or None."""
    found = code_bucket_sizes(ids_path)
    if found is None:
        return None
    sizes, levels = found
    return sizes > 1, levels


def item_titles(manifest: dict) -> list[str] | None:
    """The item titles of a run (its data stage's ``items.parquet``), or None when absent."""
    data = (manifest.get("stages", {}).get("data") or {}).get("path")
    items = Path(data) / "items.parquet" if data else None
    if items is None or not items.exists():
        return None
    return pl.read_parquet(items, columns=["title"])["title"].fill_null("").to_list()


def bucket_label(size: int) -> str:
    """The bucket-size stratum of a code shared by ``size`` items: "1", "2-4" or "5+"."""
    for low, high in zip(BUCKET_EDGES, BUCKET_EDGES[1:], strict=False):
        if size < high:
            return str(low) if high - low == 1 else f"{low}-{high - 1}"
    return f"{BUCKET_EDGES[-1]}+"


def names_title(inputs: Sequence[str], targets: Sequence[int], titles: Sequence[str]) -> np.ndarray:
    """Per query: does it contain its target's title as whole words (case-insensitive; the
    rule of :func:`semid.data.query_files.contains_title`, used for the title share too)?"""
    from semid.data.query_files import contains_title

    return np.array(
        [contains_title(text, titles[int(t)]) for text, t in zip(inputs, targets, strict=True)],
        dtype=bool,
    )


def search_strata(
    preds: pl.DataFrame, bucket_sizes: np.ndarray | None, titles: Sequence[str] | None, k: int
) -> pl.DataFrame:
    """Recall@k of search predictions per (task, method, stratum, value).

    ``preds`` has columns task, method, input, target, rank (rank -1: not retrieved). Strata:
    ``code`` (unique / shared), ``bucket`` (:func:`bucket_label`) and, for template sets
    (``search``, ``search_valid``), ``query`` (names title / no title).
    """
    preds = preds.filter(pl.col("task").str.starts_with("search"))
    hit = ((pl.col("rank") >= 0) & (pl.col("rank") < k)).alias("hit")
    frames = []
    if bucket_sizes is not None:
        sizes = bucket_sizes[preds["target"].to_numpy()]
        labels = {s: bucket_label(int(s)) for s in np.unique(sizes)}
        frames.append(
            preds.with_columns(
                pl.lit("code").alias("stratum"),
                pl.Series("value", np.where(sizes > 1, "shared", "unique")),
            )
        )
        frames.append(
            preds.with_columns(
                pl.lit("bucket").alias("stratum"),
                pl.Series("value", [labels[s] for s in sizes], dtype=pl.String),
            )
        )
    template = preds.filter(pl.col("task").is_in(["search", "search_valid"]))
    if titles is not None and template.height:
        named = names_title(template["input"].to_list(), template["target"].to_list(), titles)
        frames.append(
            template.with_columns(
                pl.lit("query").alias("stratum"),
                pl.Series("value", np.where(named, "names title", "no title")),
            )
        )
    if not frames:
        return pl.DataFrame(
            schema={
                "task": pl.String,
                "method": pl.String,
                "stratum": pl.String,
                "value": pl.String,
                "recall": pl.Float64,
                "n": pl.UInt32,
            }
        )
    return (
        pl.concat([f.select("task", "method", "stratum", "value", hit) for f in frames])
        .group_by("task", "method", "stratum", "value")
        .agg(pl.col("hit").mean().alias("recall"), pl.len().alias("n"))
        .sort("task", "method", "stratum", "value")
    )


def strata_over_seeds(
    rows: dict[str, list[pl.DataFrame]], task: str = "search", method: str = "generative"
) -> pl.DataFrame:
    """Mean and standard deviation over seeds of per-stratum recall.

    ``rows`` maps a row label (a grid row) to one :func:`search_strata` table per seed; the
    result has one line per (row, stratum, value) of ``method`` on ``task``, with ``mean``,
    ``std`` (sample, 0 for one seed), ``seeds`` and ``n`` (inputs per seed, the mean).
    """
    frames = []
    for label, tables in rows.items():
        for seed, table in enumerate(tables):
            part = table.filter((pl.col("task") == task) & (pl.col("method") == method))
            frames.append(part.with_columns(pl.lit(label).alias("row"), pl.lit(seed).alias("seed")))
    if not frames:
        return pl.DataFrame(
            schema={
                "row": pl.String,
                "stratum": pl.String,
                "value": pl.String,
                "mean": pl.Float64,
                "std": pl.Float64,
                "seeds": pl.UInt32,
                "n": pl.Float64,
            }
        )
    order = {label: i for i, label in enumerate(rows)}
    return (
        pl.concat(frames)
        .group_by("row", "stratum", "value")
        .agg(
            pl.col("recall").mean().alias("mean"),
            pl.col("recall").std(ddof=1).fill_null(0.0).alias("std"),
            pl.len().alias("seeds"),
            pl.col("n").mean().cast(pl.Float64).alias("n"),
        )
        .with_columns(pl.col("row").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
        .sort("_order", "stratum", "value")
        .drop("_order")
    )
