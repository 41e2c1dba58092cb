"""A trained run as a product: ``semid.load(RUN_DIR)`` -> search / recommend with item ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from semid.errors import ConfigError, DataError
from semid.generative.retriever import GenerativeRetriever


class SemidModel:
    """Search and recommend in the catalogue's own item ids, with titles and scores."""

    def __init__(self, retriever: GenerativeRetriever, items: pl.DataFrame) -> None:
        self.retriever = retriever
        self.items = items
        self._index = {int(i): row for row, i in enumerate(items["item_id"].to_list())}

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> SemidModel:
        """Load a run directory (or its ``model/`` folder)."""
        folder = Path(run_dir)
        if (folder / "model").is_dir():
            folder = folder / "model"
        if not (folder / "items.parquet").exists():
            raise ConfigError(f"{run_dir}: no trained model folder (model/items.parquet missing)")
        return cls(GenerativeRetriever.load(folder, device), pl.read_parquet(folder / "items.parquet"))

    def item_rows(self, item_ids: Sequence[int]) -> np.ndarray:
        """Item indices of catalogue ids; unknown ids raise a clear error."""
        missing = [i for i in item_ids if int(i) not in self._index]
        if missing:
            raise DataError(f"unknown item id(s): {missing[:10]}")
        return np.asarray([self._index[int(i)] for i in item_ids], dtype=np.int64)

    def _frame(self, rows: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
        keep = rows >= 0
        rows, scores = rows[keep], scores[keep]
        picked = self.items[rows.tolist()]
        return pl.DataFrame(
            {
                "rank": np.arange(1, len(rows) + 1),
                "item_id": picked["item_id"],
                "title": picked["title"],
                "score": scores.astype(np.float64),
            }
        )

    def search(self, query: str, k: int = 10) -> pl.DataFrame:
        """Top-``k`` items for a text query."""
        if not query.strip():
            raise DataError("empty query")
        rows, scores = self.retriever.search([query], k=k)
        return self._frame(rows[0], scores[0])

    def recommend(self, history: Sequence[int], k: int = 10) -> pl.DataFrame:
        """Top-``k`` next items after a history of catalogue item ids (oldest first)."""
        if not len(history):
            raise DataError("empty history")
        rows, scores = self.retriever.recommend([self.item_rows(history).tolist()], k=k)
        return self._frame(rows[0], scores[0])


def load(run_dir: str | Path, device: str = "cpu") -> SemidModel:
    """Load a trained run: ``semid.load("runs/NAME").search("a movie about toys")``."""
    return SemidModel.load(run_dir, device)
