"""MovieLens readers for every official layout, and where datasets are found on disk.

Layouts (detected from the files present, not from the dataset's name):

- ``movielens-csv``: ml-latest-small, ml-latest, ml-20m, ml-25m — ``movies.csv``
  (movieId,title,genres), ``ratings.csv`` (userId,movieId,rating,timestamp), optional
  ``tags.csv`` (userId,movieId,tag,timestamp).
- ``movielens-dat``: ml-1m, ml-10m — ``::``-separated ``movies.dat``, ``ratings.dat`` and, for
  ml-10m, ``tags.dat``; text files may be latin-1 (ml-1m) or UTF-8.
- ``movielens-100k``: ml-100k — ``u.data`` (tab-separated user, item, rating, timestamp) and
  ``u.item`` (``|``-separated, latin-1, 19 genre flags).
- ``movielens-items``: a ``movies.csv`` without ``ratings.csv`` (the ML-25M item table,
  :func:`ml25m_items_dir`): items only, zero interactions; accepted only where no interactions
  are needed (``detect_layout(..., items_only=True)``: search-only runs, ``tasks=[search]``).
- ``internal``: a folder written by :meth:`Dataset.save` (``semid data import``).
- ``generic``: ``items`` and ``interactions`` tables (``.parquet``/``.csv``/``.tsv``) in the
  generic schema of ``docs/data-format.md``.

Each reader builds the generic item and interaction tables and hands them to
:func:`semid.data.importer.build_dataset`, so MovieLens goes through the same validation as any
imported catalogue.

Titles: MovieLens writes ``"Dark Knight, The (2008)"``; the ``title`` column holds the display
form ``"The Dark Knight"`` (year removed into ``year``; a trailing English, French, Italian,
Spanish or German article moved to the front, also inside an alternative title in parentheses).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

import semid
from semid.data.dataset import Dataset
from semid.data.importer import build_dataset, is_internal_folder
from semid.data.tables import ProblemLog, Source, find_table, locate_csv_problem
from semid.errors import DataError

MOVIELENS_NAMES = ("ml-latest-small", "ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m")

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_NO_GENRES = {"(no genres listed)", "unknown", ""}
_ARTICLES = "The|A|An|Les|La|Le|Il|Lo|Gli|Das|Der|Die|Ein|Eine|El|Los|Las|Un|Une|Una|Det|Den"
_YEAR = r"\s*\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\s*\)\s*$"

RATING_COLUMNS = {"user_id": "userId", "item_id": "movieId", "rating": "rating",
                  "timestamp": "timestamp"}  # fmt: skip
MOVIE_COLUMNS = {"item_id": "movieId", "title": "title", "genres": "genres"}
LAYOUT_HINT = (
    "expected movies.csv + ratings.csv (ml-latest-small, ml-20m, ml-25m), movies.dat + "
    "ratings.dat (ml-1m, ml-10m), u.item + u.data (ml-100k), a folder written by "
    "`semid data import`, or items + interactions tables (.parquet/.csv)"
)


@dataclass(frozen=True)
class Layout:
    """Which reader a folder needs and the files it reads."""

    kind: str
    folder: Path
    items: Path
    interactions: Path | None  # None: an item table alone (movielens-items)
    tags: Path | None = None


def detect_layout(folder: Path, items_only: bool = False) -> Layout:
    """The layout of ``folder`` (or of its single sub-folder, as unpacked from a zip).

    ``items_only``: also accept a ``movies.csv`` without ``ratings.csv`` (``movielens-items``,
    zero interactions), for runs that need no interactions.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder ({LAYOUT_HINT})")
    layout = _layout_here(folder, items_only)
    if layout is not None:
        return layout
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and (layout := _layout_here(subdirs[0], items_only)) is not None:
        return layout
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    found = f"found {', '.join(names[:8])}" if names else "folder is empty"
    if (folder / "movies.csv").is_file() and not (folder / "ratings.csv").is_file():
        found = (
            "found movies.csv but no ratings.csv (the ratings are needed for sequences; a "
            "search-only run, tasks=[search], reads movies.csv alone)"
        )
    raise DataError(f"{folder}: no dataset layout recognised ({found}); {LAYOUT_HINT}")


def _layout_here(folder: Path, items_only: bool = False) -> Layout | None:
    def has(name: str) -> bool:
        return (folder / name).is_file()

    if is_internal_folder(folder):
        return Layout("internal", folder, folder / "items.parquet",
                      folder / "interactions.parquet")  # fmt: skip
    if has("movies.csv") and has("ratings.csv"):
        tags = folder / "tags.csv"
        return Layout("movielens-csv", folder, folder / "movies.csv", folder / "ratings.csv",
                      tags if tags.is_file() else None)  # fmt: skip
    if has("movies.dat") and has("ratings.dat"):
        tags = folder / "tags.dat"
        return Layout("movielens-dat", folder, folder / "movies.dat", folder / "ratings.dat",
                      tags if tags.is_file() else None)  # fmt: skip
    if has("u.item") and has("u.data"):
        return Layout("movielens-100k", folder, folder / "u.item", folder / "u.data")
    items, interactions = find_table(folder, "items"), find_table(folder, "interactions")
    if items is not None and interactions is not None:
        return Layout("generic", folder, items, interactions)
    if items_only and has("movies.csv"):
        tags = folder / "tags.csv"
        return Layout("movielens-items", folder, folder / "movies.csv", None,
                      tags if tags.is_file() else None)  # fmt: skip
    return None


def datasets_cache_dir() -> Path:
    """Where downloaded datasets live: ``$XDG_CACHE_HOME/semid/datasets`` (~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "semid" / "datasets"


def bundled_data_dir() -> Path:
    """The repository's ``data/`` folder (holds ml-latest-small)."""
    return Path(semid.__file__).resolve().parents[2] / "data"


def data_dirs() -> list[Path]:
    """Where datasets are looked up by name: ``$SEMID_DATA_DIR``, ``data/``, the cache."""
    override = os.environ.get("SEMID_DATA_DIR")
    dirs = [Path(override).expanduser()] if override else []
    return [*dirs, bundled_data_dir(), datasets_cache_dir()]


ML25M_ITEMS_ENV = "SEMID_ML25M_ITEMS"


def ml25m_items_candidates() -> list[Path]:
    """Where the ML-25M item table (a folder with ``movies.csv``) is looked for, in order.

    ``$SEMID_ML25M_ITEMS`` (a user's copy), the workspace's shared folder
    ``../shared/data/ml-25m-items`` beside the repository, then a full ML-25M folder found by
    name (``$SEMID_DATA_DIR``, the download cache: ``semid data download ml-25m``). ML-25M's
    licence forbids redistribution, so the repository does not carry it.
    """
    override = os.environ.get(ML25M_ITEMS_ENV)
    found = [Path(override).expanduser()] if override else []
    found.append(bundled_data_dir().parent.parent / "shared" / "data" / "ml-25m-items")
    return [*found, *(folder / "ml-25m" for folder in data_dirs())]


def ml25m_items_dir() -> Path | None:
    """The first folder of :func:`ml25m_items_candidates` holding ``movies.csv``, or None."""
    for folder in ml25m_items_candidates():
        if (folder / "movies.csv").is_file():
            return folder
        nested = list(folder.glob("*/movies.csv")) if folder.is_dir() else []
        if len(nested) == 1:  # an unpacked zip: ml-25m/ml-25m/movies.csv
            return nested[0].parent
    return None


def resolve_path(name: str, path: Path | None) -> Path:
    """The folder of dataset ``name``: ``path`` if given, else the bundled or cached copy;
    for ml-25m without a full copy, the item table of :func:`ml25m_items_dir`."""
    if path is not None:
        return Path(path).expanduser()
    if name == "custom":
        raise DataError(
            "data.dataset=custom needs data.path=FOLDER (a folder written by "
            "`semid data import`, or items + interactions tables)"
        )
    candidates = [folder / name for folder in data_dirs()]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if name == "ml-25m" and (items := ml25m_items_dir()) is not None:
        return items  # the item table alone (no ratings): search-only runs
    if name not in MOVIELENS_NAMES:
        raise DataError(
            f"data.dataset={name}: unknown dataset (MovieLens names: {', '.join(MOVIELENS_NAMES)};"
            " or set data.path=FOLDER)"
        )
    raise DataError(
        f"data.dataset={name}: no local copy (looked in {', '.join(map(str, candidates))}); "
        f"pass data.path=FOLDER or run `semid data download {name}`"
    )


# ----------------------------------------------------------------------------- titles and genres


def parse_titles(raw: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Display title and year from MovieLens titles: ``"Dark Knight, The (2008)"``."""
    year = raw.str.extract(_YEAR, 1).cast(pl.Int32, strict=False)
    bare = raw.str.replace(_YEAR, "").str.strip_chars()
    title = (
        bare.str.replace(rf"^(.+?), ({_ARTICLES})(\s\(.*\))?$", "${2} ${1}${3}")
        .str.replace(r"^(.+?), (L')(\s\(.*\))?$", "${2}${1}${3}")
        .str.replace(rf"\((.+?), ({_ARTICLES})\)$", "(${2} ${1})")
        .str.replace(r"\((.+?), (L')\)$", "(${2}${1})")
    )
    return title, year


def _genre_list(raw: pl.Expr) -> pl.Expr:
    return (
        raw.str.split("|")
        .list.eval(
            pl.element()
            .str.strip_chars()
            .str.replace(r"^Children's$", "Children")
            .filter(~pl.element().str.strip_chars().is_in(list(_NO_GENRES)))
        )
        .fill_null([])
    )


def top_tags(tags: pl.DataFrame, max_tags: int) -> pl.DataFrame:
    """Each item's ``max_tags`` most used tags (lower-cased; ties alphabetical)."""
    return (
        tags.select("item_id", pl.col("tag").cast(pl.String).str.strip_chars().str.to_lowercase())
        .filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
        .group_by("item_id", "tag")
        .len()
        .sort(["item_id", "len", "tag"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("tag").head(max_tags).alias("tags"))
    )


def _with_tags(items: pl.DataFrame, tags: pl.DataFrame | None, max_tags: int) -> pl.DataFrame:
    if tags is None or max_tags == 0:
        return items.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("tags"))
    per_item = top_tags(tags, max_tags).rename({"item_id": "_key"})
    key = pl.col("item_id").cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)
    return (
        items.with_columns(key.alias("_key"))
        .join(per_item, on="_key", how="left", maintain_order="left")
        .drop("_key")
        .with_columns(pl.col("tags").fill_null([]))
    )


# ----------------------------------------------------------------------------- low-level reading


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _check_header(path: Path, expected: list[str]) -> None:
    try:
        header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({_first_line(exc)})") from exc
    missing = [c for c in expected if c not in header]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(expected)}; "
            f"found {','.join(header) or 'nothing'})"
        )


def _read_csv(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Typed read; on a parse error, re-read as text so validation can name the bad rows."""
    _check_header(path, list(schema))
    try:
        return pl.read_csv(path, columns=list(schema), schema_overrides=schema,
                           encoding="utf8-lossy")  # fmt: skip
    except pl.exceptions.PolarsError:
        pass
    try:
        return pl.read_csv(path, columns=list(schema), infer_schema=False, encoding="utf8-lossy")
    except (pl.exceptions.PolarsError, OSError) as exc:
        detail = locate_csv_problem(path, ",") or _first_line(exc)
        raise DataError(f"{path}: cannot read as CSV ({detail})") from exc


def _read_separated(
    data: bytes, path: Path, names: list[str], schema: dict[str, pl.DataType], separator: str
) -> pl.DataFrame:
    """Headerless delimited bytes; typed when possible, else text for row-level errors."""
    for typed in (True, False):
        try:
            return pl.read_csv(
                io.BytesIO(data),
                has_header=False,
                separator=separator,
                quote_char=None,
                new_columns=names,
                schema={n: (schema[n] if typed else pl.String) for n in names},
            )
        except pl.exceptions.PolarsError as exc:
            if not typed:
                raise DataError(f"{path}: cannot parse ({_first_line(exc)})") from exc
    raise AssertionError("unreachable")


def _read_lines(path: Path, pattern: str, names: list[str]) -> pl.DataFrame:
    """Split the lines of a text file with a regex; a line that does not match is an error."""
    text = _decode(path)
    lines = pl.read_csv(
        io.BytesIO(text.encode()),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        schema={"line": pl.String},
    ).with_row_index("_row")
    parts = lines.with_columns(pl.col("line").str.extract_groups(pattern).alias("parts"))
    log_ = ProblemLog()
    src = Source(str(path))
    log_.add_rows(
        parts,
        pl.col("parts").struct.field("1").is_null(),
        src,
        "line",
        pl.format("malformed line '{}'", pl.col("line").str.slice(0, 60)),
    )
    log_.raise_if_any()
    return parts.select(
        [pl.col("parts").struct.field(str(i + 1)).alias(n) for i, n in enumerate(names)]
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# ----------------------------------------------------------------------------- layouts


_RATING_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(), "item_id": pl.Int64(), "rating": pl.Float32(),
    "timestamp": pl.Int64(),
}  # fmt: skip


def _read_movies_csv(path: Path) -> pl.DataFrame:
    """Generic items of a ``movies.csv`` (movieId,title,genres)."""
    movies = _read_csv(path, {"movieId": pl.String(), "title": pl.String(), "genres": pl.String()})
    title, year = parse_titles(pl.col("title"))
    return movies.select(
        pl.col("movieId").alias("item_id"), title.alias("title"), year.alias("year"),
        _genre_list(pl.col("genres")).alias("genres"),
    )  # fmt: skip


def _read_tags_csv(path: Path | None) -> pl.DataFrame | None:
    """Raw ``item_id``, ``tag`` of a ``tags.csv`` (None without one)."""
    if path is None:
        return None
    raw = _read_csv(path, {"movieId": pl.String(), "tag": pl.String()})
    return raw.select(
        pl.col("movieId").str.strip_chars().cast(pl.Int64, strict=False).alias("item_id"),
        pl.col("tag"),
    ).drop_nulls("item_id")


NO_INTERACTIONS = pl.DataFrame(
    schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}
)


def read_movielens_items(layout: Layout) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """Generic items and raw tags of a ``movies.csv`` without ratings; zero interactions."""
    return _read_movies_csv(layout.items), NO_INTERACTIONS, _read_tags_csv(layout.tags)


def read_movielens_csv(layout: Layout) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """Generic items, interactions and raw tags of an ml-latest-small/ml-20m/ml-25m folder."""
    assert layout.interactions is not None
    items = _read_movies_csv(layout.items)
    ratings = _read_csv(
        layout.interactions,
        {"userId": pl.Int32(), "movieId": pl.Int32(), "rating": pl.Float32(),
         "timestamp": pl.Int64()},
    )  # fmt: skip
    interactions = ratings.rename({"userId": "user_id", "movieId": "item_id"}).select(
        "user_id", "item_id", "rating", "timestamp"
    )
    return items, interactions, _read_tags_csv(layout.tags)


def read_movielens_dat(layout: Layout) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """Generic items, interactions and raw tags of an ml-1m/ml-10m folder (``::``-separated)."""
    movies = _read_lines(layout.items, r"^\s*(\d+)::(.*)::(.*?)\s*$",
                         ["movieId", "title", "genres"])  # fmt: skip
    title, year = parse_titles(pl.col("title"))
    items = movies.select(
        pl.col("movieId").alias("item_id"), title.alias("title"), year.alias("year"),
        _genre_list(pl.col("genres")).alias("genres"),
    )  # fmt: skip
    assert layout.interactions is not None
    data = layout.interactions.read_bytes().replace(b"::", b"\t")
    names = ["user_id", "item_id", "rating", "timestamp"]
    interactions = _read_separated(data, layout.interactions, names, _RATING_SCHEMA, "\t")
    tags = None
    if layout.tags is not None:
        raw = _read_lines(layout.tags, r"^\s*(\d+)::(\d+)::(.*)::(\d+)\s*$",
                          ["userId", "movieId", "tag", "timestamp"])  # fmt: skip
        tags = raw.select(pl.col("movieId").cast(pl.Int64).alias("item_id"), "tag")
    return items, interactions, tags


def read_movielens_100k(layout: Layout) -> tuple[pl.DataFrame, pl.DataFrame, None]:
    """Generic items and interactions of an ml-100k folder (``u.item``, ``u.data``)."""
    names = ["movieId", "title", "release", "video_release", "url", *GENRES_100K]
    text = _decode(layout.items)
    raw = _read_separated(text.encode(), layout.items, names, {n: pl.String() for n in names}, "|")
    title, year = parse_titles(pl.col("title"))
    release_year = pl.col("release").str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False)
    flags = [pl.when(pl.col(g).str.strip_chars() == "1").then(pl.lit(g)) for g in GENRES_100K[1:]]
    items = raw.select(
        pl.col("movieId").alias("item_id"),
        title.alias("title"),
        pl.coalesce(year, release_year).alias("year"),
        pl.concat_list(flags).list.drop_nulls().alias("genres"),
    )
    assert layout.interactions is not None
    data = layout.interactions.read_bytes()
    interactions = _read_separated(
        data, layout.interactions, ["user_id", "item_id", "rating", "timestamp"],
        _RATING_SCHEMA, "\t",
    )  # fmt: skip
    return items, interactions, None


_READERS = {
    "movielens-csv": read_movielens_csv,
    "movielens-dat": read_movielens_dat,
    "movielens-100k": read_movielens_100k,
    "movielens-items": read_movielens_items,
}


def load_movielens(
    layout: Layout,
    *,
    rating_threshold: float | None = None,
    max_items: int | None = None,
    max_users: int | None = None,
    max_tags: int = 5,
    sample_items: int | None = None,
    sample_seed: int = 0,
) -> Dataset:
    """Load a MovieLens folder of any layout into the internal dataset."""
    if layout.kind not in _READERS:
        raise DataError(f"{layout.folder}: not a MovieLens folder ({layout.kind})")
    items, interactions, tags = _READERS[layout.kind](layout)
    items = _with_tags(items, tags, max_tags)
    csv = layout.kind in ("movielens-csv", "movielens-items")
    columns = RATING_COLUMNS if csv else {}
    movie_cols = MOVIE_COLUMNS if csv else {}
    if layout.interactions is None:
        inter_name = f"{layout.items} (no ratings.csv beside it)"
    else:
        inter_name = str(layout.interactions)
    return build_dataset(
        items,
        interactions,
        items_source=Source(str(layout.items), movie_cols),
        interactions_source=Source(inter_name, columns),
        rating_threshold=rating_threshold,
        max_items=max_items,
        max_users=max_users,
        max_tags=max_tags,
        sample_items=sample_items,
        sample_seed=sample_seed,
    )
