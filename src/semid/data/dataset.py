"""The internal dataset every loader produces, and the split every stage reads.

Schemas (row order = item index everywhere downstream):

- ``items``: ``item_idx`` (i32, 0..n-1), ``item_id`` (i64, the catalogue's id, e.g. movieId),
  ``title`` (str), ``year`` (i32, null if unknown), ``genres`` (list[str]), ``tags`` (list[str],
  most frequent first), ``text`` (str: what encoders embed).
- ``interactions``: ``user_id`` (i64), ``item_idx`` (i32), ``timestamp`` (i64), ``rating``
  (f32, null if absent), sorted by user then time.
- ``sequences`` (the split): ``user_id`` (i64), ``train`` (list[i32], chronological),
  ``valid`` (i32), ``test`` (i32): leave-last-out.
- ``queries``: ``query`` (str), ``item_idx`` (i32), ``split`` ("train" or "test").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from semid.io import write_parquet


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
    """Leave-last-out sequences and the search queries, split into train and test."""

    sequences: pl.DataFrame
    queries: pl.DataFrame

    def save(self, folder: Path) -> None:
        write_parquet(folder / "sequences.parquet", self.sequences)
        write_parquet(folder / "queries.parquet", self.queries)

    @classmethod
    def load(cls, folder: Path) -> Splits:
        return cls(
            sequences=pl.read_parquet(folder / "sequences.parquet"),
            queries=pl.read_parquet(folder / "queries.parquet"),
        )

    def train_queries(self) -> pl.DataFrame:
        return self.queries.filter(pl.col("split") == "train")

    def test_queries(self) -> pl.DataFrame:
        return self.queries.filter(pl.col("split") == "test")
