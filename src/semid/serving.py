"""A trained run as a product: ``semid.load(RUN_DIR)`` -> search / recommend with item ids.

Results are polars DataFrames (``rank``, ``item_id``, ``title``, ``score`` and, when the
catalogue has them, ``year`` and ``genres``). Every call accepts a decode-time filter (an
allow-list of item ids, genres, a year range): the filter restricts the prefix trie the beam
search walks, so the top-K is filled with allowed items instead of being thinned out afterwards.
Restricted tries are cached per filter (least recently used first out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from semid.errors import ConfigError, DataError
from semid.generative.exact import exact_rank
from semid.generative.lru import LRUCache
from semid.generative.retriever import GenerativeRetriever
from semid.io import read_json

Task = Literal["search", "rec"]


@dataclass(frozen=True)
class ItemFilter:
    """Which catalogue items may be returned (all conditions must hold).

    Parameters
    ----------
    allow : tuple of int, optional
        Only these catalogue item ids.
    genres : tuple of str, optional
        Items having at least one of these genres.
    year_min, year_max : int, optional
        Inclusive release-year range; items without a year are excluded when either is set.
    """

    allow: tuple[int, ...] | None = None
    genres: tuple[str, ...] | None = None
    year_min: int | None = None
    year_max: int | None = None

    @classmethod
    def make(
        cls,
        allow: Sequence[int] | None = None,
        genres: Sequence[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
    ) -> ItemFilter | None:
        """A normalised (hashable, order-free) filter, or None when nothing is restricted."""
        if allow is not None and len(allow) == 0:
            raise DataError("allow: the allow-list of item ids is empty")
        if year_min is not None and year_max is not None and year_min > year_max:
            raise DataError(f"year_min={year_min} is after year_max={year_max}")
        flt = cls(
            allow=tuple(sorted({int(i) for i in allow})) if allow is not None else None,
            genres=tuple(sorted({str(g) for g in genres})) if genres else None,
            year_min=None if year_min is None else int(year_min),
            year_max=None if year_max is None else int(year_max),
        )
        return flt if flt != cls() else None


class SemidModel:
    """Search and recommend in the catalogue's own item ids, with titles and scores.

    Parameters
    ----------
    retriever : GenerativeRetriever
        The trained generator with its tries (it caches the restricted trie of recent filters).
    items : polars.DataFrame
        The item table, rows aligned with the retriever's codes (``item_id``, ``title``, and
        optionally ``year``, ``genres``, ``tags``).
    filter_cache_size : int
        Filters whose allowed item rows are kept.
    """

    def __init__(
        self, retriever: GenerativeRetriever, items: pl.DataFrame, filter_cache_size: int = 64
    ) -> None:
        for name, codes in retriever.id_codes.items():
            if len(codes) != items.height:
                raise ConfigError(
                    f"model folder: codes_{name}.npy has {len(codes)} rows, "
                    f"items.parquet has {items.height}"
                )
        self.retriever = retriever
        self.items = items
        self._index = {int(i): row for row, i in enumerate(items["item_id"].to_list())}
        self._filters = LRUCache(filter_cache_size)
        self._genre_set: set[str] | None = None
        self.folder: Path | None = None
        self.tasks: tuple[str, ...] = ("search", "rec")  # what the generator was trained on
        # beams kept per item returned: the run's eval.beam_width / eval.beam_size (at least 1)
        self.beam_factor = 1.0

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu", precision: str = "auto") -> SemidModel:
        """Load a run directory (or its ``model/`` folder)."""
        folder = Path(run_dir)
        if (folder / "model").is_dir():
            folder = folder / "model"
        if not (folder / "items.parquet").exists():
            raise ConfigError(f"{run_dir}: no trained model folder (model/items.parquet missing)")
        retriever = GenerativeRetriever.load(folder, device, precision)
        model = cls(retriever, pl.read_parquet(folder / "items.parquet"))
        model.folder = folder
        config = folder.parent / "config.json"  # the run's config, beside its model folder
        if config.exists():
            run_config = read_json(config)
            model.tasks = tuple(run_config.get("tasks") or ("search", "rec"))
            evaluation = run_config.get("eval") or {}
            width, size = evaluation.get("beam_width"), evaluation.get("beam_size")
            if width and size:
                model.beam_factor = max(1.0, width / size)
        return model

    def beams_for(self, k: int) -> int:
        """Beams a top-``k`` decode keeps by default: ``k`` times the run's beam factor."""
        return max(k, math.ceil(k * self.beam_factor))

    @property
    def n_items(self) -> int:
        return self.items.height

    # ----------------------------------------------------------------- items and filters

    def item_rows(self, item_ids: Sequence[int]) -> np.ndarray:
        """Item indices of catalogue ids; unknown ids raise a clear error."""
        missing = [int(i) for i in item_ids if int(i) not in self._index]
        if missing:
            raise DataError(f"unknown item id(s): {missing[:10]}")
        return np.asarray([self._index[int(i)] for i in item_ids], dtype=np.int64)

    def item(self, item_id: int) -> dict[str, Any]:
        """One catalogue item as a dict, with its semantic ID in every ID space."""
        row = int(self.item_rows([item_id])[0])
        record: dict[str, Any] = {
            col: self.items[col][row]
            for col in ("item_id", "title", "year", "genres", "tags")
            if col in self.items.columns
        }
        for col in ("genres", "tags"):
            if isinstance(record.get(col), pl.Series):
                record[col] = record[col].to_list()
        vocab = self.retriever.vocab
        record["semantic_ids"] = {
            name: vocab.id_string(name, codes[row].tolist())
            for name, codes in self.retriever.id_codes.items()
        }
        return record

    @property
    def genres(self) -> set[str]:
        """Every genre of the catalogue."""
        if self._genre_set is None:
            if "genres" not in self.items.columns:
                self._genre_set = set()
            else:
                self._genre_set = set(self.items["genres"].explode().drop_nulls().to_list())
        return self._genre_set

    def allowed_rows(self, item_filter: ItemFilter | None) -> np.ndarray | None:
        """Item indices that pass ``item_filter`` (None = every item); cached per filter."""
        if item_filter is None:
            return None
        return self._filters.get(item_filter, lambda: self._resolve(item_filter))

    def _resolve(self, flt: ItemFilter) -> np.ndarray:
        keep = pl.lit(True)
        if flt.allow is not None:
            self.item_rows(flt.allow)
            keep &= pl.col("item_id").is_in(list(flt.allow))
        if flt.genres is not None:
            if "genres" not in self.items.columns:
                raise DataError("genres: this model's item table has no genres column")
            unknown = sorted(set(flt.genres) - self.genres)
            if unknown:
                known = ", ".join(sorted(self.genres))
                raise DataError(f"genres: unknown genre(s) {unknown} (known: {known})")
            keep &= pl.col("genres").list.eval(pl.element().is_in(list(flt.genres))).list.any()
        if flt.year_min is not None or flt.year_max is not None:
            if "year" not in self.items.columns:
                raise DataError("year_min/year_max: this model's item table has no year column")
            if flt.year_min is not None:
                keep &= pl.col("year") >= flt.year_min
            if flt.year_max is not None:
                keep &= pl.col("year") <= flt.year_max
        rows = (
            self.items.with_row_index("_row")
            .filter(keep.fill_null(False))["_row"]
            .to_numpy()
            .astype(np.int64)
        )
        if len(rows) == 0:
            raise DataError(f"filter matches no items: {_describe(flt)}")
        return rows

    # ----------------------------------------------------------------- ranking

    def _frame(self, rows: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
        keep = rows >= 0
        rows, scores = rows[keep], scores[keep]
        picked = self.items[rows.tolist()]
        columns: dict[str, Any] = {
            "rank": np.arange(1, len(rows) + 1),
            "item_id": picked["item_id"],
            "title": picked["title"],
            "score": scores.astype(np.float64),
        }
        for extra in ("year", "genres"):
            if extra in picked.columns:
                columns[extra] = picked[extra]
        return pl.DataFrame(columns)

    def rank_batch(
        self,
        task: Task,
        inputs: Sequence[str] | Sequence[Sequence[int]],
        k: int,
        item_filter: ItemFilter | None = None,
        exact: bool = False,
        batch_size: int = 32,
        beams: int | None = None,
    ) -> list[pl.DataFrame]:
        """Rank for many inputs at once: queries (``task="search"``) or item-id histories.

        One beam search call decodes the whole batch (``batch_size`` inputs per forward pass)
        with ``beams`` beams (default :meth:`beams_for`, the width the run was evaluated at),
        returning the top ``k``; ``exact=True`` scores every allowed item instead (see
        :mod:`semid.generative.exact`).
        """
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise DataError(f"k={k}: must be a positive integer")
        if beams is None:
            beams = self.beams_for(k)
        elif not isinstance(beams, (int, np.integer)) or beams < k:
            raise DataError(f"beams={beams}: must be an integer >= k={k}")
        if task not in self.tasks:
            where = self.folder or "this model"
            raise ConfigError(
                f"{where}: trained on tasks=[{', '.join(self.tasks)}] only, so it cannot {task}"
            )
        if not len(inputs):
            return []
        allowed = self.allowed_rows(item_filter)
        retriever = self.retriever
        vectors = item_tokens = None
        if task == "search":
            texts = [str(q) for q in inputs]
            if any(not q.strip() for q in texts):
                raise DataError("empty query")
            if exact:
                tokens = retriever.inputs.search(texts)
                vectors = retriever.text_vectors(texts)
            else:
                rows, scores = retriever.search(texts, k, batch_size, allowed, beams=beams)
        elif task == "rec":
            if any(not len(h) for h in inputs):
                raise DataError("empty history")
            histories = [self.item_rows(cast(Sequence[int], h)).tolist() for h in inputs]
            if exact:
                tokens = retriever.inputs.history(histories)
                item_tokens = retriever.history_tokens(histories)
            else:
                rows, scores = retriever.recommend(histories, k, batch_size, allowed, beams=beams)
        else:
            raise DataError(f"task={task!r}: must be 'search' or 'rec'")
        if exact:
            rows, scores = exact_rank(
                retriever, tokens, task, k, allowed, vectors=vectors, item_tokens=item_tokens
            )
        return [self._frame(r, s) for r, s in zip(rows, scores, strict=True)]

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        allow: Sequence[int] | None = None,
        genres: Sequence[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exact: bool = False,
        beams: int | None = None,
    ) -> pl.DataFrame:
        """Top-``k`` items for a text query.

        ``allow`` (item ids), ``genres`` (any of) and ``year_min``/``year_max`` (inclusive)
        restrict the result inside the beam search; ``exact`` ranks every item instead.
        ``beams``: beam width (default :meth:`beams_for`: 2k for a run evaluated with 60 beams
        for its top 30).
        """
        return self.search_batch(
            [query],
            k,
            allow=allow,
            genres=genres,
            year_min=year_min,
            year_max=year_max,
            exact=exact,
            beams=beams,
        )[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        allow: Sequence[int] | None = None,
        genres: Sequence[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exact: bool = False,
        beams: int | None = None,
    ) -> list[pl.DataFrame]:
        """:meth:`search` for many queries in one batched decode: one frame per query."""
        if isinstance(queries, str):
            raise DataError("search_batch: pass a list of queries, not one string")
        flt = ItemFilter.make(allow, genres, year_min, year_max)
        return self.rank_batch("search", list(queries), k, flt, exact, beams=beams)

    def recommend(
        self,
        history: Sequence[int],
        k: int = 10,
        *,
        allow: Sequence[int] | None = None,
        genres: Sequence[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exact: bool = False,
        beams: int | None = None,
    ) -> pl.DataFrame:
        """Top-``k`` next items after a history of catalogue item ids (oldest first)."""
        return self.recommend_batch(
            [history],
            k,
            allow=allow,
            genres=genres,
            year_min=year_min,
            year_max=year_max,
            exact=exact,
            beams=beams,
        )[0]

    def recommend_batch(
        self,
        histories: Sequence[Sequence[int]],
        k: int = 10,
        *,
        allow: Sequence[int] | None = None,
        genres: Sequence[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exact: bool = False,
        beams: int | None = None,
    ) -> list[pl.DataFrame]:
        """:meth:`recommend` for many histories in one batched decode: one frame each."""
        flt = ItemFilter.make(allow, genres, year_min, year_max)
        return self.rank_batch("rec", [list(h) for h in histories], k, flt, exact, beams=beams)


def _describe(flt: ItemFilter) -> str:
    parts = []
    if flt.allow is not None:
        parts.append(f"{len(flt.allow)} allowed id(s)")
    if flt.genres is not None:
        parts.append(f"genres any of {list(flt.genres)}")
    if flt.year_min is not None or flt.year_max is not None:
        parts.append(f"year in [{flt.year_min}, {flt.year_max}]")
    return ", ".join(parts)


def load(run_dir: str | Path, device: str = "cpu", precision: str = "auto") -> SemidModel:
    """Load a trained run: ``semid.load("runs/NAME").search("a movie about toys")``."""
    return SemidModel.load(run_dir, device, precision)
