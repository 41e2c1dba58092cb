"""Search queries: the generator interface and registry (generators: :mod:`semid.data.templates`,
query files: :mod:`semid.data.query_files`).

A query generator turns the item table into ``(query, item_idx)`` pairs, optionally with a
``split`` column ("train"/"test", used as given) or a ``group`` column (queries of one group,
e.g. paraphrases of one need, are kept on the same side of the train/test split). Any object
with a matching ``generate`` method plugs in (:class:`QueryGenerator`);
:func:`register_query_generator` makes it selectable by name.

The offline :class:`TemplateQueryGenerator` writes varied, natural-sounding queries from the
metadata alone — genres, decade, tags, moods and occasions tied to the genres — in many sentence
shapes, and mentions the title in a minority of them (``title_share``).

Specific queries (the default, ``queries.specific=true``): a query either names the title or
states a combination of attributes that singles out few items. The attributes a query states
are its genres, decade, year, era ("classic", "recent", ...) and tags (moods and occasions only
colour the sentence and constrain nothing); a non-title query is kept only if at most
``max_items_per_query`` items of the catalogue have every attribute it states. Extra sentence
shapes that combine several attributes (two or three genres with a year, a year with a tag, ...)
are used in this mode. An item whose metadata cannot be that specific gets title queries
instead, so ``title_share`` is then a lower bound per item, not an upper one. With
``specific=false`` the generator writes the generic queries of earlier versions (same output
for the same seed): "recommend me a drama" belongs to hundreds of items, so a recall number on
such queries mixes retrieval quality with a coin toss (measure it with
:func:`semid.data.ambiguity.query_ambiguity`).

Query files are JSONL, one ``{"query": str, "movieId": int}`` object per line (``item_id`` is
accepted instead of ``movieId``; optional ``group`` and ``split`` keys are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import polars as pl

from semid.data.config import QueryConfig
from semid.data.query_files import (
    contains_title,
    load_query_file,
    title_share,
    title_word_share,
    write_query_file,
)
from semid.data.templates import TemplateQueryGenerator
from semid.errors import DataError
from semid.registry import Registry

# Query files and the template generator live in their own modules; importable from here too.
__all__ = [
    "QUERY_GENERATORS",
    "QueryGenerator",
    "TemplateQueryGenerator",
    "check_queries",
    "contains_title",
    "generate_queries",
    "load_query_file",
    "query_generator",
    "register_query_generator",
    "title_share",
    "title_word_share",
    "write_query_file",
]


@runtime_checkable
class QueryGenerator(Protocol):
    """Anything that writes search queries for the items of a catalogue."""

    def generate(self, items: pl.DataFrame, per_item: int, seed: int) -> pl.DataFrame:
        """Queries for ``items`` (the dataset's item table).

        Returns
        -------
        pl.DataFrame
            ``query`` (str), ``item_idx`` (i32), optionally ``group`` (str) and/or ``split``
            ("train"/"test", to impose the split instead of the seeded per-item one): up to
            ``per_item`` distinct queries per item, deterministic given ``seed``.
        """
        ...


QUERY_GENERATORS: Registry[Callable[[QueryConfig], QueryGenerator]] = Registry(
    "query generator", "queries.source", "semid.query_generators"
)
# register_query_generator(NAME, factory): a factory ``(QueryConfig) -> QueryGenerator`` becomes
# selectable as ``queries.source=NAME`` (``file`` is reserved for query files).
register_query_generator = QUERY_GENERATORS.register


def _template(cfg: QueryConfig) -> QueryGenerator:
    return TemplateQueryGenerator(
        title_share=cfg.title_share,
        specific=cfg.specific,
        max_items_per_query=cfg.max_items_per_query,
    )


QUERY_GENERATORS.register("template", _template, "offline generator from the item metadata")


def query_generator(cfg: QueryConfig) -> QueryGenerator:
    """The generator named by ``cfg.source``."""
    return QUERY_GENERATORS.get(cfg.source)(cfg)


def generate_queries(items: pl.DataFrame, cfg: QueryConfig, seed: int) -> pl.DataFrame:
    """Generate queries with the generator named by ``cfg.source`` and check its output."""
    frame = query_generator(cfg).generate(items, cfg.per_item, seed)
    return check_queries(frame, items.height, f"queries.source={cfg.source}")


def check_queries(frame: pl.DataFrame, n_items: int, source: str) -> pl.DataFrame:
    """Validate a generator's output: columns, item indices in range, non-empty queries."""
    missing = {"query", "item_idx"} - set(frame.columns)
    if missing:
        raise DataError(f"{source}: generated queries lack column(s) {', '.join(sorted(missing))}")
    out = frame.with_columns(pl.col("query").cast(pl.String).str.strip_chars(),
                             pl.col("item_idx").cast(pl.Int32))  # fmt: skip
    bad = out.filter(
        pl.col("item_idx").is_null() | (pl.col("item_idx") < 0) | (pl.col("item_idx") >= n_items)
    )
    if bad.height:
        raise DataError(f"{source}: {bad.height} queries name an item_idx outside 0..{n_items - 1}")
    empty = out.filter(pl.col("query").is_null() | (pl.col("query") == ""))
    if empty.height:
        raise DataError(f"{source}: {empty.height} generated queries are empty")
    if out.height == 0:
        raise DataError(f"{source}: no queries were generated")
    return out
