"""How ambiguous a query set is by construction, and the ceiling that puts on Recall@K.

A held-out query whose text is also a query of other items cannot be answered from its text
alone: a perfect retriever that knows exactly which text it was given can still only guess
among the items sharing it. :func:`query_ambiguity` measures this on the queries of a run
(``query``, ``item_idx``, ``split``), comparing texts after :func:`normalise_query`
(lower-case, whitespace collapsed):

- ``shared``: share of held-out queries whose text is also a query (any split) of another item;
- ``shared_with_train``: share whose text is verbatim a *training* query of another item (a
  model trained on it has learnt that text for a different target);
- ``items_per_text_median`` / ``_mean``: over held-out queries, the number ``m`` of distinct
  items that have a query with that text (including the query's own item: 1 = unambiguous);
- ``ceiling``: for each K, the mean over held-out queries of ``min(1, K / m)``, the expected
  Recall@K (one relevant item per query) of an oracle that knows the right text but picks at
  random among the ``m`` items sharing it. No retriever that reads only the text can beat it
  in expectation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from semid.errors import DataError

DEFAULT_KS = (1, 5, 10, 30)


def normalise_query(text: pl.Expr) -> pl.Expr:
    """Lower-case, whitespace collapsed to single spaces, stripped."""
    return text.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def query_ambiguity(
    queries: pl.DataFrame, split: str = "test", ks: Sequence[int] = DEFAULT_KS
) -> dict[str, Any]:
    """Ambiguity of the ``split`` queries against every query of the run.

    Parameters
    ----------
    queries : pl.DataFrame
        All queries of a run: ``query`` (str), ``item_idx`` (int), ``split`` (str).
    split : str
        The held-out set measured (``"test"``, or any other value of ``split``).
    ks : sequence of int
        Cut-offs of the oracle ceiling on Recall@K.

    Returns
    -------
    dict
        ``split``, ``queries`` (held-out count), ``shared``, ``shared_with_train``,
        ``items_per_text_median``, ``items_per_text_mean``, ``max_items_per_text`` and
        ``ceiling`` (``{"recall@K": value}``); shares and ceilings are None without held-out
        queries.
    """
    missing = {"query", "item_idx", "split"} - set(queries.columns)
    if missing:
        raise DataError(f"queries: missing column(s) {', '.join(sorted(missing))}")
    bad = [k for k in ks if not isinstance(k, int | np.integer) or k < 1]
    if bad:
        raise DataError(f"query ambiguity: cut-offs must be positive integers, got {bad[0]!r}")
    frame = queries.select(
        normalise_query(pl.col("query").cast(pl.String)).alias("text"),
        pl.col("item_idx").cast(pl.Int64),
        pl.col("split").cast(pl.String),
    )
    # distinct items per text (any split) and per text among training queries
    items_any = frame.group_by("text").agg(pl.col("item_idx").n_unique().alias("m"))
    items_train = (
        frame.filter(pl.col("split") == "train")
        .group_by("text")
        .agg(pl.col("item_idx").unique().alias("train_items"))
    )
    held = (
        frame.filter(pl.col("split") == split)
        .join(items_any, on="text", how="left")
        .join(items_train, on="text", how="left")
        .with_columns(pl.col("train_items").fill_null([]))
        .with_columns(
            (
                pl.col("train_items").list.len()
                - pl.col("train_items").list.contains(pl.col("item_idx")).cast(pl.Int64)
                > 0
            ).alias("train_other")
        )
    )
    n = held.height
    out: dict[str, Any] = {"split": split, "queries": n}
    if n == 0:
        out |= {
            "shared": None, "shared_with_train": None, "items_per_text_median": None,
            "items_per_text_mean": None, "max_items_per_text": None,
            "ceiling": {f"recall@{k}": None for k in ks},
        }  # fmt: skip
        return out
    m = held["m"].to_numpy().astype(np.float64)
    out["shared"] = float(np.mean(m > 1))
    out["shared_with_train"] = float(held.select(pl.col("train_other").mean()).item())
    out["items_per_text_median"] = float(np.median(m))
    out["items_per_text_mean"] = float(np.mean(m))
    out["max_items_per_text"] = int(m.max())
    out["ceiling"] = {f"recall@{k}": float(np.mean(np.minimum(1.0, k / m))) for k in ks}
    return out
