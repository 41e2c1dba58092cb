"""Leave-last-out user sequences, and the train/test split of search queries.

Sequences: each user's interactions in chronological order; the last item is the test target,
the one before it the validation target, everything earlier is the training prefix (kept whole:
examples truncate it to ``max_history`` when they are built). Consuming the same item twice is
kept as it is.

Tie rule: interactions of one user with the same timestamp (a *tied block*: MovieLens logs
several ratings in the same second) have no chronological order. Inside a tied block they are
ordered by a seeded hash of ``(seed, user_id, item_idx)`` (SplitMix64; :func:`order_ties`):
deterministic given the run seed, a different order for another seed, and independent of the
file's row order (ml-latest-small's ``ratings.csv`` is sorted by movieId, so file order would
make the test item the highest movieId of its block). Interactions with distinct timestamps
keep their chronological order. The rule is applied once, before the split, so it holds for
train, valid and test alike. :func:`tie_stats` counts how many users' test and valid items
came from a tied block (those targets are a seeded draw, not the user's last item); the counts
are saved beside the split (``tie_stats.json``, :attr:`Splits.tie_stats`).

Queries: split per item, so every item has training queries and test queries are never seen in
training. Of an item's distinct queries, ``test_per_item`` go to test (seeded choice) but at
least one always stays in train: an item with a single query keeps it for training. Queries
sharing a ``group`` (paraphrases of one need) stay on the same side of the split.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from semid.data.config import DataConfig, QueryConfig
from semid.data.dataset import Dataset, Splits
from semid.errors import ConfigError, DataError

log = logging.getLogger(__name__)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 values (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def tie_key(seed: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Seeded 64-bit hash of each ``(seed, user, item)``: the order of a tied block.

    Parameters
    ----------
    seed : int
        The run seed.
    users, items : np.ndarray
        Integer user ids and item indices, one per interaction.

    Returns
    -------
    np.ndarray
        uint64 keys; equal only for equal ``(user, item)`` pairs (up to hash collisions).
    """
    with np.errstate(over="ignore"):
        base = splitmix64(np.array([seed % 2**64], dtype=np.uint64))
        key = splitmix64(base ^ np.asarray(users, dtype=np.int64).astype(np.uint64))
        return splitmix64(key ^ np.asarray(items, dtype=np.int64).astype(np.uint64))


def order_ties(interactions: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Sort by user, then timestamp, then the seeded :func:`tie_key` inside tied blocks.

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id``, ``item_idx``, ``timestamp`` in any row order.
    seed : int
        The run seed.

    Returns
    -------
    pl.DataFrame
        The same rows (and columns): chronological per user, ties in seeded hash order. The
        result does not depend on the input's row order (rows equal in user, item and
        timestamp keep their relative order).
    """
    key = tie_key(seed, interactions["user_id"].to_numpy(), interactions["item_idx"].to_numpy())
    return (
        interactions.with_columns(pl.Series("_tie", key, dtype=pl.UInt64))
        .sort(["user_id", "timestamp", "_tie"], maintain_order=True)
        .drop("_tie")
    )


def tie_stats(interactions: pl.DataFrame, min_user_interactions: int = 3) -> dict[str, int]:
    """How many split users' test and valid items came from a tied (user, timestamp) block.

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id``, ``timestamp`` (any order).
    min_user_interactions : int
        Only users with at least this many interactions are split, and counted.

    Returns
    -------
    dict[str, int]
        ``users`` (users split), ``test_tied`` (test item shares its timestamp with another
        interaction of the user: then with the valid item), ``valid_tied`` (valid item shares
        its timestamp with the test item or a training item), ``valid_train_tied`` (valid item
        shares its timestamp with a training item), ``tied_blocks`` and ``tied_interactions``
        (blocks of 2+ same-user same-timestamp interactions among split users, and the
        interactions in them).
    """
    per_user = (
        interactions.group_by("user_id")
        .agg(pl.len().alias("n"), pl.col("timestamp").sort(descending=True).head(3).alias("ts"))
        .filter(pl.col("n") >= min_user_interactions)
    )
    last, valid, before = (pl.col("ts").list.get(i, null_on_oob=True) for i in range(3))
    counts = per_user.select(
        pl.len().alias("users"),
        (last == valid).sum().alias("test_tied"),
        ((valid == last) | (valid == before)).sum().alias("valid_tied"),
        (valid == before).sum().alias("valid_train_tied"),
    ).row(0, named=True)
    blocks = (
        interactions.filter(pl.col("user_id").is_in(per_user["user_id"].implode()))
        .group_by("user_id", "timestamp")
        .len()
        .filter(pl.col("len") > 1)
    )
    counts["tied_blocks"] = blocks.height
    counts["tied_interactions"] = int(blocks["len"].sum()) if blocks.height else 0
    return {k: int(v or 0) for k, v in counts.items()}


def leave_last_out(
    interactions: pl.DataFrame,
    min_user_interactions: int = 3,
    drop_short_users: bool = False,
    source: str = "interactions",
    seed: int = 0,
) -> pl.DataFrame:
    """Per-user ``train`` prefix, ``valid`` and ``test`` items, ties ordered by ``seed``.

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id``, ``item_idx``, ``timestamp`` (any row order; :class:`Dataset` holds them
        sorted by user and time).
    min_user_interactions : int
        Users with fewer interactions cannot be split (at least 3: train, valid, test).
    drop_short_users : bool
        Drop such users instead of raising.
    source : str
        The ratings file (or dataset) named in the error.
    seed : int
        Seed of the tie rule (:func:`order_ties`): the run seed.

    Returns
    -------
    pl.DataFrame
        ``user_id`` (i64), ``train`` (list[i32]), ``valid`` (i32), ``test`` (i32), by user id.
    """
    if min_user_interactions < 3:
        raise ConfigError(
            f"data.min_user_interactions={min_user_interactions}: leave-last-out needs at "
            "least 3 interactions per user (train, valid, test)"
        )
    per_user = (
        order_ties(interactions, seed)
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("item_idx").cast(pl.Int32).alias("items"))
        .with_columns(pl.col("items").list.len().alias("n"))
    )
    short = per_user.filter(pl.col("n") < min_user_interactions)
    if short.height:
        if not drop_short_users:
            first = short.sort("user_id").row(0, named=True)
            others = f" ({short.height} users in all)" if short.height > 1 else ""
            raise DataError(
                f"{source}: user {first['user_id']} has {first['n']} interaction"
                f"{'s' if first['n'] != 1 else ''}, fewer than data.min_user_interactions="
                f"{min_user_interactions}{others}; set data.drop_short_users=true to drop them"
            )
        log.info("dropping %d users with < %d interactions", short.height, min_user_interactions)
        per_user = per_user.filter(pl.col("n") >= min_user_interactions)
    if per_user.height == 0:
        raise DataError(
            f"{source}: no user has {min_user_interactions} or more interactions; nothing to split"
        )
    return per_user.sort("user_id").select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("items").list.slice(0, pl.col("n") - 2).alias("train"),
        pl.col("items").list.get(-2).alias("valid"),
        pl.col("items").list.get(-1).alias("test"),
    )


def split_queries(queries: pl.DataFrame, test_per_item: int, seed: int) -> pl.DataFrame:
    """Mark each item's queries ``train`` or ``test``; identical (query, item) pairs are merged.

    Parameters
    ----------
    queries : pl.DataFrame
        ``query``, ``item_idx``, and optionally ``split`` ("train"/"test": an explicit split,
        used as given) or ``group`` (queries of one group share a side).
    test_per_item : int
        Test queries wanted per item; fewer when an item has too few groups, since at least
        one group of every item stays in train.
    seed : int
        Seed of the choice of test queries.

    Returns
    -------
    pl.DataFrame
        ``query`` (str), ``item_idx`` (i32), ``split`` ("train"/"test"), ordered by item, then
        the input order.
    """
    frame = (
        queries.with_row_index("_order")
        .with_columns(pl.col("query").str.strip_chars(), pl.col("item_idx").cast(pl.Int32))
        .unique(["item_idx", "query"], keep="first", maintain_order=True)
    )
    if "split" in frame.columns and frame["split"].null_count() < frame.height:
        bad = frame.filter(~pl.col("split").is_in(["train", "test"]) | pl.col("split").is_null())
        if bad.height:
            raise DataError(
                f"queries: split must be 'train' or 'test' for every query, got "
                f"{bad['split'][0]!r} for {bad['query'][0]!r}"
            )
        log.info("queries carry their own train/test split; queries.test_per_item is not used")
        return frame.sort("item_idx", "_order").select(
            "query", "item_idx", pl.col("split").cast(pl.String)
        )
    if "group" in frame.columns:
        frame = frame.with_columns(pl.col("group").cast(pl.String).fill_null(pl.col("query")))
    else:
        frame = frame.with_columns(pl.col("query").alias("group"))
    groups = (
        frame.group_by("item_idx", "group")
        .agg(pl.len().alias("size"), pl.col("_order").min().alias("first"))
        .sort("item_idx", "first")
    )
    rng = np.random.default_rng(seed)
    groups = (
        groups.with_columns(pl.Series("key", rng.random(groups.height)))
        .sort("item_idx", "key")
        .with_columns(
            (pl.col("size").cum_sum().over("item_idx") - pl.col("size")).alias("before"),
            pl.int_range(pl.len()).over("item_idx").alias("rank"),
            pl.len().over("item_idx").alias("n_groups"),
        )
        .with_columns(
            pl.when((pl.col("before") < test_per_item) & (pl.col("rank") < pl.col("n_groups") - 1))
            .then(pl.lit("test"))
            .otherwise(pl.lit("train"))
            .alias("split")
        )
    )
    return (
        frame.join(groups.select("item_idx", "group", "split"), on=["item_idx", "group"])
        .sort("item_idx", "_order")
        .select("query", "item_idx", "split")
    )


NO_SEQUENCES = pl.DataFrame(
    schema={"user_id": pl.Int64, "train": pl.List(pl.Int32), "valid": pl.Int32, "test": pl.Int32}
)


def user_sequences(
    dataset: Dataset, data_cfg: DataConfig, seed: int
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Leave-last-out sequences and their :func:`tie_stats`; a clear error without
    interactions (recommendation needs them; a search-only run makes no sequences)."""
    source = interactions_label(data_cfg)
    if dataset.interactions.height == 0:
        raise DataError(
            f"{source}: no interactions, and recommendation needs them; set tasks=[search] "
            "for a search-only run"
        )
    sequences = leave_last_out(
        dataset.interactions,
        data_cfg.min_user_interactions,
        data_cfg.drop_short_users,
        source=source,
        seed=seed,
    )
    ties = tie_stats(dataset.interactions, data_cfg.min_user_interactions)
    log.info(
        "tie rule (seeded hash): test item from a tied block for %d of %d users, valid item for %d",
        ties["test_tied"],
        ties["users"],
        ties["valid_tied"],
    )
    return sequences, ties


def make_splits(
    dataset: Dataset,
    data_cfg: DataConfig,
    query_cfg: QueryConfig,
    seed: int,
    sequences: bool = True,
) -> Splits:
    """Leave-last-out sequences plus the search queries, split into train and test.

    Same-timestamp ties are ordered by ``seed`` (module docstring); their counts are in
    :attr:`Splits.tie_stats` (:func:`tie_stats`). Queries come from the offline template
    generator (``queries.source=template``) or a JSONL file (``queries.source=file``).
    ``sequences=False`` (a search-only run): the query split alone, no users
    (:data:`NO_SEQUENCES`, empty ``tie_stats``); interactions are not read.
    """
    from semid.data.queries import generate_queries, load_query_file

    users, ties = user_sequences(dataset, data_cfg, seed) if sequences else (NO_SEQUENCES, {})
    if query_cfg.source == "file":
        if query_cfg.file is None:
            raise ConfigError("queries.source=file needs queries.file=PATH (a JSONL file)")
        raw = load_query_file(query_cfg.file, dataset)
    else:
        if query_cfg.test_per_item >= query_cfg.per_item:
            raise ConfigError(
                f"queries.test_per_item={query_cfg.test_per_item} must be smaller than "
                f"queries.per_item={query_cfg.per_item} (every item needs training queries)"
            )
        raw = generate_queries(dataset.items, query_cfg, seed)
    queries = split_queries(raw, query_cfg.test_per_item, seed)
    log.info(
        "splits: %d users, %d train / %d test queries",
        users.height,
        queries.filter(pl.col("split") == "train").height,
        queries.filter(pl.col("split") == "test").height,
    )
    return Splits(sequences=users, queries=queries, tie_stats=ties)


def interactions_label(cfg: DataConfig) -> str:
    """The interactions file of ``cfg`` for error messages (the dataset name if unresolvable)."""
    from semid.data.movielens import detect_layout, resolve_path

    try:
        layout = detect_layout(resolve_path(cfg.dataset, cfg.path), items_only=True)
    except DataError:
        return f"dataset {cfg.dataset}"
    return str(layout.interactions or f"{layout.items} (no ratings.csv beside it)")
