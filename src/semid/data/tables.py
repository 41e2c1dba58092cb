"""Reading input tables and checking their columns; every problem goes to a :class:`ProblemLog`.

Used by :mod:`semid.data.importer` (the generic schema) and by the MovieLens and query-file
readers: a problem names the file, the row or column, and the file's own column name."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from semid.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
ROW_INDEX = "_row"
EXAMPLES_PER_CHECK = 10
LISTED = 100


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
        flagged = frame.filter(as_expr(mask).fill_null(False))
        if flagged.height == 0:
            return 0
        self.counts[source.name] = self.counts.get(source.name, 0) + flagged.height
        shown = flagged.head(EXAMPLES_PER_CHECK).select(ROW_INDEX, as_expr(message).alias("_msg"))
        for row, msg in shown.iter_rows():
            where = f"row {row + 1} column {source.column(column)}"
            self.examples.append(Problem(source.name, where, msg))
        hidden = flagged.height - min(flagged.height, EXAMPLES_PER_CHECK)
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
            lines += [f"  {p.file} {p}" for p in self.examples[:LISTED]]
            if len(self.examples) > LISTED:
                lines.append(f"  ... and {len(self.examples) - LISTED} more")
        raise DataError("\n".join(lines))


def nulls(name: str, n: int, dtype: pl.DataType | type[pl.DataType]) -> pl.Series:
    return pl.repeat(None, n, dtype=dtype, eager=True).alias(name)


def empty_lists(name: str, n: int) -> pl.Series:
    return pl.repeat(pl.lit([], dtype=pl.List(pl.String)), n, eager=True).alias(name)


def as_expr(value: pl.Expr | pl.Series | str) -> pl.Expr | pl.Series:
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
        detail = first_line(exc)
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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- column checks


def check_columns(
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
    unknown = [c for c in frame.columns if c not in known and c != ROW_INDEX]
    if unknown:
        log_.add(
            source.name,
            "",
            f"unknown column(s) {', '.join(unknown)} (expected: {expected}; drop or rename them)",
        )
        ok = False
    return ok


def parse_text(
    frame: pl.DataFrame,
    name: str,
    dtype: pl.DataType | type[pl.DataType],
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


def integer_column(
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
        out = parse_text(frame, name, pl.Int64, "not an integer", source, log_)
    elif dtype == pl.Null:
        out = nulls(name, frame.height, pl.Int64)
    else:
        log_.add(source.name, f"column {source.column(name)}", f"expected integers, got {dtype}")
        return nulls(name, frame.height, pl.Int64)
    if required:
        missing = (
            col.is_null() if dtype != pl.String else col.is_null() | (col.str.strip_chars() == "")
        )
        log_.add_rows(frame, missing, source, name, "missing value")
    return out.rename(name)


def float_column(frame: pl.DataFrame, name: str, source: Source, log_: ProblemLog) -> pl.Series:
    col = frame[name]
    if col.dtype.is_numeric():
        return col.cast(pl.Float32)
    if col.dtype == pl.String:
        return parse_text(frame, name, pl.Float32, "not a number", source, log_)
    if col.dtype == pl.Null:
        return col.cast(pl.Float32)
    log_.add(source.name, f"column {source.column(name)}", f"expected numbers, got {col.dtype}")
    return nulls(name, frame.height, pl.Float32)


def timestamp_column(frame: pl.DataFrame, source: Source, log_: ProblemLog) -> pl.Series:
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
            parsed = parse_datetimes(stripped.filter(rest))
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
        return nulls("timestamp", frame.height, pl.Int64)
    log_.add_rows(
        frame,
        col.is_null() if dtype != pl.String else col.is_null() | (col.str.strip_chars() == ""),
        source,
        "timestamp",
        "missing value",
    )
    return out.rename("timestamp")


def parse_datetimes(text: pl.Series) -> pl.Series:
    """Seconds since the epoch for ISO dates/datetimes; null where nothing parses."""
    out = nulls("timestamp", text.len(), pl.Int64)
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
        if parsed.dtype.time_zone is not None:
            parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        out = out.scatter(todo.arg_true(), parsed.dt.epoch("s"))
    return out


def text_column(frame: pl.DataFrame, name: str) -> pl.Series:
    col = frame[name]
    if col.dtype != pl.String:
        col = col.cast(pl.String, strict=False)
    col = col.str.strip_chars()
    return col.set(col == "", None) if (col == "").any() else col


def string_list_column(
    frame: pl.DataFrame, name: str, source: Source, log_: ProblemLog
) -> pl.Series:
    """A list[str] column from a list column or a ``|``-separated string column."""
    col = frame[name]
    if isinstance(col.dtype, pl.List):
        col = col.cast(pl.List(pl.String), strict=False)
    elif col.dtype == pl.String:
        col = col.str.split("|")
    elif col.dtype == pl.Null:
        col = empty_lists(name, frame.height)
    else:
        log_.add(
            source.name,
            f"column {source.column(name)}",
            f"expected a list of strings or '|'-separated text, got {col.dtype}",
        )
        return empty_lists(name, frame.height)
    return col.fill_null([]).rename(name)
