"""Import any catalogue in the documented generic schema (see ``docs/data-format.md``).

Every loader ends here: MovieLens readers build the same two generic tables and call
:func:`build_dataset`, which validates them, applies the config filters and produces the
internal :class:`~semid.data.dataset.Dataset`. Everything is vectorised with polars: there is
never one Python object per interaction, so catalogues of millions of rows import in seconds.

Generic schema
--------------
items: ``item_id`` (int, unique), ``title`` and/or ``text`` (str), optional ``year`` (int),
``genres`` and ``tags`` (list of str, or one str separated by ``|``), ``category`` and
``description`` (str).
interactions: ``user_id`` (int), ``item_id`` (int), ``timestamp`` (int unix seconds, or an ISO
date/datetime), optional ``rating`` (float).
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from semid.data.dataset import Dataset
from semid.data.subsets import sample_items as sample_catalogue
from semid.data.tables import (
    ROW_INDEX,
    ProblemLog,
    Source,
    check_columns,
    empty_lists,
    first_line,
    float_column,
    integer_column,
    nulls,
    read_table,
    string_list_column,
    text_column,
    timestamp_column,
)
from semid.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ITEM_REQUIRED = ("item_id",)
ITEM_TEXT_SOURCES = ("title", "text")
ITEM_OPTIONAL = ("year", "genres", "tags", "category", "description")
ITEM_COLUMNS = ITEM_REQUIRED + ITEM_TEXT_SOURCES + ITEM_OPTIONAL
INTERACTION_REQUIRED = ("user_id", "item_id", "timestamp")
INTERACTION_OPTIONAL = ("rating",)
INTERACTION_COLUMNS = INTERACTION_REQUIRED + INTERACTION_OPTIONAL


# ----------------------------------------------------------------------------- the common path


def _clean_items(items: pl.DataFrame, source: Source, log_: ProblemLog) -> pl.DataFrame | None:
    items = items.with_row_index(ROW_INDEX)
    if not check_columns(items, source, ITEM_REQUIRED, ITEM_COLUMNS, log_, ITEM_TEXT_SOURCES):
        return None
    item_id = integer_column(items, "item_id", source, log_, required=True)
    if item_id.is_duplicated().any():
        checked = items.with_columns(item_id, pl.col(ROW_INDEX).min().over(item_id).alias("_first"))
        log_.add_rows(
            checked,
            pl.col("item_id").is_not_null() & (pl.col(ROW_INDEX) != pl.col("_first")),
            source,
            "item_id",
            pl.format("duplicate id {} (first at row {})", pl.col("item_id"), pl.col("_first") + 1),
        )
    columns: dict[str, pl.Series] = {ROW_INDEX: items[ROW_INDEX], "item_id": item_id}
    title = text_column(items, "title") if "title" in items.columns else None
    text = text_column(items, "text") if "text" in items.columns else None
    if text is None:
        assert title is not None
        log_.add_rows(items, title.is_null(), source, "title", "empty title")
    elif title is None:
        log_.add_rows(items, text.is_null(), source, "text", "empty text")
        title = text.str.slice(0, 80)
    else:
        log_.add_rows(
            items, title.is_null() & text.is_null(), source, "text", "empty text and title"
        )
    columns["title"] = title.rename("title")
    columns["text"] = (text if text is not None else nulls("text", items.height, pl.String)).rename(
        "text"
    )
    if "year" in items.columns:
        year = integer_column(items, "year", source, log_, required=False)
    else:
        year = nulls("year", items.height, pl.Int64)
    columns["year"] = year.cast(pl.Int32, strict=False)
    for name in ("genres", "tags"):
        if name in items.columns:
            columns[name] = string_list_column(items, name, source, log_)
        else:
            columns[name] = empty_lists(name, items.height)
    for name in ("category", "description"):
        columns[name] = (
            text_column(items, name)
            if name in items.columns
            else nulls(name, items.height, pl.String)
        ).rename(name)
    return pl.DataFrame(columns)


def _clean_interactions(
    interactions: pl.DataFrame, source: Source, log_: ProblemLog
) -> pl.DataFrame | None:
    interactions = interactions.with_row_index(ROW_INDEX)
    if not check_columns(interactions, source, INTERACTION_REQUIRED, INTERACTION_COLUMNS, log_):
        return None
    rating = (
        float_column(interactions, "rating", source, log_)
        if "rating" in interactions.columns
        else nulls("rating", interactions.height, pl.Float32)
    )
    return pl.DataFrame(
        {
            ROW_INDEX: interactions[ROW_INDEX],
            "user_id": integer_column(interactions, "user_id", source, log_, required=True),
            "item_id": integer_column(interactions, "item_id", source, log_, required=True),
            "timestamp": timestamp_column(interactions, source, log_),
            "rating": rating.rename("rating"),
        }
    )


def _normalise_lists(items: pl.DataFrame, max_tags: int) -> pl.DataFrame:
    """Strip, deduplicate and drop empty genres; lower-case tags and keep the first ``max_tags``."""
    clean = pl.element().str.strip_chars()
    return items.with_columns(
        pl.col("genres")
        .list.eval(clean.filter(clean.is_not_null() & (clean != "")))
        .list.unique(maintain_order=True),
        pl.col("tags")
        .list.eval(clean.str.to_lowercase().filter(clean.is_not_null() & (clean != "")))
        .list.unique(maintain_order=True)
        .list.head(max_tags),
    )


def compose_text() -> pl.Expr:
    """``"Toy Story (1995). Genres: Adventure, Animation. Tags: pixar, fun"`` from the columns."""
    head = (
        pl.when(pl.col("year").is_not_null())
        .then(pl.format("{} ({})", pl.col("title"), pl.col("year")))
        .otherwise(pl.col("title"))
    )
    category = pl.when(pl.col("category").is_not_null()).then(
        pl.format("Category: {}", pl.col("category"))
    )
    genres = pl.when(pl.col("genres").list.len() > 0).then(
        pl.format("Genres: {}", pl.col("genres").list.join(", "))
    )
    tags = pl.when(pl.col("tags").list.len() > 0).then(
        pl.format("Tags: {}", pl.col("tags").list.join(", "))
    )
    return pl.concat_str(
        [head, category, genres, tags, pl.col("description")], separator=". ", ignore_nulls=True
    )


def build_dataset(
    items: pl.DataFrame,
    interactions: pl.DataFrame,
    *,
    items_source: Source | str = "items",
    interactions_source: Source | str = "interactions",
    rating_threshold: float | None = None,
    max_items: int | None = None,
    max_users: int | None = None,
    max_tags: int = 5,
    sample_items: int | None = None,
    sample_seed: int = 0,
) -> Dataset:
    """Validate generic item and interaction tables and turn them into a :class:`Dataset`.

    Parameters
    ----------
    items, interactions : pl.DataFrame
        Tables in the generic schema (module docstring). Row order is the file's row order; it
        numbers the rows in error messages; it does not order anything.
    items_source, interactions_source : Source or str
        File names (and the files' own column names) used in error messages.
    rating_threshold : float, optional
        Keep only interactions with ``rating >= rating_threshold``.
    max_items : int, optional
        Keep only the ``max_items`` most interacted items (ties: smaller id) and their
        interactions; the other items leave the catalogue.
    max_users : int, optional
        Keep only the first ``max_users`` users by id (applied before ``max_items``).
    max_tags : int
        Tags kept per item (the first ones: most frequent first).
    sample_items, sample_seed : int, optional
        Keep a seeded random subset of ``sample_items`` items, before every other filter
        (nested for one ``sample_seed``: :mod:`semid.data.subsets`).

    Returns
    -------
    Dataset
        ``items`` sorted by ``item_id`` (``item_idx`` = row), ``interactions`` sorted by user,
        then timestamp, then ``item_idx`` (ties do not follow the file's row order; the split
        stage reorders them with a seeded hash, see :mod:`semid.data.splits`).

    Raises
    ------
    DataError
        One error listing every problem found, by file, row and column.
    """
    item_src = Source(items_source) if isinstance(items_source, str) else items_source
    inter_src = (
        Source(interactions_source) if isinstance(interactions_source, str) else interactions_source
    )
    log_ = ProblemLog()
    clean_items = _clean_items(items, item_src, log_)
    clean_inter = _clean_interactions(interactions, inter_src, log_)
    if clean_items is not None and clean_inter is not None:
        known = clean_items["item_id"].drop_nulls()
        unknown = pl.col("item_id").is_not_null() & ~pl.col("item_id").is_in(known.implode())
        log_.add_rows(
            clean_inter,
            unknown,
            inter_src,
            "item_id",
            pl.format("unknown item {} (not in {})", pl.col("item_id"), pl.lit(item_src.name)),
        )
    log_.raise_if_any()
    assert clean_items is not None and clean_inter is not None
    if clean_items.height == 0:
        raise DataError(f"{item_src.name}: no items")
    if sample_items is not None:
        clean_items = sample_catalogue(clean_items, sample_items, sample_seed)
        kept = clean_items["item_id"].implode()
        clean_inter = clean_inter.filter(pl.col("item_id").is_in(kept))
    if max_items is not None and clean_inter.height == 0:
        raise ConfigError(
            f"data.max_items={max_items}: {inter_src.name} has no interactions to rank items "
            "by; use data.sample_items=N (a seeded random subset) instead"
        )
    return _normalise(
        clean_items, clean_inter, inter_src, rating_threshold, max_items, max_users, max_tags
    )


def _normalise(
    items: pl.DataFrame,
    interactions: pl.DataFrame,
    inter_src: Source,
    rating_threshold: float | None,
    max_items: int | None,
    max_users: int | None,
    max_tags: int,
) -> Dataset:
    if rating_threshold is not None:
        if interactions.height and interactions["rating"].null_count() == interactions.height:
            raise ConfigError(
                f"data.rating_threshold={rating_threshold}: {inter_src.name} has no ratings"
            )
        interactions = interactions.filter(pl.col("rating") >= rating_threshold)
    if max_users is not None:
        users = interactions["user_id"].unique().sort().head(max_users)
        interactions = interactions.filter(pl.col("user_id").is_in(users.implode()))
    if max_items is not None:
        counts = (
            interactions.group_by("item_id")
            .len()
            .join(items.select("item_id"), on="item_id", how="right")
            .with_columns(pl.col("len").fill_null(0))
            .sort(["len", "item_id"], descending=[True, False])
            .head(max_items)
        )
        keep = counts["item_id"].implode()
        items = items.filter(pl.col("item_id").is_in(keep))
        interactions = interactions.filter(pl.col("item_id").is_in(keep))
    items = (
        _normalise_lists(items, max_tags)
        .sort("item_id")
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.Int32).alias("item_idx"),
            pl.coalesce(pl.col("text"), compose_text()).alias("text"),
        )
        .select(
            "item_idx",
            "item_id",
            "title",
            pl.col("year").cast(pl.Int32),
            "genres",
            "tags",
            "text",
        )
    )
    index = items.select("item_id", "item_idx")
    interactions = interactions.join(index, on="item_id", how="left", maintain_order="left")
    if not _chronological(interactions):  # a saved dataset is already in order: skip the sort
        # ties (same user and timestamp) in item order, not file order; the split stage then
        # orders them by a seeded hash (semid.data.splits.order_ties)
        interactions = interactions.sort(["user_id", "timestamp", "item_idx", "rating", ROW_INDEX])
    interactions = interactions.select(
        "user_id", "item_idx", "timestamp", pl.col("rating").cast(pl.Float32)
    )
    return Dataset(items=items, interactions=interactions)


def _chronological(interactions: pl.DataFrame) -> bool:
    """Whether rows are already sorted by user, then timestamp, then item (inside a tie)."""
    user_step = pl.col("user_id").diff()
    time_step = pl.col("timestamp").diff()
    in_order = (user_step > 0) | (
        (user_step == 0) & ((time_step > 0) | ((time_step == 0) & (pl.col("item_idx").diff() >= 0)))
    )
    return bool(interactions.select(in_order.fill_null(True).all()).item())


# ----------------------------------------------------------------------------- public entry points


def import_catalogue(
    items_path: Path,
    interactions_path: Path,
    queries_path: Path | None = None,
    *,
    rating_threshold: float | None = None,
    max_items: int | None = None,
    max_users: int | None = None,
    max_tags: int = 5,
) -> Dataset:
    """Read, validate and normalise a catalogue in the generic schema.

    Parameters
    ----------
    items_path, interactions_path : Path
        CSV, TSV or Parquet tables (``docs/data-format.md``).
    queries_path : Path, optional
        A JSONL query file; it is checked against the imported catalogue (every problem is
        reported) so mistakes surface at import time rather than in a later run.
    rating_threshold, max_items, max_users, max_tags
        As in :func:`build_dataset`.

    Returns
    -------
    Dataset
    """
    items_path, interactions_path = Path(items_path), Path(interactions_path)
    items = read_table(items_path)
    interactions = read_table(interactions_path)
    dataset = build_dataset(
        items,
        interactions,
        items_source=str(items_path),
        interactions_source=str(interactions_path),
        rating_threshold=rating_threshold,
        max_items=max_items,
        max_users=max_users,
        max_tags=max_tags,
    )
    if queries_path is not None:
        from semid.data.queries import load_query_file

        load_query_file(Path(queries_path), dataset)
    log.info(
        "imported %d items, %d interactions", dataset.items.height, dataset.interactions.height
    )
    return dataset


def is_internal_folder(folder: Path) -> bool:
    """True when ``folder`` holds a dataset written by :meth:`Dataset.save`."""
    items = Path(folder) / "items.parquet"
    if not (items.is_file() and (Path(folder) / "interactions.parquet").is_file()):
        return False
    try:
        return "item_idx" in pl.read_parquet_schema(items)
    except (pl.exceptions.PolarsError, OSError):
        return False


def load_internal(
    folder: Path,
    *,
    rating_threshold: float | None = None,
    max_items: int | None = None,
    max_users: int | None = None,
    max_tags: int = 5,
    sample_items: int | None = None,
    sample_seed: int = 0,
) -> Dataset:
    """Load a saved dataset folder back through the same validation and filters."""
    folder = Path(folder)
    items_file, inter_file = folder / "items.parquet", folder / "interactions.parquet"
    try:
        items = pl.read_parquet(items_file)
        interactions = pl.read_parquet(inter_file)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{folder}: cannot read the saved dataset ({first_line(exc)})") from exc
    expected_inter = {"user_id", "item_idx", "timestamp"}
    if not expected_inter <= set(interactions.columns):
        missing = ", ".join(sorted(expected_inter - set(interactions.columns)))
        raise DataError(f"{inter_file}: missing column(s) {missing}")
    if "item_id" not in items.columns:
        raise DataError(f"{items_file}: missing column item_id")
    n = items.height
    bad = interactions.filter(
        pl.col("item_idx").is_null() | (pl.col("item_idx") < 0) | (pl.col("item_idx") >= n)
    )
    if bad.height:
        raise DataError(
            f"{inter_file}: {bad.height} rows have an item_idx outside 0..{n - 1} "
            f"(first: {bad['item_idx'][0]})"
        )
    item_ids = items["item_id"]
    generic_items = items.select([c for c in items.columns if c in ITEM_COLUMNS])
    generic_inter = interactions.select(
        "user_id",
        item_ids.gather(interactions["item_idx"].cast(pl.Int64)).alias("item_id"),
        "timestamp",
        *(["rating"] if "rating" in interactions.columns else []),
    )
    return build_dataset(
        generic_items,
        generic_inter,
        items_source=str(items_file),
        interactions_source=str(inter_file),
        rating_threshold=rating_threshold,
        max_items=max_items,
        max_users=max_users,
        max_tags=max_tags,
        sample_items=sample_items,
        sample_seed=sample_seed,
    )
