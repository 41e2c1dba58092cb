"""The internal dataset every loader produces, and the split every stage reads.

Schemas (row order = item index everywhere downstream):

- ``items``: ``item_idx`` (i32, 0..n-1), ``item_id`` (i64, the catalogue's id, e.g. movieId),
  ``title`` (str), ``year`` (i32, null if unknown), ``genres`` (list[str]), ``tags`` (list[str],
  most frequent first), ``text`` (str: what encoders embed).
- ``interactions``: ``user_id`` (i64), ``item_idx`` (i32), ``timestamp`` (i64), ``rating``
  (f32, null if absent), sorted by user, time, then item (a canonical order inside ties, not
  the file's row order).
- ``sequences`` (the split): ``user_id`` (i64), ``train`` (list[i32], chronological),
  ``valid`` (i32), ``test`` (i32): leave-last-out, same-timestamp ties ordered by a seeded
  hash (:func:`semid.data.splits.order_ties`).
- ``tie_stats`` (beside the split, ``tie_stats.json``): how many users' valid and test items
  came from a tied block (:func:`semid.data.splits.tie_stats`).
- ``queries``: ``query`` (str), ``item_idx`` (i32), ``split`` ("train" or "test").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from semid.io import write_json, write_parquet

TIE_STATS_FILE = "tie_stats.json"


@dataclass
class Dataset:
    """A catalogue and its user interactions."""

    items: pl.DataFrame
    interactions: pl.DataFrame

    @property
    def n_items(self) -> int:
        return self.items.height

    def save(self, folder: Path) -> None:
        write_parquet(folder / "items.parquet", self.items)
        write_parquet(folder / "interactions.parquet", self.interactions)

    @classmethod
    def load(cls, folder: Path) -> Dataset:
        return cls(
            items=pl.read_parquet(folder / "items.parquet"),
            interactions=pl.read_parquet(folder / "interactions.parquet"),
        )


@dataclass
class Splits:
    """Leave-last-out sequences and the search queries, split into train and test.

    ``tie_stats``: how many users' test and valid items came from a same-timestamp block
    (:func:`semid.data.splits.tie_stats`); empty for splits saved before it existed.
    """

    sequences: pl.DataFrame
    queries: pl.DataFrame
    tie_stats: dict[str, int] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        write_parquet(folder / "sequences.parquet", self.sequences)
        write_parquet(folder / "queries.parquet", self.queries)
        write_json(folder / TIE_STATS_FILE, self.tie_stats)

    @classmethod
    def load(cls, folder: Path) -> Splits:
        ties = folder / TIE_STATS_FILE
        return cls(
            sequences=pl.read_parquet(folder / "sequences.parquet"),
            queries=pl.read_parquet(folder / "queries.parquet"),
            tie_stats=json.loads(ties.read_text(encoding="utf-8")) if ties.is_file() else {},
        )

    def train_queries(self) -> pl.DataFrame:
        return self.queries.filter(pl.col("split") == "train")

    def test_queries(self) -> pl.DataFrame:
        return self.queries.filter(pl.col("split") == "test")
