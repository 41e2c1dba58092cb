"""Nested random subsets of a catalogue (``data.sample_items``), for catalogue-size studies.

Rule: every item gets the key ``SplitMix64(SplitMix64(sample_seed) ^ item_id)`` (the hash of
:func:`semid.data.splits.tie_key`); items are ordered by key (ties: smaller id) and a sample of
N keeps the first N. The order is a fixed permutation of the catalogue's ids: it depends
neither on the run seed nor on the file's row order, and a smaller sample is contained in
every larger one of the same catalogue and ``sample_seed``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from semid.data.splits import splitmix64


def sample_keys(item_ids: np.ndarray, sample_seed: int) -> np.ndarray:
    """The uint64 sample key of every item id (smaller keys are kept first)."""
    with np.errstate(over="ignore"):
        base = splitmix64(np.array([sample_seed % 2**64], dtype=np.uint64))
        return splitmix64(base ^ np.asarray(item_ids, dtype=np.int64).astype(np.uint64))


def sample_order(item_ids: pl.Series, sample_seed: int) -> pl.Series:
    """``item_ids`` (without nulls) in sample order: the first N are the sample of N."""
    ids = item_ids.drop_nulls().cast(pl.Int64)
    frame = pl.DataFrame({"item_id": ids, "_key": sample_keys(ids.to_numpy(), sample_seed)})
    return frame.sort(["_key", "item_id"])["item_id"]


def sample_items(items: pl.DataFrame, n: int, sample_seed: int) -> pl.DataFrame:
    """The rows of ``items`` (an ``item_id`` column) whose id is among the first ``n`` of
    :func:`sample_order`; all of them when the catalogue has ``n`` items or fewer."""
    if items.height <= n:
        return items
    keep = sample_order(items["item_id"], sample_seed).head(n)
    return items.filter(pl.col("item_id").is_in(keep.implode()))
