"""Query files (JSONL, one query and item id per line); how often queries name the title."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from semid.data.dataset import Dataset
from semid.data.tables import ProblemLog
from semid.errors import ConfigError, DataError
from semid.io import atomic_path

# ----------------------------------------------------------------------------- query files

ID_KEYS = ("movieId", "item_id")


def load_query_file(path: Path, dataset: Dataset, skip_unknown_items: bool = False) -> pl.DataFrame:
    """Read a JSONL query file and map its ids to item indices.

    Every problem (bad JSON, missing keys, wrong types, ids the catalogue lacks) is collected
    and reported in one :class:`DataError`, each with its line number. With
    ``skip_unknown_items`` (a query set made for a larger catalogue, e.g. real requests on a
    subset), lines whose item the catalogue lacks are dropped instead; how many is logged.

    Returns
    -------
    pl.DataFrame
        ``query`` (str), ``item_idx`` (i32), plus ``group`` (str) when the file has groups and
        ``split`` ("train"/"test") when its lines carry one (then every line must).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: query file not found")
    name = str(path)
    index = dict(zip(dataset.items["item_id"].to_list(), range(dataset.items.height), strict=True))
    log_ = ProblemLog()
    rows: list[tuple[str, int, str | None, str | None]] = []
    lines_without_split: list[int] = []
    seen_lines = skipped = 0
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from exc
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                seen_lines += 1
                if skip_unknown_items and _unknown_item(line, index):
                    skipped += 1
                    continue
                parsed = _parse_query_line(line, number, name, index, log_)
                if parsed is not None:
                    rows.append(parsed)
                    if parsed[3] is None:
                        lines_without_split.append(number)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if seen_lines == 0:
        raise DataError(
            f'{path}: empty query file (expected one JSON object per line: {{"query": "...", '
            f'"movieId": 1}})'
        )
    if skipped:
        logging.getLogger(__name__).info(
            "%s: %d queries for items not in the catalogue skipped", path, skipped
        )
    has_split = any(row[3] is not None for row in rows)
    if has_split:
        for number in lines_without_split[:10]:
            log_.add(name, f"line {number}", "missing key 'split' (other lines have one)")
    log_.raise_if_any()
    frame = pl.DataFrame(
        rows, schema={"query": pl.String, "item_idx": pl.Int32, "group": pl.String,
                      "split": pl.String}, orient="row",
    )  # fmt: skip
    keep = ["query", "item_idx"]
    keep += ["group"] if frame["group"].null_count() < frame.height else []
    keep += ["split"] if has_split else []
    return frame.select(keep)


def _unknown_item(line: str, index: dict) -> bool:
    """Whether a well-formed line names an item id the catalogue lacks."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return False
    if not isinstance(obj, dict):
        return False
    item_id = _as_int(obj.get("movieId", obj.get("item_id")))
    return item_id is not None and item_id not in index


def _parse_query_line(
    line: str, number: int, name: str, index: dict[int, int], log_: ProblemLog
) -> tuple[str, int, str | None, str | None] | None:
    where = f"line {number}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        log_.add(name, where, f"not valid JSON ({exc.msg} at column {exc.colno})")
        return None
    if not isinstance(obj, dict):
        log_.add(name, where, f"expected a JSON object, got {type(obj).__name__}")
        return None
    ok = True
    query = obj.get("query")
    if "query" not in obj:
        log_.add(name, where, "missing key 'query'")
        ok = False
    elif not isinstance(query, str) or not query.strip():
        log_.add(name, where, "'query' must be a non-empty string")
        ok = False
    key = next((k for k in ID_KEYS if k in obj), None)
    item_idx = None
    if key is None:
        log_.add(name, where, "missing key 'movieId' (or 'item_id')")
        ok = False
    else:
        raw = obj[key]
        item_id = _as_int(raw)
        if item_id is None:
            log_.add(name, where, f"{key} must be an integer, got {json.dumps(raw)}")
            ok = False
        else:
            item_idx = index.get(item_id)
            if item_idx is None:
                log_.add(name, where, f"{key} {item_id} is not in the catalogue")
                ok = False
    split = obj.get("split")
    if split is not None and split not in ("train", "test"):
        log_.add(name, where, f'\'split\' must be "train" or "test", got {json.dumps(split)}')
        ok = False
    if not ok:
        return None
    group = obj.get("group")
    assert isinstance(query, str) and item_idx is not None
    return query.strip(), item_idx, None if group is None else str(group), split


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def write_query_file(
    path: Path, queries: pl.DataFrame, items: pl.DataFrame, id_key: str = "movieId"
) -> int:
    """Write ``queries`` (query, item_idx[, group, split]) as JSONL with catalogue ids; atomic."""
    if id_key not in ID_KEYS:
        raise ConfigError(f"id key {id_key!r}: use one of {', '.join(ID_KEYS)}")
    ids = items["item_id"].gather(queries["item_idx"].cast(pl.Int64)).to_list()
    extras = {k: queries[k].to_list() for k in ("group", "split") if k in queries.columns}
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for i, (query, item_id) in enumerate(zip(queries["query"].to_list(), ids, strict=True)):
            record: dict[str, Any] = {"query": query, id_key: item_id}
            record.update({k: v[i] for k, v in extras.items() if v[i] is not None})
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return queries.height


def contains_title(query: str, title: str | None) -> bool:
    """Whether ``query`` contains ``title`` as whole words (case-insensitive)."""
    if not title:
        return False
    text, needle = query.lower(), title.lower()
    start = text.find(needle)
    while start != -1:
        end = start + len(needle)
        if (start == 0 or not text[start - 1].isalnum()) and (
            end == len(text) or not text[end].isalnum()
        ):
            return True
        start = text.find(needle, start + 1)
    return False


def title_share(queries: Iterable[str], titles: Iterable[str | None]) -> float:
    """Share of queries that contain their item's full title (whole words, any case)."""
    pairs = list(zip(queries, titles, strict=True))
    if not pairs:
        return 0.0
    return sum(contains_title(q, t) for q, t in pairs) / len(pairs)


_STOPWORDS = frozenset({
    "a", "an", "the", "of", "and", "or", "in", "on", "to", "for", "with", "from", "at", "by",
    "is", "it", "its", "my", "me", "i", "you", "your", "his", "her", "their", "our", "we", "he",
    "she", "they", "this", "that", "part", "ii", "iii", "la", "le", "les", "el", "de", "des",
    "du", "il",
})  # fmt: skip


def title_word_share(queries: Iterable[str], titles: Iterable[str | None]) -> float:
    """Share of queries sharing at least one non-stopword title word (3+ letters) with it."""
    pairs = list(zip(queries, titles, strict=True))
    if not pairs:
        return 0.0
    hits = 0
    for query, title in pairs:
        words = {w for w in re.findall(r"\w+", (title or "").lower()) if len(w) >= 3}
        words -= _STOPWORDS
        hits += bool(words & set(re.findall(r"\w+", query.lower())))
    return hits / len(pairs)
