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

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from semid.data.dataset import Dataset
from semid.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ITEM_REQUIRED = ("item_id",)
ITEM_TEXT_SOURCES = ("title", "text")
ITEM_OPTIONAL = ("year", "genres", "tags", "category", "description")
ITEM_COLUMNS = ITEM_REQUIRED + ITEM_TEXT_SOURCES + ITEM_OPTIONAL
INTERACTION_REQUIRED = ("user_id", "item_id", "timestamp")
INTERACTION_OPTIONAL = ("rating",)
INTERACTION_COLUMNS = INTERACTION_REQUIRED + INTERACTION_OPTIONAL

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_ROW = "_row"
_EXAMPLES_PER_CHECK = 10
_LISTED = 100


@dataclass
class Source:
    """How a table is named in error messages: its file and the file's own column names."""

    name: str
    columns: Mapping[str, str] = field(default_factory=dict)

    def column(self, name: str) -> str:
        return self.columns.get(name, name)


@dataclass
class Problem:
    """One thing wrong with an input file."""

    file: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ProblemLog:
    """Collect every problem of a set of files, then raise them as one :class:`DataError`."""

    def __init__(self) -> None:
        self.examples: list[Problem] = []
        self.counts: dict[str, int] = {}

    def add(self, file: str, location: str, message: str) -> None:
        """Record one problem."""
        self.counts[file] = self.counts.get(file, 0) + 1
        self.examples.append(Problem(file, location, message))

    def add_rows(
        self,
        frame: pl.DataFrame,
        mask: pl.Expr | pl.Series,
        source: Source,
        column: str,
        message: pl.Expr | str,
    ) -> int:
        """Record a problem for every row of ``frame`` where ``mask`` holds.

        Rows are counted in full; only the first few are formatted, so a file with a million bad
        rows costs no more than one with ten.
        """
        flagged = frame.filter(_as_expr(mask).fill_null(False))
        if flagged.height == 0:
            return 0
        self.counts[source.name] = self.counts.get(source.name, 0) + flagged.height
        shown = flagged.head(_EXAMPLES_PER_CHECK).select(_ROW, _as_expr(message).alias("_msg"))
        for row, msg in shown.iter_rows():
            where = f"row {row + 1} column {source.column(column)}"
            self.examples.append(Problem(source.name, where, msg))
        hidden = flagged.height - min(flagged.height, _EXAMPLES_PER_CHECK)
        if hidden:
            self.examples.append(
                Problem(
                    source.name, f"column {source.column(column)}", f"... {hidden} more such rows"
                )
            )
        return flagged.height

    def __bool__(self) -> bool:
        return bool(self.counts)

    def raise_if_any(self) -> None:
        """Raise one DataError: a summary line, then every recorded problem on its own line."""
        if not self:
            return
        total = sum(self.counts.values())
        plural = "s" if total != 1 else ""
        if len(self.counts) == 1:
            (name,) = self.counts
            head = f"{name}: {total} problem{plural}"
            shown = [str(p) for p in self.examples[:3]]
        else:
            per_file = ", ".join(f"{name}: {n}" for name, n in self.counts.items())
            head = f"{total} problem{plural} ({per_file})"
            shown = [f"{p.file} {p}" for p in self.examples[:3]]
        first = head + ": " + "; ".join(shown) + ("; ..." if len(self.examples) > 3 else "")
        lines = [first]
        if len(self.examples) > 1:
            lines += [f"  {p.file} {p}" for p in self.examples[:_LISTED]]
            if len(self.examples) > _LISTED:
                lines.append(f"  ... and {len(self.examples) - _LISTED} more")
        raise DataError("\n".join(lines))


def _nulls(name: str, n: int, dtype: pl.DataType | type[pl.DataType]) -> pl.Series:
    return pl.repeat(None, n, dtype=dtype, eager=True).alias(name)


def _empty_lists(name: str, n: int) -> pl.Series:
    return pl.repeat(pl.lit([], dtype=pl.List(pl.String)), n, eager=True).alias(name)


def _as_expr(value: pl.Expr | pl.Series | str) -> pl.Expr | pl.Series:
    return pl.lit(value) if isinstance(value, str) else value


# ----------------------------------------------------------------------------- reading files


def read_table(path: Path) -> pl.DataFrame:
    """Read a CSV/TSV (every column as text, validated later) or Parquet table."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pl.read_csv(
                path,
                separator="\t" if suffix == ".tsv" else ",",
                infer_schema=False,
            )
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        kind = "Parquet" if suffix == ".parquet" else "CSV"
        detail = _first_line(exc)
        if suffix != ".parquet":
            detail = locate_csv_problem(path, "\t" if suffix == ".tsv" else ",") or detail
        raise DataError(f"{path}: cannot read as {kind} ({detail})") from exc
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv, .tsv or .parquet)")


def locate_csv_problem(path: Path, separator: str) -> str | None:
    """The first line whose field count differs from the header's (streamed; error path only)."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh, delimiter=separator, strict=True)
            header = next(reader, None)
            if header is None:
                return "empty file"
            for row in reader:
                if row and len(row) != len(header):
                    return (
                        f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                    )
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    return None


def find_table(folder: Path, stem: str) -> Path | None:
    """``folder/stem.{parquet,csv,tsv}``, whichever exists first."""
    for suffix in (".parquet", ".csv", ".tsv"):
        candidate = Path(folder) / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- column checks


def _check_columns(
    frame: pl.DataFrame,
    source: Source,
    required: tuple[str, ...],
    known: tuple[str, ...],
    log_: ProblemLog,
    any_of: tuple[str, ...] = (),
) -> bool:
    """Record missing and unknown columns; True when the table can be validated further."""
    present = set(frame.columns)
    expected = ", ".join(source.column(c) for c in known)
    missing = [c for c in required if c not in present]
    ok = True
    if missing:
        names = ", ".join(source.column(c) for c in missing)
        log_.add(source.name, "", f"missing column(s) {names} (expected: {expected})")
        ok = False
    if any_of and not present & set(any_of):
        names = " or ".join(source.column(c) for c in any_of)
        log_.add(source.name, "", f"missing column {names} (expected: {expected})")
        ok = False
    unknown = [c for c in frame.columns if c not in known and c != _ROW]
    if unknown:
        log_.add(
            source.name,
            "",
            f"unknown column(s) {', '.join(unknown)} (expected: {expected}; drop or rename them)",
        )
        ok = False
    return ok


def _parse_text(
    frame: pl.DataFrame,
    name: str,
    dtype: pl.DataType,
    problem: str,
    source: Source,
    log_: ProblemLog,
) -> pl.Series:
    """Text column ``name`` cast to ``dtype`` after stripping; logs every unparseable value."""
    stripped = frame[name].str.strip_chars()
    out = stripped.cast(dtype, strict=False)
    given = stripped.is_not_null() & (stripped != "")
    log_.add_rows(
        frame, given & out.is_null(), source, name, pl.format(f"{problem}: '{{}}'", pl.col(name))
    )
    return out


def _integer(
    frame: pl.DataFrame, name: str, source: Source, log_: ProblemLog, *, required: bool
) -> pl.Series:
    """Column ``name`` as Int64; records missing values and values that are not integers."""
    col = frame[name]
    dtype = col.dtype
    if dtype.is_integer():
        out = col.cast(pl.Int64)
    elif dtype.is_float():
        out = col.cast(pl.Int64, strict=False)
        bad = col.is_not_null() & (col.is_nan() | (col != col.floor()) | out.is_null())
        log_.add_rows(
            frame, bad, source, name, pl.format("not an integer: {}", pl.col(name).cast(pl.String))
        )
        out = out.set(bad, None) if bad.any() else out
    elif dtype == pl.String:
        out = _parse_text(frame, name, pl.Int64, "not an integer", source, log_)
    elif dtype == pl.Null:
        out = _nulls(name, frame.height, pl.Int64)
    else:
        log_.add(source.name, f"column {source.column(name)}", f"expected integers, got {dtype}")
        return _nulls(name, frame.height, pl.Int64)
    if required:
        missing = (
            col.is_null() if dtype != pl.String else col.is_null() | (col.str.strip_chars() == "")
        )
        log_.add_rows(frame, missing, source, name, "missing value")
    return out.rename(name)


def _float(frame: pl.DataFrame, name: str, source: Source, log_: ProblemLog) -> pl.Series:
    col = frame[name]
    if col.dtype.is_numeric():
        return col.cast(pl.Float32)
    if col.dtype == pl.String:
        return _parse_text(frame, name, pl.Float32, "not a number", source, log_)
    if col.dtype == pl.Null:
        return col.cast(pl.Float32)
    log_.add(source.name, f"column {source.column(name)}", f"expected numbers, got {col.dtype}")
    return _nulls(name, frame.height, pl.Float32)


def _timestamp(frame: pl.DataFrame, source: Source, log_: ProblemLog) -> pl.Series:
    """Unix seconds from integers, floats, datetimes, dates or ISO-8601 text."""
    col = frame["timestamp"]
    dtype = col.dtype
    if dtype.is_integer():
        out = col.cast(pl.Int64)
    elif dtype.is_float():
        out = col.floor().cast(pl.Int64, strict=False)
    elif isinstance(dtype, pl.Datetime):
        out = col.dt.epoch("s")
    elif dtype == pl.Date:
        out = col.cast(pl.Datetime("us")).dt.epoch("s")
    elif dtype == pl.String:
        stripped = col.str.strip_chars()
        as_int = stripped.cast(pl.Int64, strict=False)
        as_float = stripped.cast(pl.Float64, strict=False).floor().cast(pl.Int64, strict=False)
        out = as_int.fill_null(as_float)
        rest = out.is_null() & stripped.is_not_null() & (stripped != "")
        if rest.any():
            parsed = _parse_datetimes(stripped.filter(rest))
            out = out.scatter(rest.arg_true(), parsed)
        given = stripped.is_not_null() & (stripped != "")
        log_.add_rows(
            frame,
            given & out.is_null(),
            source,
            "timestamp",
            pl.format("unparseable timestamp '{}'", pl.col("timestamp")),
        )
    else:
        log_.add(
            source.name,
            f"column {source.column('timestamp')}",
            f"expected unix seconds or dates, got {dtype}",
        )
        return _nulls("timestamp", frame.height, pl.Int64)
    log_.add_rows(
        frame,
        col.is_null() if dtype != pl.String else col.is_null() | (col.str.strip_chars() == ""),
        source,
        "timestamp",
        "missing value",
    )
    return out.rename("timestamp")


def _parse_datetimes(text: pl.Series) -> pl.Series:
    """Seconds since the epoch for ISO dates/datetimes; null where nothing parses."""
    out = _nulls("timestamp", text.len(), pl.Int64)
    formats = (None, "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f",
               "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")  # fmt: skip
    for fmt in formats:
        todo = out.is_null()
        if not todo.any():
            break
        try:
            parsed = text.filter(todo).str.to_datetime(format=fmt, strict=False, time_unit="us")
        except pl.exceptions.PolarsError:
            continue
        if parsed.dtype.time_zone is not None:  # type: ignore[union-attr]
            parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        out = out.scatter(todo.arg_true(), parsed.dt.epoch("s"))
    return out


def _text(frame: pl.DataFrame, name: str) -> pl.Series:
    col = frame[name]
    if col.dtype != pl.String:
        col = col.cast(pl.String, strict=False)
    col = col.str.strip_chars()
    return col.set(col == "", None) if (col == "").any() else col


def _string_list(frame: pl.DataFrame, name: str, source: Source, log_: ProblemLog) -> pl.Series:
    """A list[str] column from a list column or a ``|``-separated string column."""
    col = frame[name]
    if isinstance(col.dtype, pl.List):
        col = col.cast(pl.List(pl.String), strict=False)
    elif col.dtype == pl.String:
        col = col.str.split("|")
    elif col.dtype == pl.Null:
        col = _empty_lists(name, frame.height)
    else:
        log_.add(
            source.name,
            f"column {source.column(name)}",
            f"expected a list of strings or '|'-separated text, got {col.dtype}",
        )
        return _empty_lists(name, frame.height)
    return col.fill_null([]).rename(name)


# ----------------------------------------------------------------------------- the common path


def _clean_items(items: pl.DataFrame, source: Source, log_: ProblemLog) -> pl.DataFrame | None:
    items = items.with_row_index(_ROW)
    if not _check_columns(items, source, ITEM_REQUIRED, ITEM_COLUMNS, log_, ITEM_TEXT_SOURCES):
        return None
    item_id = _integer(items, "item_id", source, log_, required=True)
    if item_id.is_duplicated().any():
        checked = items.with_columns(item_id, pl.col(_ROW).min().over(item_id).alias("_first"))
        log_.add_rows(
            checked,
            pl.col("item_id").is_not_null() & (pl.col(_ROW) != pl.col("_first")),
            source,
            "item_id",
            pl.format("duplicate id {} (first at row {})", pl.col("item_id"), pl.col("_first") + 1),
        )
    columns: dict[str, pl.Series] = {_ROW: items[_ROW], "item_id": item_id}
    title = _text(items, "title") if "title" in items.columns else None
    text = _text(items, "text") if "text" in items.columns else None
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
    columns["text"] = (
        text if text is not None else _nulls("text", items.height, pl.String)
    ).rename("text")
    if "year" in items.columns:
        year = _integer(items, "year", source, log_, required=False)
    else:
        year = _nulls("year", items.height, pl.Int64)
    columns["year"] = year.cast(pl.Int32, strict=False)
    for name in ("genres", "tags"):
        if name in items.columns:
            columns[name] = _string_list(items, name, source, log_)
        else:
            columns[name] = _empty_lists(name, items.height)
    for name in ("category", "description"):
        columns[name] = (
            _text(items, name) if name in items.columns else _nulls(name, items.height, pl.String)
        ).rename(name)
    return pl.DataFrame(columns)


def _clean_interactions(
    interactions: pl.DataFrame, source: Source, log_: ProblemLog
) -> pl.DataFrame | None:
    interactions = interactions.with_row_index(_ROW)
    if not _check_columns(interactions, source, INTERACTION_REQUIRED, INTERACTION_COLUMNS, log_):
        return None
    rating = (
        _float(interactions, "rating", source, log_)
        if "rating" in interactions.columns
        else _nulls("rating", interactions.height, pl.Float32)
    )
    return pl.DataFrame(
        {
            _ROW: interactions[_ROW],
            "user_id": _integer(interactions, "user_id", source, log_, required=True),
            "item_id": _integer(interactions, "item_id", source, log_, required=True),
            "timestamp": _timestamp(interactions, source, log_),
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
        interactions = interactions.sort(["user_id", "timestamp", "item_idx", "rating", _ROW])
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
) -> Dataset:
    """Load a saved dataset folder back through the same validation and filters."""
    folder = Path(folder)
    items_file, inter_file = folder / "items.parquet", folder / "interactions.parquet"
    try:
        items = pl.read_parquet(items_file)
        interactions = pl.read_parquet(inter_file)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{folder}: cannot read the saved dataset ({_first_line(exc)})") from exc
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
    )
